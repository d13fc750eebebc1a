"""Outcomes: signals that answer a decision (delivered, opened, clicked, converted, ...) by its
decision_id, joined to the decision the journey remembers. An answer changes the journey's
responsiveness, never its session or stage: it is not a step of the customer's own."""
from __future__ import annotations

from journeys.outputs import LogKind
from journeys.state import Journey

OUTCOMES = ("action_delivered", "opened", "clicked", "converted", "ignored", "escalation_resolved")


def answers_a_decision(signal: dict) -> bool:
    return signal["event_type"] in OUTCOMES and bool(signal["attributes"].get("decision_id"))


def join_outcome(journey: Journey, signal: dict) -> dict:
    """The join's fields for the journey log: the decision answered, and whether it was found."""
    outcome, decision_id = signal["event_type"], signal["attributes"]["decision_id"]
    journey.responses[outcome] = journey.responses.get(outcome, 0) + 1
    decided = journey.awaiting.get(decision_id)
    if decided is None:
        return {"decision_id": decision_id, "matched": False}
    decided_at, action, channel, agent, control = decided
    return {"decision_id": decision_id, "matched": True, "action": action, "channel": channel, "agent": agent,
            "control": control, "decided_at": decided_at, "after_ms": signal["event_time"] - decided_at}


def outcome_record(key: str, anonymous: bool, signal: dict, joined: dict) -> dict:
    """The journey log record of an answer that is only an answer (no signal of the ontology)."""
    return {"kind": LogKind.OUTCOME, "journey": key, "anonymous": anonymous, "at": signal["event_time"],
            "event_id": signal["event_id"], "event_type": signal["event_type"]} | joined


def unmatched(signal: dict) -> dict:
    """The join's fields for an answer to a journey that has closed, or never was."""
    return {"decision_id": signal["attributes"]["decision_id"], "matched": False}
