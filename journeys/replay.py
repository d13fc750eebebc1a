"""Batch replay of the journey core, one key at a time, with no engine.

The stream job's keyed operators see a key's items as they arrive and act when the watermark
passes their timers. A replay knows every item of a key in advance, so it runs the same
`KeyedJourneys.on_timer` calls itself: each timer fires in event-time order with the watermark at
its own time, handing over the items due by then; when the input ends, one last call with the
watermark at the end of time flushes the key, as the stream job's end of input does. Time stops
at the end clock, as in the stream job's bounded runs.

The one defined difference from the stream job: a replay has the whole history, so nothing is
late. Signals the stream job found later than the allowed lateness (and reported as `late`
without applying them) are applied in their place here.
"""
from __future__ import annotations

import heapq
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Iterable

from journeys.features import ACTIVITY_FEATURES
from journeys.keyed import MAX_WATERMARK, KeyedJourneys, element_timer
from journeys.state import AT, EVENT_ID, KeyState, item_head
from journeys.summary import enters_stage

# Profile features in training rows (null where the replay ran without --profiles).
PROFILE_INPUTS = ("lifetime_value", "segment", "tenure_days", "preferred_channel")


@dataclass
class KeyReplay:
    state: KeyState | None
    out: list = field(default_factory=list)


def replay_key(keyed: KeyedJourneys, items: Iterable[str], end_clock: int) -> KeyReplay:
    """Every item of one key (signals, handoffs, forwards) -> the key's final state and outputs."""
    heads = sorted(((item_head(item), item) for item in items), key=lambda pair: (pair[0][AT], pair[0][EVENT_ID]))
    ordered = [item for _, item in heads]
    timers: list[int] = []
    registered: set[int] = set()

    def register(times: Iterable[int]) -> None:
        for at in times:
            if at not in registered:
                registered.add(at)
                heapq.heappush(timers, at)

    register(element_timer(item) for item in ordered)
    state, out, handed = None, [], 0
    while timers and timers[0] <= end_clock:
        fired_at = heapq.heappop(timers)
        if fired_at not in registered:
            continue  # deleted
        registered.discard(fired_at)
        due = handed
        while due < len(ordered) and element_timer(ordered[due]) <= fired_at:
            due += 1
        state, produced, new_timers, deleted = keyed.on_timer(state, ordered[handed:due], fired_at, fired_at, end_clock)
        handed = due
        out.extend(produced)
        registered.difference_update(deleted)
        register(new_timers)
    if registered or handed < len(ordered):
        # The input ended: the watermark jumps to the end of time and the key's next timer fires.
        fired_at = min(registered) if registered else element_timer(ordered[handed])
        state, produced, _, _ = keyed.on_timer(state, ordered[handed:], fired_at, MAX_WATERMARK, end_clock)
        out.extend(produced)
    return KeyReplay(state, out)


@dataclass
class ReplayRun:
    """The whole replay in one process, key by key: what the Beam pipeline does in parallel, and
    what tests hold it to."""

    end_clock: int | None
    journey_records: list = field(default_factory=list)
    decisions: list = field(default_factory=list)      # the actions taken
    decision_log: list = field(default_factory=list)   # every decision point, acted on or not
    dead_letters: list = field(default_factory=list)
    feature_rows: list = field(default_factory=list)
    states: dict = field(default_factory=dict)  # (role, key) -> final KeyState


def replay_lines(ontology, settings, lines: Iterable[bytes], end_clock: int | None = None, profiles=None,
                 now_ms: int | None = None) -> ReplayRun:
    """Replay raw JSON lines. end_clock: by default the latest accepted event time minus the bound."""
    import time

    from journeys.contract import Rejection
    from journeys.keyed import CUSTOMER, ROUTE, VISITOR
    from journeys.reference import build_intake, build_roles
    from journeys.transitions import DECISION, FEATURES, JOURNEY

    intake = build_intake(ontology, settings, late_by_source_order=False)
    roles = build_roles(ontology, settings, profiles, push_features=True)
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    run = ReplayRun(end_clock)
    items: dict[str, dict[str, list[str]]] = {VISITOR: {}, CUSTOMER: {}}
    latest = None
    for raw in lines:
        taken = intake.take(raw, now)
        if isinstance(taken, Rejection):
            run.dead_letters.append(taken.to_record())
            continue
        role, key, item, at = taken
        items[role].setdefault(key, []).append(item)
        latest = at if latest is None else max(latest, at)
    if run.end_clock is None and latest is not None:
        run.end_clock = latest - settings.max_out_of_orderness_ms - 1
    for role in (VISITOR, CUSTOMER):
        for key in sorted(items[role]):
            replayed = replay_key(roles[role], items[role][key], run.end_clock)
            run.states[(role, key)] = replayed.state
            for entry in replayed.out:
                kind = entry[0]
                if kind == JOURNEY:
                    entry[1].pop("_ingested_at", None)
                    run.journey_records.append(entry[1])
                elif kind == DECISION:
                    record = dict(entry[1])
                    record.pop("_ingested_at", None)
                    run.decision_log.append(record)
                    if record["acted"]:
                        run.decisions.append(record)
                elif kind == ROUTE:
                    items[CUSTOMER].setdefault(entry[1], []).append(entry[2])
                elif kind == FEATURES:
                    run.feature_rows.append({"customer_id": entry[1]} | entry[2])
    return run


