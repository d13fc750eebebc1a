"""The stage models as MLflow pyfunc models: input, the model input columns of journeys.scoring;
output, a frame with `prediction` and `score` (the predicted stage and its probability, or
converted and the probability of converting).

`score_rows` is the fast path the job uses: it skips pyfunc's per-call schema enforcement and,
through models.linear, pandas and scikit-learn's column machinery, which cost far more than the
model itself on the few rows of one timer call.
"""
from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from journeys.scoring import PROPENSITY_MODEL, STAGE_MODEL, model_input
from models.frames import input_frame
from models.linear import LinearScorer, answers

PIPELINE_ARTIFACT = "pipeline"
DRIFT_ARTIFACT = "drift_profile"  # the training data's distributions (journeys.drift), beside the pipeline


class StageModel(mlflow.pyfunc.PythonModel):
    """Logged as a model from code (models/logged_model.py): the fitted scikit-learn pipeline is
    an artifact and the kind is model config, so no Python object is pickled into the model."""

    def __init__(self, kind: str | None = None, pipeline=None):
        if kind is not None:
            self._set(kind, pipeline)

    def load_context(self, context) -> None:
        import json

        import joblib

        self._set(context.model_config["kind"], joblib.load(context.artifacts[PIPELINE_ARTIFACT]))
        profile = context.artifacts.get(DRIFT_ARTIFACT)  # versions logged before it have none
        self.drift_profile = json.loads(open(profile).read()) if profile else None

    drift_profile: dict | None = None

    def _set(self, kind: str, pipeline) -> None:
        if kind not in (STAGE_MODEL, PROPENSITY_MODEL):
            raise ValueError(f"unknown model kind {kind!r}")
        self.kind = kind
        self.pipeline = pipeline
        self.linear = LinearScorer.from_pipeline(pipeline) if pipeline is not None else None

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        answered = self._answer(model_input)
        return pd.DataFrame({"prediction": [p for p, _ in answered], "score": [s for _, s in answered]})

    def score_rows(self, rows: list[dict]) -> list[tuple[str, float]]:
        """(prediction, score) per model input row (journeys.scoring.model_input)."""
        if self.linear is None:
            return self._answer(input_frame(rows))
        return self.linear.answers(self.kind, [model_input(row) for row in rows])

    def profile(self, inputs: pd.DataFrame, signal_mix: list[dict] | None = None) -> dict:
        """The drift profile (journeys.drift) of training inputs, this model's scores on them and,
        where given, the signal mix of the training data's customers."""
        from journeys.drift import SCORE, DriftProfile

        rows = [row | {SCORE: score} for row, (_, score) in zip(inputs.to_dict("records"), self._answer(inputs))]
        profile = DriftProfile.of_rows(self.kind, rows)
        return (profile.with_signal_mix(signal_mix) if signal_mix else profile).to_dict()

    def _answer(self, inputs: pd.DataFrame) -> list[tuple[str, float]]:
        return answers(self.kind, self.pipeline.classes_, self.pipeline.predict_proba(inputs))
