"""Cross-channel consistency: was a decision still valid given every channel's signals up to the
moment it went out?

A journey decides as signals arrive, and channels do not arrive in the order things happened: a
store till or a call centre reports minutes after the web does. A decision is *stale* when a
signal that happened before it (event time) reaches the journey after it was made, and moves the
journey to a stage that does not offer the decision's action, though the stage it was decided in
did: an e-mailed cart reminder at 10:05 is stale once a purchase in the store at 10:01 arrives.
Actions no stage offers (an escalation, say) are not judged: a stage change does not make them moot.

Each stale decision is reported once, as a journey log record (LogKind.STALE_DECISION) naming the
decision and both channels, so that a run's consistency (the share of acted decisions not stale)
and its stale decisions by channel pair can be counted from the log, live and afterwards.
"""
from __future__ import annotations

from journeys.ontology import Ontology
from journeys.outputs import JourneyLog, LogKind
from journeys.state import Journey

# Positions in a remembered contact: [decided_at, channel, action, decision_id, stage, stale]
DECIDED_AT, CHANNEL, ACTION, DECISION_ID, STAGE, STALE = range(6)


def contact(at: int, channel: str, action: str, decision_id: str, stage: str) -> list:
    return [at, channel, action, decision_id, stage, False]


def find_stale(journey: Journey, signal: dict, stage: str, ontology: Ontology, out: list) -> None:
    """Report the journey's acted decisions that `signal`, moving the journey to `stage`, makes stale."""
    at = signal["event_time"]
    offered = ontology.stage_by_id[stage].actions if stage in ontology.stage_by_id else ()
    for remembered in journey.contacts:
        if remembered[DECIDED_AT] <= at or len(remembered) <= STALE or remembered[STALE]:
            continue  # made before the signal happened, remembered before stages were kept, or reported already
        action, decided_in = remembered[ACTION], remembered[STAGE]
        if action in offered or decided_in not in ontology.stage_by_id or action not in ontology.stage_by_id[decided_in].actions:
            continue
        remembered[STALE] = True
        out.append(JourneyLog({
            "kind": LogKind.STALE_DECISION, "journey": journey.key, "anonymous": journey.anonymous, "at": at,
            "event_id": signal["event_id"], "signal_channel": signal["channel"], "stage": stage,
            "decision_id": remembered[DECISION_ID], "action": action, "channel": remembered[CHANNEL],
            "decided_at": remembered[DECIDED_AT], "decided_in": decided_in}))


__all__ = ["find_stale", "contact"]