# -- rows for the replay's tables -------------------------------------------------------------
STAGE_CHANGES = ("signal", "transition", "stitch", "closed")


def stage_history_row(record: dict) -> dict | None:
    """A journey log record that changed (or ended) a journey's stage, as a stage-history row."""
    kind = record["kind"]
    if kind not in STAGE_CHANGES or (kind in ("signal", "stitch") and record.get("from_stage") in (None, record.get("stage"))):
        return None
    return {"journey": record["journey"], "anonymous": record["anonymous"], "at": record["at"], "kind": kind,
            "from_stage": record.get("from_stage"), "stage": record.get("stage"), "rule": record.get("rule"),
            "event_id": record.get("event_id"), "reason": record.get("reason")}


def session_row(record: dict) -> dict | None:
    if record["kind"] != "session":
        return None
    return {"session_id": record["session_id"], "journey": record["journey"], "anonymous": record["anonymous"],
            "start": record["start"], "end": record["end"], "signals": record["signals"],
            "channels": list(record["channels"]), "event_types": dict(record["event_types"]),
            "stage_at_start": record["stage_at_start"], "stage": record["stage"], "open": record["open"]}


def journey_row(role: str, state: KeyState | None) -> dict | None:
    """A journey's state at the end of the replay; None for a key without one (a visitor handed on)."""
    journey = state.journey if state is not None and state.has_journey() else None
    if journey is None:
        return None
    return {"journey": journey.key, "anonymous": journey.anonymous, "stage": journey.stage,
            "stage_since": journey.stage_since, "stage_rule": journey.evidence[0] if journey.evidence else None,
            "first_seen": journey.first_seen, "last_activity": journey.last_activity,
            "signal_counts": dict(journey.counts), "sessions_closed": journey.sessions_closed,
            "session_open": journey.session is not None, "aliases": list(journey.aliases)}


@dataclass(frozen=True)
class Labels:
    """What happened next, for training rows: within `horizon_ms` after a decision."""

    horizon_ms: int
    conversion_stage: str = "conversion"
    churn_stage: str = "churned"


def training_rows(customer_id: str, decisions: list[dict], journey_records: list[dict], labels: Labels,
                  end_clock: int) -> list[dict]:
    """One row per decision point of an identified customer: the features the decision was made
    with (known at that time: they are computed from signals up to it) and labels from what
    happened in the horizon after it. label_complete is false when the horizon runs past the end
    of the data, so those labels can only be positive, never a trustworthy negative."""
    entered: dict[str, list[int]] = {}
    for record in journey_records:
        if enters_stage(record):
            entered.setdefault(record["stage"], []).append(record["at"])
    escalations = sorted(d["decided_at"] for d in decisions if d["trigger"] == "escalation")
    signals = sorted((r["at"], r["event_id"]) for r in journey_records if r["kind"] == "signal")
    signal_times = [at for at, _ in signals]

    def within(times: list[int], start: int) -> bool:
        return any(start < t <= start + labels.horizon_ms for t in times)

    rows = []
    for decision in sorted(decisions, key=lambda d: (d["decided_at"], d["decision_id"])):
        at = decision["decided_at"]
        features = decision.get("features") or {}
        rows.append({
            "customer_id": customer_id, "event_timestamp": at, "decision_id": decision["decision_id"],
            "stage": decision["stage"], "trigger": decision["trigger"], "action": decision["action"],
            "channel": decision["channel"],
            # The signal the journey had seen last: where ground truth (the simulator's, or labels
            # joined later) about the customer's real stage at that time is found.
            "last_event_id": signals[bisect_right(signal_times, at) - 1][1] if signal_times and signal_times[0] <= at else None,
            **{name: features.get(name) for name in ACTIVITY_FEATURES},
            **{name: features.get(name) for name in PROFILE_INPUTS},
            "converted": within(entered.get(labels.conversion_stage, []), at),
            "churned": within(entered.get(labels.churn_stage, []), at),
            "escalated": within(escalations, at),
            "label_horizon_ms": labels.horizon_ms,
            "label_complete": at + labels.horizon_ms <= end_clock,
        })
    return rows
