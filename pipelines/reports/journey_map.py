"""What a journey map shows, computed from a run's journey log and decision log, with no drawing
library in sight: stage transitions with counts (by channel), stage populations over time, the
conversion funnel with its drop-off, the most common paths, decisions by action with outcome
rates and uplift, cross-channel consistency, and one customer's timeline. pipelines.reports.map_page draws it.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable

from journeys.outputs import STAGE_ENTRY_KINDS, STAGE_KINDS, LogKind, enters_stage
from journeys.timeutil import DAY
from pipelines.reports.summary import consistency
from pipelines.reports.uplift import uplift_table

TIME = "time"  # the "channel" of a transition that event time made, not a signal
FUNNEL = ("discovery", "consideration", "intent", "conversion", "retention")


@dataclass
class JourneyMap:
    stages: tuple
    transitions: dict = field(default_factory=dict)   # channel ("all" too) -> {(from, to): count}
    populations: dict = field(default_factory=dict)   # {"days": [ms...], stage: [count per day]}
    funnel: list = field(default_factory=list)        # [(stage, journeys that reached it, share of the previous)]
    paths: list = field(default_factory=list)         # [(path as "a > b > c", journeys)]
    uplift: dict = field(default_factory=dict)        # action -> uplift row (pipelines.reports.uplift)
    decisions_by_action: dict = field(default_factory=dict)
    consistency: dict = field(default_factory=dict)   # pipelines.reports.summary.consistency
    timelines: dict = field(default_factory=dict)     # journey -> [event, ...] in time order


def build_map(journey_records: Iterable[dict], decisions: Iterable[dict], stages: tuple,
              bucket_ms: int = DAY) -> JourneyMap:
    records = sorted(journey_records, key=lambda r: (r["at"], r.get("event_id") or "", r["kind"]))
    decisions = sorted(decisions, key=lambda d: (d["decided_at"], d["decision_id"]))
    built = JourneyMap(stages=tuple(stages))
    built.transitions = _transitions(records)
    built.populations = _populations(records, stages, bucket_ms)
    built.funnel, built.paths = _funnel_and_paths(records)
    outcomes = [{"decision_id": r["decision_id"], "outcome": r["event_type"]} for r in records
                if r.get("decision_id") and r.get("matched")]
    built.uplift = uplift_table([d for d in decisions if d.get("action")], outcomes)
    built.decisions_by_action = dict(Counter(d["action"] for d in decisions if d.get("acted", True)).most_common())
    built.consistency = consistency(sum(built.decisions_by_action.values()), Counter(
        (r["signal_channel"], r["channel"]) for r in records if r["kind"] == LogKind.STALE_DECISION))
    built.timelines = _timelines(records, decisions)
    return built


def _transitions(records: list[dict]) -> dict:
    by_channel: dict[str, Counter] = defaultdict(Counter)
    for record in records:
        if enters_stage(record) and record["kind"] != LogKind.STITCH:  # at a stitch the visitor had already moved
            pair = (record["from_stage"], record["stage"])
            by_channel["all"][pair] += 1
            by_channel[record.get("channel") or TIME][pair] += 1
    return {channel: dict(counts.most_common()) for channel, counts in sorted(by_channel.items())}


def _populations(records: list[dict], stages: tuple, bucket_ms: int) -> dict:
    """Journeys in each stage at the end of each bucket (closed journeys leave the count)."""
    stage_records = [r for r in records if r["kind"] in STAGE_KINDS]
    if not stage_records:
        return {"days": []}
    first = stage_records[0]["at"] - stage_records[0]["at"] % bucket_ms
    current: dict[str, str | None] = {}
    series = {stage: [] for stage in stages}
    ends, index = [], 0
    end = first + bucket_ms
    while index < len(stage_records):
        while index < len(stage_records) and stage_records[index]["at"] < end:
            record = stage_records[index]
            if record["kind"] == LogKind.CLOSED:
                current[record["journey"]] = None
            elif record["kind"] == LogKind.STITCH:
                current[record["anonymous_id"]] = None  # the visitor is the customer from now on
                current[record["journey"]] = record["stage"]
            else:
                current[record["journey"]] = record["stage"]
            index += 1
        counts = Counter(stage for stage in current.values() if stage is not None)
        ends.append(end)
        for stage in stages:
            series[stage].append(counts.get(stage, 0))
        end += bucket_ms
    return {"days": ends, **series}


def _funnel_and_paths(records: list[dict]) -> tuple[list, list]:
    visited: dict[str, list[str]] = {}
    for record in records:
        if record["kind"] not in STAGE_ENTRY_KINDS:
            continue
        journey = record["journey"]
        path = visited.setdefault(journey, [])
        if record["kind"] == LogKind.STITCH:
            path[:0] = [s for s in visited.pop(record["anonymous_id"], []) if s not in path[:1]]
        elif not path and record.get("from_stage"):
            path.append(record["from_stage"])  # a first signal that moved the journey at once
        if not path or path[-1] != record["stage"]:
            path.append(record["stage"])
    reached = Counter(stage for path in visited.values() for stage in set(path))
    funnel, previous = [], None
    for stage in FUNNEL:
        count = reached.get(stage, 0)
        funnel.append((stage, count, None if not previous else round(count / previous, 4)))
        previous = count
    paths = Counter(" > ".join(path) for path in visited.values() if path)
    return funnel, paths.most_common(10)


def _timelines(records: list[dict], decisions: list[dict]) -> dict:
    """Per journey (a customer's includes their anonymous visits before login): signals, stage
    changes and decisions with their justifications, in time order."""
    owner: dict[str, str] = {}
    for record in records:
        if record["kind"] == LogKind.STITCH:
            owner[record["anonymous_id"]] = record["journey"]
    lines: dict[str, list] = defaultdict(list)
    for record in records:
        if record["kind"] not in STAGE_KINDS + (LogKind.OUTCOME,):
            continue
        journey = owner.get(record["journey"], record["journey"])
        entry = {"at": record["at"], "kind": record["kind"], "stage": record.get("stage")}
        if record["kind"] == LogKind.SIGNAL:
            entry |= {"event_type": record["event_type"], "channel": record["channel"]}
        if enters_stage(record):
            entry["from_stage"] = record["from_stage"]
        if record["kind"] == LogKind.OUTCOME:
            entry |= {"event_type": record["event_type"], "decision_id": record["decision_id"]}
        lines[journey].append(entry)
    for decision in decisions:
        journey = owner.get(decision["journey"], decision["journey"])
        lines[journey].append({"at": decision["decided_at"], "kind": "decision", "stage": decision["stage"],
                               "action": decision.get("action"), "channel": decision.get("channel"),
                               "acted": decision.get("acted", True), "control": decision.get("control", False),
                               "decision_id": decision["decision_id"],
                               "justification": decision.get("justification") or decision.get("reason")})
    return {journey: sorted(entries, key=lambda e: (e["at"], e["kind"] == "decision"))
            for journey, entries in lines.items()}
