"""What the stage models see, and what they answer, without a model library in sight.

One definition of a model's input row serves training (models.frames builds frames from
training sets with it) and serving (the job builds the same row from a decision), so the two
cannot drift apart. Missing values get the same fill in both places.
"""
from __future__ import annotations

import hashlib
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

# The registry aliases: the champion's answers act, the challenger's are recorded beside them, and
# a canary's act in its champion's place for a share of people.
CHAMPION, CHALLENGER, CANARY = "champion", "challenger", "canary"
ALIASES = (CHAMPION, CHALLENGER)
KIND_TAG = "journeys.kind"  # the model version tag that says which of MODEL_KINDS a model is
CANARY_SHARE_TAG = "journeys.canary_share"  # the model version tag that sets its share as a canary


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
class ModelCanary:
    """A version under the alias canary: it scores in its champion's place for a share of people."""

    scorer: Scorer
    share: float


@dataclass(frozen=True)
class ActiveModels:
    """The model versions decisions are scored with now. Champions act; challengers are scored on
    the same inputs and recorded, and never act; a canary acts in its champion's place for the
    people in its share (in_model_canary). `note` says why a model is missing (registry
    unreachable, a version failed to load): such decisions are made on rules alone and say so."""

    champions: tuple = ()
    challengers: tuple = ()
    note: str | None = None
    canaries: tuple = ()  # ModelCanary, at most one per registered name


def in_model_canary(name: str, identity: str, share: float) -> bool:
    """Whether the identity is in a model canary's share: BLAKE2b of the registered name and the
    identity, drawn apart from the control group's and a policy canary's hashes, below the share."""
    digest = hashlib.blake2b(f"model-canary\0{name}\0{identity}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2 ** 64 < share


class ModelSource(Protocol):
    def active(self) -> ActiveModels: ...


@dataclass(frozen=True)
class Scored:
    """What the models said about one decision point: champions' and challengers' answers (as
    records), the stage the agents should see, the conversion propensity, and notes for the reason."""

    models: tuple = ()
    shadow: tuple = ()
    mapped_stage: str | None = None
    propensity: float | None = None
    notes: tuple = ()
    model_arm: str = CHAMPION  # CANARY when a model canary scored in its champion's place


NOT_SCORED = Scored()


def score_decision(values: dict, models: ActiveModels, override_confidence: float,
                   canary_key: str | None = None) -> Scored:
    """Score one decision point (its stage, trigger and features) with every active model.

    The rules' stage stays the journey's stage. The stage model maps the decision point to another
    stage only when it disagrees with at least `override_confidence`; the agents then see that
    stage. The propensity model's score is the propensity the agents propose with.
    canary_key: the identity that places the person in a model canary's share (None: no canary,
    as for the control group)."""
    stage = values["stage"]
    row = [model_input(values)]
    acting, model_arm = _acting(models, canary_key)
    champions = [scorer.score(row)[0] for scorer in acting]
    challengers = [scorer.score(row)[0] for scorer in models.challengers]
    mapped, propensity, notes = stage, None, []
    for score in champions:
        cited = f"{score.model} v{score.version}"
        if score.model_kind != STAGE_MODEL:
            propensity = round(score.score, 6)  # as recorded: the read-out and pyfunc paths agree to 1e-12, not bit for bit
            notes.append(f"Conversion propensity {score.score:.2f} ({cited}).")
        elif score.prediction == stage:
            notes.append(f"{cited} agrees on {score.prediction} ({score.score:.2f}).")
        elif score.score < override_confidence:
            notes.append(f"{cited} leans to {score.prediction} ({score.score:.2f}), below {override_confidence:.2f}: rules kept.")
        else:
            mapped = score.prediction
            notes.append(f"{cited} maps the customer to {score.prediction} ({score.score:.2f}), so agents saw {mapped}.")
    if models.note:
        notes.append(f"Models: {models.note}." if champions else f"Models: {models.note}; decided on rules alone.")
    return Scored(tuple(s.to_record() for s in champions), tuple(s.to_record() for s in challengers), mapped,
                  propensity, tuple(notes), model_arm)


def _acting(models: ActiveModels, canary_key: str | None) -> tuple[list, str]:
    """The scorers that act for this person, and their arm: each champion, or its canary in its place."""
    if not models.canaries or canary_key is None:
        return list(models.champions), CHAMPION
    chosen = {c.scorer.name: c.scorer for c in models.canaries if in_model_canary(c.scorer.name, canary_key, c.share)}
    if not chosen:
        return list(models.champions), CHAMPION
    return [chosen.get(scorer.name, scorer) for scorer in models.champions], CANARY
