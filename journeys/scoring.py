"""What the stage models see, and what they answer, without a model library in sight.

One definition of a model's input row serves training (models.features builds frames from
training sets with it) and serving (the job builds the same row from a decision), so the two
cannot drift apart. Missing values get the same fill in both places.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

NUMERIC_INPUTS = ("events_last_hour", "events_last_day", "cart_value", "support_contacts_7d", "lifetime_value",
                  "tenure_days")
CATEGORICAL_INPUTS = ("stage", "trigger", "last_channel", "segment", "preferred_channel")
MODEL_INPUTS = NUMERIC_INPUTS + CATEGORICAL_INPUTS
UNKNOWN = "unknown"  # the fill for a missing category, in training and in serving

STAGE_MODEL = "journey_stage"                    # which stage the customer is really in
PROPENSITY_MODEL = "conversion_propensity"       # how likely the customer converts within the horizon
MODEL_KINDS = (STAGE_MODEL, PROPENSITY_MODEL)


def model_input(values: dict) -> dict:
    """The input row of a model from a decision's stage, trigger and features, or a training row."""
    features = values.get("features") or {}
    row = {}
    for name in NUMERIC_INPUTS:
        value = values.get(name, features.get(name))
        row[name] = 0.0 if value is None else float(value)
    for name in CATEGORICAL_INPUTS:
        value = values.get(name, features.get(name))
        row[name] = UNKNOWN if value is None or value == "" else str(value)
    return row


@dataclass(frozen=True)
class ModelScore:
    """One model's answer for one input: a predicted class and a score in [0, 1] (the
    probability of that class for the stage model, of converting for the propensity model)."""

    model: str
    version: str
    prediction: str
    score: float

    def to_record(self) -> dict:
        return {"model": self.model, "version": self.version, "prediction": self.prediction,
                "score": round(self.score, 6)}


class Scorer(Protocol):
    """A loaded model version: scores many input rows in one call."""

    name: str
    version: str

    def score(self, rows: Sequence[dict]) -> list[ModelScore]: ...
