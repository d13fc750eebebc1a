"""Rollout gates: the figures a canary is compared on with the rest, and their verdicts.

A gate file (YAML, versioned like a policy) names figures, each a rate over the decision points
of an arm outside the control group, which way is worse, and how much worse is tolerated:

    gates: retail
    version: "1"
    min_decision_points: 300          # per arm, before any verdict
    judge_every: 1h                   # the job judges at each hour of event time (journeys.rollback)
    figures:
      - {figure: acted_rate, worse: lower, tolerance: 0.05}

A figure's gate fails only when the 95% interval of the canary's rate minus the champion's
(journeys.stats, the same statistics as the uplift) lies wholly beyond the tolerance on the worse
side: a gate never fails on noise. It passes once both arms have the minimum sample and it has
not failed; before that it is pending.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources
from typing import Iterable, Mapping

from journeys.features import FALLBACK
from journeys.stats import Interval, difference_interval
from journeys.timeutil import parse_duration
from journeys.yamlconf import NO_ENVIRONMENT, ConfigError, loads_yaml, where

PASS, FAIL, PENDING = "pass", "fail", "pending"
HIGHER, LOWER = "higher", "lower"
LATENCY_BUDGET_MS = 250  # latency_over_budget counts the decisions slower than this, intake to decision


def _acted(point: dict) -> bool:
    return bool(point.get("acted", True))


# figure -> (what it counts among an arm's decision points, which of them it is a rate over)
FIGURES = {
    "acted_rate": (_acted, None),
    "suppression_rate": (lambda p: not _acted(p), None),
    "fallback_rate": (lambda p: p.get("feature_source") == FALLBACK or bool(p.get("fast_path")), None),
    "latency_over_budget": (lambda p: (p.get("latency_ms") or 0) > LATENCY_BUDGET_MS, _acted),
    "conversion_rate": (lambda p: bool(p.get("converted")), _acted),
}


OUTCOME_FIGURES = ("conversion_rate",)  # figures that need the outcomes joined to decisions


@dataclass(frozen=True)
class Gate:
    figure: str
    worse: str        # HIGHER or LOWER
    tolerance: float  # how much worse than the champion's rate is tolerated


@dataclass(frozen=True)
class Gates:
    name: str
    version: str
    min_decision_points: int
    gates: tuple[Gate, ...]
    judge_every_ms: int = 3_600_000  # the job judges at every such mark of event time

    def without_outcomes(self) -> tuple["Gates", list[str]]:
        """These gates less those that need the outcomes joined to decisions, and those figures'
        names: the job, and a report without the journey log, judge what a decision point carries."""
        left_out = [g.figure for g in self.gates if g.figure in OUTCOME_FIGURES]
        return replace(self, gates=tuple(g for g in self.gates if g.figure not in OUTCOME_FIGURES)), left_out

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


@dataclass(frozen=True)
class Verdict:
    gate: Gate
    verdict: str
    champion: tuple[int, int]    # (counted, out of)
    canary: tuple[int, int]
    interval: Interval | None    # of the canary's rate minus the champion's

    def to_dict(self) -> dict:
        return {"figure": self.gate.figure, "worse": self.gate.worse, "tolerance": self.gate.tolerance,
                "verdict": self.verdict, "champion": list(self.champion), "canary": list(self.canary),
                "difference": self.interval.to_dict() if self.interval else None}


def loads_gates(text: str, source: str = "<gates>", env: Mapping[str, str] = NO_ENVIRONMENT) -> Gates:
    doc = loads_yaml(text, source, env)
    if not isinstance(doc, dict) or "gates" not in doc or "version" not in doc:
        raise ConfigError(f"{where(doc)}: a gate file is a mapping with gates, version and figures")
    minimum = doc.get("min_decision_points", 300)
    if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 1:
        raise ConfigError(f"{where(doc, 'min_decision_points')}: min_decision_points is a whole number above 0, "
                          f"not {minimum!r}")
    try:
        every = parse_duration(doc.get("judge_every", "1h"))
    except ValueError as error:
        raise ConfigError(f"{where(doc, 'judge_every')}: judge_every: {error}") from None
    if every <= 0:
        raise ConfigError(f"{where(doc, 'judge_every')}: judge_every is a positive duration, not {every} ms")
    raw = doc.get("figures")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where(doc, 'figures')}: figures is a list of gates: figure, worse, tolerance")
    return Gates(str(doc["gates"]), str(doc["version"]), minimum, tuple(_gate(raw, i, g) for i, g in enumerate(raw)),
                 every)


def _gate(figures, index: int, raw) -> Gate:
    place = where(figures, index)
    if not isinstance(raw, dict) or set(raw) != {"figure", "worse", "tolerance"}:
        raise ConfigError(f"{place}: a gate has exactly figure, worse and tolerance")
    if raw["figure"] not in FIGURES:
        raise ConfigError(f"{place}: unknown figure {raw['figure']!r}; one of {', '.join(FIGURES)}")
    if raw["worse"] not in (HIGHER, LOWER):
        raise ConfigError(f"{place}: worse is {HIGHER} or {LOWER}, not {raw['worse']!r}")
    tolerance = raw["tolerance"]
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
        raise ConfigError(f"{place}: tolerance is a difference of rates in [0, 1), not {tolerance!r}")
    return Gate(str(raw["figure"]), str(raw["worse"]), float(tolerance))


def packaged_gates(name: str = "retail") -> Gates:
    source = f"journeys/conf/gates/{name}.yaml"
    return loads_gates(resources.files("journeys.conf").joinpath(f"gates/{name}.yaml").read_text(), source)


POLICY_ARM, MODEL_ARM = "rollout_arm", "model_arm"  # the decision fields that say a point's arm


def arm_points(decision_points: Iterable[dict], converted: set[str] = frozenset(),
               by: str = POLICY_ARM) -> dict[str, list[dict]]:
    """The decision points of each arm (of the policy canary, or by=MODEL_ARM of a model canary)
    outside the control group, each marked `converted` when its decision id is among those an
    outcome says converted."""
    arms: dict[str, list[dict]] = {}
    for point in decision_points:
        if not point.get("control"):
            arms.setdefault(point.get(by) or "champion", []).append(
                point | {"converted": point["decision_id"] in converted})
    return arms


@dataclass
class ArmCounts:
    """What the gates need of an arm's decision points: how many, and per figure (counted, out of).
    Counts add up, so an arm's figures are the same whatever order its points came in."""

    points: int = 0
    figures: dict[str, list[int]] | None = None

    def add(self, point: dict) -> None:
        self.points += 1
        figures = self.figures if self.figures is not None else {}
        for figure, (counts, over) in FIGURES.items():
            if over is None or over(point):
                tally = figures.setdefault(figure, [0, 0])
                tally[0] += bool(counts(point))
                tally[1] += 1
        self.figures = figures

    def merge(self, other: "ArmCounts") -> None:
        self.points += other.points
        figures = self.figures if self.figures is not None else {}
        for figure, (counted, out_of) in (other.figures or {}).items():
            tally = figures.setdefault(figure, [0, 0])
            tally[0] += counted
            tally[1] += out_of
        self.figures = figures

    def figure(self, name: str) -> tuple[int, int]:
        counted, out_of = (self.figures or {}).get(name, (0, 0))
        return counted, out_of

    def to_dict(self) -> dict:
        return {"points": self.points, "figures": self.figures or {}}

    @classmethod
    def from_dict(cls, raw: dict) -> "ArmCounts":
        return cls(int(raw["points"]), {k: [int(a), int(b)] for k, (a, b) in raw["figures"].items()})

    @classmethod
    def of(cls, points: Iterable[dict]) -> "ArmCounts":
        counts = cls()
        for point in points:
            counts.add(point)
        return counts


