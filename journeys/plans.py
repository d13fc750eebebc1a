"""Agents' planned follow-ups in a journey's state: cancelled when their goal is reached, taken
out when due (the decision point then carries them out)."""
from __future__ import annotations

from journeys.agents import FollowUp, plans_after
from journeys.outputs import JourneyLog, LogKind
from journeys.state import Journey


def cancel_reached(journey: Journey, entered: str, at: int, out: list) -> None:
    """Plans whose goal the journey has just reached are no longer needed."""
    if not journey.plans:
        return
    plans = tuple(FollowUp.from_wire(p) for p in journey.plans)
    pending, due = plans_after(plans, entered, at)
    kept = set(pending + due)
    for plan in plans:
        if plan not in kept:
            out.append(JourneyLog({"kind": LogKind.PLAN_CANCELLED, "journey": journey.key,
                                   "anonymous": journey.anonymous, "at": at, "plan": plan.id, "action": plan.action,
                                   "agent": plan.agent, "reason": f"goal {entered} reached"}))
    journey.plans = [p.to_wire() for p in plans if p in kept]


def take_due(journey: Journey, plan: FollowUp) -> None:
    journey.plans = [p for p in journey.plans if p[0] != plan.id]
