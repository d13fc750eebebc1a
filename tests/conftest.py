import pytest

from journeys.ontology import load_ontology
from journeys.settings import load_settings
from journeys.transitions import JourneyModel
from pipelines.flink_env import prepare_python_workers

# Flink's thread mode finds the project only through PYTHONPATH, fixed when the JVM starts, and
# the first Flink test starts it inside this process.
prepare_python_workers()


@pytest.fixture(scope="session")
def ontology():
    return load_ontology()


@pytest.fixture(scope="session")
def settings():
    return load_settings()


@pytest.fixture
def model(ontology, settings):
    return JourneyModel(ontology, settings)
