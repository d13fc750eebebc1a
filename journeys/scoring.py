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
    probability of that class for the stage model, of converting for the propensity model).
    model is the registered name; kind (one of MODEL_KINDS) is that name unless given."""

    model: str
    version: str
    prediction: str
    score: float
    kind: str | None = None

    @property
    def model_kind(self) -> str:
        return self.kind or self.model

    def to_record(self) -> dict:
        return {"model": self.model, "kind": self.model_kind, "version": self.version, "prediction": self.prediction,
                "score": round(self.score, 6)}


class Scorer(Protocol):
    """A loaded model version: scores many input rows in one call."""

    name: str
    version: str

    def score(self, rows: Sequence[dict]) -> list[ModelScore]: ...


@dataclass(frozen=True)
class ActiveModels:
    """The model versions decisions are scored with now. Champions act; challengers are scored on
    the same inputs and recorded, and never act. `note` says why a model is missing (registry
    unreachable, a version failed to load): such decisions are made on rules alone and say so."""

    champions: tuple = ()
    challengers: tuple = ()
    note: str | None = None


class ModelSource(Protocol):
    def active(self) -> ActiveModels: ...


def score_decisions(decisions: list[dict], models: ActiveModels, stage_action, override_confidence: float) -> None:
    """Score a batch of decision records with every active model, in one call per model, and
    record the results in place: `models` (champions), `shadow` (challengers), and `mapped_stage`.

    The rules' stage stays the journey's stage. The stage model maps a decision to another stage
    only when it disagrees with at least `override_confidence`; a decision made on entering a stage
    then takes the mapped stage's action: stage_action(record, stage) gives it, or None when the
    stage has none this customer may receive (identity, consent)."""
    if not decisions:
        return
    rows = [model_input(record) for record in decisions]
    champion_scores = [scorer.score(rows) for scorer in models.champions]
    challenger_scores = [scorer.score(rows) for scorer in models.challengers]
    for index, record in enumerate(decisions):
        record["mapped_stage"] = record["stage"]
        notes = []
        if champion_scores:
            record["models"] = [scores[index].to_record() for scores in champion_scores]
            notes.extend(_use(record, scores[index], stage_action, override_confidence) for scores in champion_scores)
        if challenger_scores:
            record["shadow"] = [scores[index].to_record() for scores in challenger_scores]
        if models.note:
            notes.append(f"Models: {models.note}." if champion_scores else f"Models: {models.note}; decided on rules alone.")
        if notes:
            reason = record["reason"] if record["reason"].endswith(".") else record["reason"] + "."
            record["reason"] = " ".join([reason, *notes])


def _use(record: dict, score: ModelScore, stage_action, override_confidence: float) -> str:
    cited = f"{score.model} v{score.version}"
    if score.model_kind != STAGE_MODEL:
        return f"Conversion propensity {score.score:.2f} ({cited})."
    if score.prediction == record["stage"]:
        return f"{cited} agrees on {score.prediction} ({score.score:.2f})."
    if score.score < override_confidence:
        return f"{cited} leans to {score.prediction} ({score.score:.2f}), below {override_confidence:.2f}: rules kept."
    record["mapped_stage"] = score.prediction
    text = f"{cited} maps the customer to {score.prediction} ({score.score:.2f})"
    action = stage_action(record, score.prediction) if record["trigger"] == "stage_entered" else None
    if action is None or (action.action, action.channel) == (record["action"], record["channel"]):
        return text + "."
    record["action"], record["channel"] = action.action, action.channel
    return text + f": its next action, {action.action} by {action.channel}, instead."
