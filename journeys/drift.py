"""Drift: how far what the job decides on has moved from what the champion model was trained on.

A DriftProfile is saved beside each registered model (models.registry, the artifact
DRIFT_PROFILE_FILE): for each model input, the training data's distribution over fixed bins
(numeric inputs: edges at the training data's deciles; categorical ones: the categories seen, the
rest counted under OTHER), the same for the model's own scores on its training data, and, where
the training set came with it, the signal mix of its customers (SIGNAL_FEATURES: the signals
applied to their journeys, by event type and by channel). A RunningDrift counts what the job
decides on, and the signals it applies to customers' journeys, in the same bins and compares them
with the profile by the Population Stability Index of each feature:

    PSI = sum over bins of (observed share - expected share) * ln(observed share / expected share)

with shares floored at EPSILON, so that an empty bin counts as rare rather than impossible. The
usual reading: below 0.1 no shift worth a look, 0.1 to 0.25 a moderate shift, above 0.25 a
significant one (DEFAULT_THRESHOLD). The running counts change only with the decisions fed in, in
their order, so the figures and alerts are the same on every replay of the same input.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Iterable

from journeys.outputs import LogKind
from journeys.scoring import CATEGORICAL_INPUTS, NUMERIC_INPUTS, model_input

DRIFT_PROFILE_FILE = "drift_profile.json"
OTHER = "(other)"        # the bin of a category the training data never had
EPSILON = 1e-4           # the floor of a share, so that an empty bin does not make the PSI infinite
DEFAULT_BINS = 10
DEFAULT_THRESHOLD = 0.25
SCORE = "score"          # the name of the model's own score among the profile's features
SIGNAL_FEATURES = ("event_type", "channel")  # the signal mix, counted over signals rather than decisions


@dataclass(frozen=True)
class Bins:
    """Numeric bins (edges: a value v falls in bin bisect_right(edges, v)) or categorical ones."""

    edges: tuple[float, ...] | None = None
    categories: tuple[str, ...] | None = None

    @property
    def size(self) -> int:
        return len(self.edges) + 1 if self.edges is not None else len(self.categories) + 1

    def index(self, value) -> int:
        if self.edges is not None:
            return bisect.bisect_right(self.edges, 0.0 if value is None else float(value))
        try:
            return self.categories.index(str(value))
        except ValueError:
            return len(self.categories)  # OTHER

    def labels(self) -> list[str]:
        if self.categories is not None:
            return list(self.categories) + [OTHER]
        edges = self.edges
        return ([f"< {edges[0]:g}"] if edges else ["all"]) + \
            [f"{low:g} to {high:g}" for low, high in zip(edges, edges[1:])] + ([f">= {edges[-1]:g}"] if edges else [])

    def to_dict(self) -> dict:
        return {"edges": list(self.edges)} if self.edges is not None else {"categories": list(self.categories)}

    @classmethod
    def from_dict(cls, raw: dict) -> "Bins":
        if "edges" in raw:
            return cls(edges=tuple(float(e) for e in raw["edges"]))
        return cls(categories=tuple(str(c) for c in raw["categories"]))


def numeric_bins(values: list[float], bins: int = DEFAULT_BINS) -> Bins:
    """Edges at the quantiles of the values (repeated ones merged), so each bin holds about a tenth."""
    ordered = sorted(float(v) for v in values)
    if not ordered:
        return Bins(edges=())
    edges = sorted({ordered[min(len(ordered) - 1, (len(ordered) * k) // bins)] for k in range(1, bins)})
    return Bins(edges=tuple(e for e in edges if e > ordered[0]))


def psi(expected: list[float], observed: list[float]) -> float:
    """The Population Stability Index of observed counts (or shares) against expected ones."""
    expected_total, observed_total = sum(expected), sum(observed)
    if not expected_total or not observed_total:
        return 0.0
    value = 0.0
    for e, o in zip(expected, observed):
        e_share, o_share = max(e / expected_total, EPSILON), max(o / observed_total, EPSILON)
        value += (o_share - e_share) * math.log(o_share / e_share)
    return value


@dataclass
class DriftProfile:
    """The training data's distribution of each feature: its bins and the count in each."""

    model: str
    bins: dict[str, Bins]
    counts: dict[str, list[int]]
    rows: int

    @classmethod
    def of_rows(cls, model: str, rows: Iterable[dict], bins: int = DEFAULT_BINS) -> "DriftProfile":
        """rows: training rows as drift_row gives them (model inputs and the model's SCORE)."""
        rows = list(rows)
        names = [n for n in (*NUMERIC_INPUTS, *CATEGORICAL_INPUTS, SCORE) if any(n in row for row in rows)]
        made: dict[str, Bins] = {}
        for name in names:
            values = [row[name] for row in rows if name in row]
            if name in CATEGORICAL_INPUTS:
                made[name] = Bins(categories=tuple(sorted({str(v) for v in values})))
            else:
                made[name] = numeric_bins(values, bins)
        profile = cls(model, made, {name: [0] * b.size for name, b in made.items()}, 0)
        for row in rows:
            profile.add(row)
        return profile

    def add(self, row: dict) -> None:
        self.rows += 1
        for name, bins in self.bins.items():
            if name in row and name not in SIGNAL_FEATURES:
                self.counts[name][bins.index(row[name])] += 1

    def with_signal_mix(self, mix: Iterable[dict]) -> "DriftProfile":
        """The profile and the signal mix of the training data: rows of event_type, channel and
        signals (their count), as journeys replay writes them beside a training set."""
        mix = list(mix)
        for name in SIGNAL_FEATURES:
            totals: dict[str, int] = {}
            for row in mix:
                totals[str(row[name])] = totals.get(str(row[name]), 0) + int(row["signals"])
            bins = self.bins[name] = Bins(categories=tuple(sorted(totals)))
            self.counts[name] = [totals[c] for c in bins.categories] + [0]
        return self

    def add_signal(self, record: dict) -> None:
        """A journey log record of a signal applied to a customer's journey, into the signal mix."""
        for name in SIGNAL_FEATURES:
            if name in self.bins:
                self.counts[name][self.bins[name].index(record[name])] += 1

    def empty(self) -> "DriftProfile":
        """The same bins with no counts: what a running comparison starts from."""
        return DriftProfile(self.model, self.bins, {name: [0] * b.size for name, b in self.bins.items()}, 0)

    def to_dict(self) -> dict:
        return {"model": self.model, "rows": self.rows,
                "features": {name: self.bins[name].to_dict() | {"counts": self.counts[name]} for name in self.bins}}

    @classmethod
    def from_dict(cls, raw: dict) -> "DriftProfile":
        features = raw["features"]
        return cls(str(raw["model"]), {name: Bins.from_dict(spec) for name, spec in features.items()},
                   {name: [int(c) for c in spec["counts"]] for name, spec in features.items()}, int(raw["rows"]))


