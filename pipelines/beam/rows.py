"""The rows of the replay's tables (pipelines.beam.storage has their schemas): stage history,
sessions, final journeys, and training rows for the stage models, from the journey log and the
decisions of one key."""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from journeys.features import ACTIVITY_FEATURES
from journeys.outputs import STAGE_KINDS, LogKind, enters_stage
from journeys.state import KeyState

# Profile features in training rows (null where the replay ran without --profiles).
PROFILE_INPUTS = ("lifetime_value", "segment", "tenure_days", "preferred_channel")




def stage_history_row(record: dict) -> dict | None:
    """A journey log record that changed (or ended) a journey's stage, as a stage-history row."""
    kind = record["kind"]
    if kind not in STAGE_KINDS or (kind in (LogKind.SIGNAL, LogKind.STITCH)
                                   and record.get("from_stage") in (None, record.get("stage"))):
        return None
    return {"journey": record["journey"], "anonymous": record["anonymous"], "at": record["at"], "kind": kind,
            "from_stage": record.get("from_stage"), "stage": record.get("stage"), "rule": record.get("rule"),
            "event_id": record.get("event_id"), "reason": record.get("reason")}


def signal_of_a_customer(record: dict) -> bool:
    """A journey log record of a signal applied to an identified customer's journey: what the signal
    mix beside a training set counts (journeys.drift), the population the models are trained on."""
    return record["kind"] == LogKind.SIGNAL and not record["anonymous"]


def session_row(record: dict) -> dict | None:
    if record["kind"] != LogKind.SESSION:
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
    signals = sorted((r["at"], r["event_id"]) for r in journey_records if r["kind"] == LogKind.SIGNAL)
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
