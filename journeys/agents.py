"""Behavioural agents: each observes one customer's journey, features and model scores, and
proposes scored candidate actions for the policy (journeys.policy) to allow and arbitrate.

Agents are small, pure and independent. They coordinate through what they all read, the shared
journey state, and through the policy: an open complaint, say, is in the state, the service
agent escalates on it, and the policy's complaint cooldown holds the others' marketing back.

An agent can plan: a proposal may carry a follow-up ("if no purchase within 24 h of the cart
reminder, offer free shipping"), which the job keeps in the journey's state and carries out with
an event-time timer, unless the goal is reached first (plans_after).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from journeys.policy import Candidate

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Observation:
    """What agents see of one customer at one decision point."""

    journey: str
    identified: bool
    stage: str
    trigger: str                 # stage_entered, session_closed, escalation, plan_due
    at: int                      # event time, ms
    values: dict                 # journey and feature values by name (cart_value, support_contacts_7d, ...)
    propensity: float | None = None   # the conversion model's score, when a model scored it
    open_complaint: bool = False


@dataclass(frozen=True)
class FollowUp:
    """A step an agent plans: at `due_at`, propose `action` by `channel`, unless one of the
    `goal` stages is entered first."""

    id: str
    agent: str
    due_at: int
    action: str
    channel: str
    goal: frozenset
    propensity: float = 0.5
    reason: str = ""

    def to_wire(self) -> list:
        return [self.id, self.agent, self.due_at, self.action, self.channel, sorted(self.goal), self.propensity,
                self.reason]

    @classmethod
    def from_wire(cls, wire: list) -> "FollowUp":
        plan_id, agent, due_at, action, channel, goal, propensity, reason = wire
        return cls(plan_id, agent, due_at, action, channel, frozenset(goal), propensity, reason)


@dataclass(frozen=True)
class Proposal:
    candidate: Candidate
    follow_up: FollowUp | None = None


class Agent(Protocol):
    name: str

    def propose(self, seen: Observation) -> list[Proposal]: ...


def _propensity(seen: Observation, fallback: float) -> float:
    return fallback if seen.propensity is None else seen.propensity


class ConversionAgent:
    """Intent and cart abandonment lead to nudges, reminders, recommendations and offers."""

    name = "conversion"

    def __init__(self, offer_after_ms: int = 24 * HOUR_MS):
        self.offer_after_ms = offer_after_ms

    def propose(self, seen: Observation) -> list[Proposal]:
        cart = float(seen.values.get("cart_value") or 0.0)
        chance = _propensity(seen, 0.3)
        if seen.stage == "consideration":
            return [Proposal(Candidate("recommend_products", "web", self.name, chance, "browsing products"))]
        if seen.stage == "conversion" and seen.identified:
            return [Proposal(Candidate("order_follow_up", "email", self.name, chance, "has just bought"))]
        if seen.stage != "intent":
            return []
        if seen.trigger == "session_closed":
            if not seen.identified:
                return []  # the visitor has left the site: only a message could still reach them
            offer = FollowUp(f"{seen.journey}:free_shipping@{seen.at}", self.name, seen.at + self.offer_after_ms,
                             "free_shipping_offer", "email", frozenset({"conversion"}), min(1.0, chance + 0.1),
                             f"no purchase within {self.offer_after_ms // HOUR_MS} h of the cart reminder")
            return [Proposal(Candidate("abandoned_cart_reminder", "email", self.name, chance,
                                       f"left a cart worth {cart:.2f}" if cart else "left a cart"), offer)]
        if seen.values.get("stage", seen.stage) != "intent":  # the stage model sees intent where the rules saw no
            # cart (it was bought already, say): there is no cart to nudge, so show products
            return [Proposal(Candidate("recommend_products", "web", self.name, chance, "shows intent without a cart"))]
        return [Proposal(Candidate("onsite_cart_nudge", "web", self.name, chance, "has a cart open"))]


class RetentionAgent:
    """At-risk customers get win-back actions; loyal ones, loyalty offers."""

    name = "retention"

    def propose(self, seen: Observation) -> list[Proposal]:
        if not seen.identified:
            return []
        if seen.stage == "at_risk":
            return [Proposal(Candidate("winback_offer", "email", self.name, 1.0 - _propensity(seen, 0.5),
                                       "at risk of churning"))]
        if seen.stage == "retention":
            return [Proposal(Candidate("loyalty_offer", "email", self.name, _propensity(seen, 0.2), "between purchases"))]
        return []


class ServiceAgent:
    """Complaints and repeated support contacts go to a human queue."""

    name = "service"

    def __init__(self, repeated_contacts: int = 3):
        self.repeated_contacts = repeated_contacts

    def propose(self, seen: Observation) -> list[Proposal]:
        contacts = int(seen.values.get("support_contacts_7d") or 0)
        if seen.trigger == "escalation":
            what = "an open complaint" if seen.open_complaint else f"{contacts} support contacts in 7 days"
            return [Proposal(Candidate("escalate_to_agent", "call_center", self.name, 1.0, what))]
        if seen.open_complaint or seen.values.get("escalated_7d"):
            return []  # a person has the case already; others' marketing waits out the cooldown
        if contacts >= self.repeated_contacts:
            return [Proposal(Candidate("escalate_to_agent", "call_center", self.name, 0.9,
                                       f"{contacts} support contacts in 7 days"))]
        return []


class DiscoveryAgent:
    """New visitors get welcome content, and an invitation to sign up."""

    name = "discovery"

    def propose(self, seen: Observation) -> list[Proposal]:
        if seen.stage != "discovery":
            return []
        if seen.identified:
            return [Proposal(Candidate("welcome_content", "web", self.name, 0.2, "new to the shop"))]
        return [Proposal(Candidate("newsletter_signup_prompt", "web", self.name, 0.15, "an anonymous first visit"))]


DEFAULT_AGENTS = (ConversionAgent(), RetentionAgent(), ServiceAgent(), DiscoveryAgent())


def proposals(seen: Observation, agents=DEFAULT_AGENTS) -> list[Proposal]:
    """Every agent's proposals, in agent order (the policy arbitrates; order only breaks nothing)."""
    return [proposal for agent in agents for proposal in agent.propose(seen)]


def plans_after(plans: tuple, entered_stage: str | None, at: int) -> tuple[tuple, tuple]:
    """(plans still pending, plans due now) after the journey entered `entered_stage` (or None)
    at event time `at`: a plan whose goal is reached is cancelled; one due by `at` is handed back."""
    pending, due = [], []
    for plan in plans:
        if entered_stage is not None and entered_stage in plan.goal:
            continue  # the goal was reached: the follow-up is no longer needed
        (due if plan.due_at <= at else pending).append(plan)
    return tuple(pending), tuple(due)


def follow_up_candidate(plan: FollowUp) -> Candidate:
    return Candidate(plan.action, plan.channel, plan.agent, plan.propensity, plan.reason)


__all__ = ["Observation", "FollowUp", "Proposal", "Agent", "ConversionAgent", "RetentionAgent", "ServiceAgent",
           "DiscoveryAgent", "DEFAULT_AGENTS", "proposals", "plans_after", "follow_up_candidate"]