def drift_row(decision: dict, model_kind: str) -> dict | None:
    """What a decision record shows of one model's inputs and score: None where that model did not
    score it, or the decision is an anonymous visitor's. Training sets hold the decision points of
    identified customers (journeys replay --emit training-set), so those are what compare with them.
    A point a model canary scored is no champion's (journeys.scoring): it is left out too."""
    if decision.get("customer_id") is None or decision.get("model_arm") == "canary":
        return None
    score = next((m["score"] for m in decision.get("models") or () if m.get("kind") == model_kind), None)
    if score is None:
        return None
    return model_input(decision) | {SCORE: score}


@dataclass
class RunningDrift:
    """What the job decides on, counted in a profile's bins, and the PSI of each feature against it."""

    reference: DriftProfile
    threshold: float = DEFAULT_THRESHOLD
    seen: DriftProfile = field(init=False)

    def __post_init__(self):
        self.seen = self.reference.empty()

    def add(self, decision: dict) -> bool:
        row = drift_row(decision, self.reference.model)
        if row is None:
            return False
        self.seen.add(row)
        return True

    def add_signal(self, record: dict) -> None:
        """A journey log record: a signal applied to an identified customer's journey counts in the mix."""
        if record.get("kind") == LogKind.SIGNAL and not record.get("anonymous", True):
            self.seen.add_signal(record)

    def psi(self) -> dict[str, float]:
        """The PSI of each feature seen so far (one with nothing counted yet is unknown, not unchanged)."""
        return {name: round(psi(self.reference.counts[name], self.seen.counts[name]), 4)
                for name in self.reference.bins if any(self.seen.counts[name])}

    def drifted(self, figures: dict[str, float] | None = None) -> list[str]:
        """The features whose PSI is above the threshold."""
        figures = self.psi() if figures is None else figures
        return [name for name, value in figures.items() if value > self.threshold]


__all__ = ["Bins", "DriftProfile", "RunningDrift", "drift_row", "numeric_bins", "psi", "DRIFT_PROFILE_FILE",
           "DEFAULT_THRESHOLD", "SCORE", "OTHER", "SIGNAL_FEATURES"]