def judge(gates: Gates, champion: list[dict], canary: list[dict]) -> list[Verdict]:
    """Each gate's verdict on the canary's decision points against the champion's."""
    return judge_counts(gates, ArmCounts.of(champion), ArmCounts.of(canary))


def judge_counts(gates: Gates, champion: ArmCounts, canary: ArmCounts) -> list[Verdict]:
    """Each gate's verdict on the canary's counts against the champion's."""
    enough = min(champion.points, canary.points) >= gates.min_decision_points
    verdicts = []
    for gate in gates.gates:
        mine, theirs = champion.figure(gate.figure), canary.figure(gate.figure)
        if not enough or not mine[1] or not theirs[1]:
            verdicts.append(Verdict(gate, PENDING, mine, theirs, None))
            continue
        interval = difference_interval(theirs[0], theirs[1], mine[0], mine[1])
        worse = interval.high < -gate.tolerance if gate.worse == LOWER else interval.low > gate.tolerance
        verdicts.append(Verdict(gate, FAIL if worse else PASS, mine, theirs, interval))
    return verdicts


def overall(verdicts: list[Verdict]) -> str:
    """FAIL when a gate failed, PASS when every gate passed, else PENDING."""
    found = {v.verdict for v in verdicts}
    return FAIL if FAIL in found else PASS if found == {PASS} else PENDING


__all__ = ["Gates", "Gate", "Verdict", "ArmCounts", "loads_gates", "packaged_gates", "arm_points", "judge",
           "judge_counts", "overall", "FIGURES", "POLICY_ARM", "MODEL_ARM",
           "OUTCOME_FIGURES", "PASS", "FAIL", "PENDING"]
