"""Simulated outcomes of decisions, for the feedback loop: the customer's answer to each action,
with likelihoods that depend on the action, so that an action's uplift is real in simulation and
the uplift table (pipelines.reports.uplift) can be checked against the truth.

Each decision gets its own random stream (seeded by the seed and the decision id), so outcomes
do not depend on the order decisions arrive in. Outcomes are signals of the signal contract:
event types action_delivered, opened, clicked, converted, ignored, escalation_resolved, with the
decision id in attributes.decision_id.
"""
from __future__ import annotations

import hashlib
import heapq
import random
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import orjson

from journeys.contract import Rejection, SignalDecoder
from journeys.ids import stable_id

MINUTE_MS = 60_000

DEFAULT_EFFECTS = {  # the true, absolute rise in the chance of converting that each action causes
    "onsite_cart_nudge": 0.03, "abandoned_cart_reminder": 0.08, "free_shipping_offer": 0.12,
    "recommend_products": 0.02, "winback_offer": 0.06, "loyalty_offer": 0.04,
}
DEFAULT_OPEN_RATES = {"email": 0.45, "sms": 0.6, "push": 0.3, "web": 0.7, "app": 0.7, "call_center": 1.0}


@dataclass(frozen=True)
class OutcomeModel:
    base_conversion: float = 0.10
    effects: dict = field(default_factory=lambda: dict(DEFAULT_EFFECTS))
    open_rates: dict = field(default_factory=lambda: dict(DEFAULT_OPEN_RATES))
    click_given_open: float = 0.4
    resolution_rate: float = 0.8

    def conversion_chance(self, action: str | None, control: bool) -> float:
        return self.base_conversion + (0.0 if control or action is None else self.effects.get(action, 0.0))


def outcomes_for(decisions, model: OutcomeModel = OutcomeModel(), seed: int = 7) -> list[dict]:
    signals = []
    for decision in sorted(decisions, key=lambda d: d["decision_id"]):
        if not decision.get("action"):
            continue  # the policy allowed nothing: there is nothing to answer
        rng = random.Random(int.from_bytes(hashlib.blake2b(f"{seed}:{decision['decision_id']}".encode(),
                                                           digest_size=8).digest(), "big"))
        at = decision["decided_at"]
        control = bool(decision.get("control"))
        answers = []
        if not control and decision.get("action"):
            answers.append(("action_delivered", 1))
            opened = rng.random() < model.open_rates.get(decision.get("channel"), 0.3)
            answers.append(("opened", 30) if opened else ("ignored", 24 * 60))
            if opened and rng.random() < model.click_given_open:
                answers.append(("clicked", 35))
            if decision["action"] == "escalate_to_agent" and rng.random() < model.resolution_rate:
                answers.append(("escalation_resolved", 8 * 60))
        if rng.random() < model.conversion_chance(decision.get("action"), control):
            answers.append(("converted", 6 * 60))
        for outcome, minutes in answers:
            signals.append(_signal(decision, outcome, at + minutes * MINUTE_MS))
    return signals


def _signal(decision: dict, outcome: str, at: int) -> dict:
    return {"event_id": stable_id("o-", decision["decision_id"], outcome),
            "event_time": at, "channel": decision.get("channel") or "web", "event_type": outcome,
            "customer_id": decision.get("customer_id"),
            "anonymous_id": None if decision.get("customer_id") else decision["journey"],
            "session_hint": None, "attributes": {"decision_id": decision["decision_id"]}, "schema_version": 2,
            "timezone": "UTC"}


@dataclass
class Merged:
    written: int = 0
    outcomes: int = 0
    after_the_end: int = 0  # outcomes later than the input's end, left out


def merge_outcomes(lines: Iterable[bytes], outcomes: list[dict], until: int | None, merged: Merged,
                   decoder: SignalDecoder | None = None, now_ms: int | None = None) -> Iterator[bytes]:
    """The signal lines in their order, with each outcome signal put in just before the first line
    that moves the input's event time past it, so that no outcome arrives late. Lines intake would
    reject keep their place and move no time. Outcomes after `until` (the latest event time, by
    default) are left out."""
    decoder = decoder or SignalDecoder()
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    pending = [(o["event_time"], o["event_id"], o) for o in outcomes]
    heapq.heapify(pending)
    latest = None
    for raw in lines:
        signal = decoder.decode_json(raw, now_ms)
        at = None if isinstance(signal, Rejection) else signal["event_time"]
        if at is not None and (latest is None or at > latest):
            latest = at
            while pending and pending[0][0] <= at:
                merged.outcomes += 1
                yield orjson.dumps(heapq.heappop(pending)[2])
        merged.written += 1
        yield raw
    end = until if until is not None else latest
    for at, _, outcome in sorted(pending):
        if end is not None and at > end:
            merged.after_the_end += 1
            continue
        merged.outcomes += 1
        yield orjson.dumps(outcome)


def as_outcome_records(signals) -> list[dict]:
    """The (decision_id, outcome) pairs of outcome signals, as the uplift table takes them."""
    return [{"decision_id": s["attributes"]["decision_id"], "outcome": s["event_type"]} for s in signals]
