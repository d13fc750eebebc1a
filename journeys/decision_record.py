"""A policy verdict as an explained decision record: what was chosen and by which agent, every
candidate with its priority and what suppressed it, the policy version, and a paragraph a person
can read. The job's decision records (decision schema v4) are these, with the features, model
scores and latency added by journeys.decision_point."""
from __future__ import annotations

from journeys.ids import stable_id
from journeys.policy import Verdict


def explained_record(verdict: Verdict, *, journey: str, customer_id: str | None, trigger: str, event_ids: list[str],
                     at: int, stage: str, policy_name: str, trigger_key: str | None = None) -> dict:
    """trigger_key: what makes this decision point unique for the journey and trigger (the event,
    session or plan id); by default the last triggering event, or the trigger and time."""
    chosen = verdict.chosen
    would_have = next((c.candidate for c in verdict.considered if not c.suppressed_by), None)
    action = chosen if chosen is not None else (would_have if verdict.control_group else None)
    return {
        "decision_id": stable_id("d-", journey, trigger,
                                 trigger_key or (event_ids[-1] if event_ids else f"{trigger}@{at}"),
                                 action.action if action else None),
        "journey": journey, "customer_id": customer_id, "trigger": trigger, "event_ids": list(event_ids),
        "decided_at": at, "stage": stage,
        "action": action.action if action else None, "channel": action.channel if action else None,
        "agent": action.agent if action else None, "acted": chosen is not None,
        "control": verdict.control_group, "mandatory": verdict.mandatory,
        "candidates": [{"action": c.candidate.action, "channel": c.candidate.channel, "agent": c.candidate.agent,
                        "priority": c.priority, "factors": c.factors, "suppressed_by": list(c.suppressed_by)}
                       for c in verdict.considered],
        "suppressions": verdict.suppressions,
        "policy": policy_name, "policy_version": verdict.policy_version,
        "justification": justification(verdict, stage, policy_name),
    }


def justification(verdict: Verdict, stage: str, policy_name: str) -> str:
    policy = f"Policy {policy_name} version {verdict.policy_version}."
    allowed = [c for c in verdict.considered if not c.suppressed_by]
    held = [c for c in verdict.considered if c.suppressed_by]
    held_text = ("Held back: " + "; ".join(f"{c.candidate.action} by {c.candidate.channel} ({', '.join(c.suppressed_by)})"
                                           for c in held)) if held else ""
    if verdict.control_group:
        first = (f"The customer is in the control group, so no action was taken; the policy would have chosen "
                 f"{allowed[0].candidate.action} by {allowed[0].candidate.channel}." if allowed else
                 "The customer is in the control group, so no action was taken.")
        return " ".join(part for part in (first, held_text + "." if held_text else "", policy) if part)
    if verdict.chosen is None:
        reason = f"No action in {stage}. " + (held_text if held_text else "No agent proposed one") + "."
        return f"{reason} {policy}"
    winner = next(c for c in verdict.considered if c.candidate == verdict.chosen)
    factors = " × ".join(f"{name} {value:.3g}" for name, value in winner.factors.items())
    text = (f"In {stage}, the {winner.candidate.agent} agent proposed {winner.candidate.action} by "
            f"{winner.candidate.channel}" + (f" ({winner.candidate.reason})" if winner.candidate.reason else ""))
    if verdict.mandatory:
        text += ", a mandatory action, so it went ahead of arbitration."
    else:
        text += f"; it won with priority {winner.priority:.3g} = {factors}."
    others = [c for c in allowed if c is not winner]
    if others:
        text += " Also allowed: " + ", ".join(f"{c.candidate.action} ({c.priority:.3g})" for c in others) + "."
    if held_text:
        text += f" {held_text}."
    return f"{text} {policy}"
