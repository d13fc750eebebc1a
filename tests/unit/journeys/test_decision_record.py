"""Explained decision records from policy verdicts: deterministic ids, every candidate with its
priority and suppressions, the policy version, and a justification a person can read."""
from __future__ import annotations

from journeys.decision_record import explained_record
from journeys.policy import Candidate, Context, loads_policy
from tests.harness import BEGINNING

POLICY = loads_policy("""
policy: retail
version: '4'
arbitration:
  priority: [propensity, business_value]
  business_value: {by: action, values: {abandoned_cart_reminder: 2.0}, default: 1.0}
consent: {email: consent_email}
mandatory: [escalate_to_agent]
control_group: {share: 0.5, salt: t}
""")
NUDGE = Candidate("onsite_cart_nudge", "web", "conversion", 0.5, "has a cart open")
REMINDER = Candidate("abandoned_cart_reminder", "email", "conversion", 0.4, "left a cart")


def customer(in_control: bool) -> str:
    return next(f"c-{i}" for i in range(100) if POLICY.in_control_group(f"c-{i}") == in_control)


def record_for(customer_id: str, consent: bool):
    verdict = POLICY.decide([NUDGE, REMINDER], Context(customer_id, BEGINNING, values={"consent_email": consent}),
                            "session_closed")
    return explained_record(verdict, journey=customer_id, customer_id=customer_id, trigger="session_closed",
                            event_ids=["e-1", "e-2"], at=BEGINNING, stage="intent", policy_name=POLICY.name)


def test_the_record_names_the_winner_every_candidate_and_the_policy_version():
    record = record_for(customer(False), consent=True)

    assert (record["action"], record["agent"], record["policy_version"]) == ("abandoned_cart_reminder", "conversion", "4")
    assert [(c["action"], c["priority"]) for c in record["candidates"]] == [("abandoned_cart_reminder", 0.8),
                                                                            ("onsite_cart_nudge", 0.5)]
    assert record["justification"] == (
        "In intent, the conversion agent proposed abandoned_cart_reminder by email (left a cart); it won with "
        "priority 0.8 = propensity 0.4 × business_value 2. Also allowed: onsite_cart_nudge (0.5). "
        "Policy retail version 4.")
    assert record == record_for(customer(False), consent=True)  # deterministic, id included


def test_a_suppressed_candidate_says_by_which_rule():
    record = record_for(customer(False), consent=False)
    assert record["action"] == "onsite_cart_nudge" and record["suppressions"] == {"consent:email": 1}
    assert "Held back: abandoned_cart_reminder by email (consent:email)." in record["justification"]


def test_a_control_group_customer_gets_nothing_and_the_record_says_what_was_held_back():
    record = record_for(customer(True), consent=True)
    assert record["control"] is True and record["action"] == "abandoned_cart_reminder"
    assert record["justification"].startswith("The customer is in the control group, so no action was taken; "
                                              "the policy would have chosen abandoned_cart_reminder by email.")
