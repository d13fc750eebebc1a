"""The code MLflow logs as the stage models' pyfunc (models from code); see models.pyfunc."""
from mlflow.models import set_model

from models.pyfunc import StageModel

set_model(StageModel())
