"""Decisions in the journey core: agents propose, the policy in force allows and arbitrates, plans
are carried out by event time or cancelled at their goal, outcomes join their decision by id, the
control group gets nothing (and is logged), and the latency budget sets the fast path."""
from __future__ import annotations

import pytest

from journeys.ontology import packaged_ontology
from journeys.outputs import LogKind
from journeys.policy import loads_policy
from journeys.policy_updates import PolicyInForce
from journeys.scoring import ActiveModels
from journeys.settings import packaged_settings
from pipelines.reference import ReferenceRun
from tests.harness import (A_DAY_LATER, AN_HOUR_LATER, BEGINNING, NOW, TEN_MINUTES_LATER, EveryoneConsents, Fixed,
                           a_core, a_signal, decisions_in, journey_records_in, line, propensity)

TWO_DAYS_LATER = BEGINNING + 2 * (A_DAY_LATER - BEGINNING)
SESSION_END = BEGINNING + 30 * 60_000  # the session gap after the cart


def a_model(**kwargs):
    return a_core(EveryoneConsents(), **kwargs)


def run_through(model, signals, until, key="c-1"):
    journey, out = None, []
    for signal in signals:
        journey, produced = model.apply(journey, signal, key, False)
        out.extend(produced)
    journey, produced = model.tick(journey, until)
    return journey, out + produced


def test_an_abandoned_cart_reminder_plans_a_free_shipping_offer_that_goes_out_a_day_later():
    journey, out = run_through(a_model(), [a_signal("add_to_cart", BEGINNING, cart_value=40)], TWO_DAYS_LATER)

    reminder, offer = [d for d in decisions_in(out) if d["trigger"] in ("session_closed", "plan_due")]
    assert (reminder["action"], reminder["decided_at"]) == ("abandoned_cart_reminder", SESSION_END)
    assert (offer["action"], offer["trigger"], offer["agent"]) == ("free_shipping_offer", "plan_due", "conversion")
    assert offer["decided_at"] == SESSION_END + 24 * 3_600_000
    assert "Planned by the conversion agent: no purchase within 24 h of the cart reminder." in offer["justification"]
    assert journey.plans == []
    assert [c[2] for c in journey.contacts] == ["onsite_cart_nudge", "abandoned_cart_reminder", "free_shipping_offer"]


def test_a_purchase_before_the_follow_up_is_due_cancels_the_plan():
    signals = [a_signal("add_to_cart", BEGINNING, cart_value=40), a_signal("purchase", A_DAY_LATER - AN_HOUR_LATER + BEGINNING)]

    journey, out = run_through(a_model(), signals, TWO_DAYS_LATER)

    assert "free_shipping_offer" not in [d["action"] for d in decisions_in(out)]
    [cancelled] = journey_records_in(out, LogKind.PLAN_CANCELLED)
    assert cancelled["action"] == "free_shipping_offer" and cancelled["reason"] == "goal conversion reached"
    assert journey.plans == []


def test_an_outcome_joins_its_decision_and_changes_responsiveness_but_not_the_session():
    model = a_model()
    journey, out = run_through(model, [a_signal("add_to_cart", BEGINNING, cart_value=40)], BEGINNING)
    [nudge] = decisions_in(out)
    session = journey.session.signals

    journey, out = model.apply(journey, a_signal("clicked", TEN_MINUTES_LATER, decision_id=nudge["decision_id"]),
                               "c-1", False)
    journey, stray = model.apply(journey, a_signal("opened", TEN_MINUTES_LATER, decision_id="d-unknown"), "c-1", False)

    [answer] = [entry.record for entry in out]
    assert (answer["kind"], answer["matched"], answer["action"], answer["after_ms"]) == \
        ("outcome", True, "onsite_cart_nudge", TEN_MINUTES_LATER - BEGINNING)
    assert stray[0].record["matched"] is False
    assert journey.responses == {"clicked": 1, "opened": 1} and journey.session.signals == session


def test_an_outcome_for_a_journey_that_is_gone_starts_no_journey():
    journey, out = a_model().apply(None, a_signal("converted", BEGINNING, decision_id="d-old"), "c-1", False)

    assert journey is None and [entry.record["kind"] for entry in out] == [LogKind.OUTCOME]


def test_a_customer_in_the_control_group_gets_nothing_and_the_decision_log_says_what_was_held_back():
    customer = "c-2"  # in the retail policy's control group (share 0.1, salt retail-2026)
    run = ReferenceRun(packaged_ontology(), packaged_settings(), now_ms=NOW, profiles=EveryoneConsents())
    run.feed(line(s) for s in [a_signal("add_to_cart", BEGINNING, customer=customer, cart_value=40)]).finish()

    assert run.decisions == []
    [held] = [d for d in run.decision_log if d["trigger"] == "stage_entered"]
    assert held["control"] and not held["acted"] and held["action"] == "onsite_cart_nudge"
    assert held["justification"].startswith("Entered intent")
    assert "control group, so no action was taken" in held["justification"]


def test_a_new_policy_version_in_force_mid_run_is_cited_by_the_decisions_after_it():
    in_force = PolicyInForce(loads_policy("policy: retail\nversion: '1'\n"))
    run = ReferenceRun(packaged_ontology(), packaged_settings(), now_ms=NOW, profiles=EveryoneConsents(), policy=in_force)
    run.feed([line(a_signal("add_to_cart", BEGINNING, customer="c-7")),
              line(a_signal("page_view", TEN_MINUTES_LATER, customer="c-9"))])  # the watermark passes c-7's cart
    in_force.update("policy: retail\nversion: '2'\n", "retail-v2.yaml")
    run.feed([line(a_signal("add_to_cart", A_DAY_LATER, customer="c-8"))]).finish()

    versions = {d["customer_id"]: d["policy_version"] for d in run.decisions if d["trigger"] == "stage_entered"}
    assert versions == {"c-7": "1", "c-8": "2"}


class SlowClock:
    """A clock that moves 60 ms each time it is read: the profile lookup alone spends the budget."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.060
        return self.now


def test_past_the_latency_budget_the_agents_decide_without_the_models_and_the_decision_says_so():
    scorer = propensity(0.9)
    model = a_model(clock=SlowClock(), models=Fixed(ActiveModels(champions=(scorer,))))

    _, out = model.apply(None, a_signal("add_to_cart", BEGINNING, cart_value=40), "c-1", False)

    [decision] = decisions_in(out)
    assert decision["fast_path"] and decision["models"] == [] and scorer.batches == []
    assert "Fast path:" in decision["justification"] and "50 ms budget" in decision["justification"]
    assert decision["candidates"][0]["factors"]["propensity"] == 0.3  # the agent's own, not the model's


def test_within_the_budget_the_model_scores_and_its_propensity_arbitrates():
    model = a_model(models=Fixed(ActiveModels(champions=(propensity(0.9),))))

    _, out = model.apply(None, a_signal("add_to_cart", BEGINNING, cart_value=40), "c-1", False)

    [decision] = decisions_in(out)
    assert not decision["fast_path"] and decision["candidates"][0]["factors"]["propensity"] == 0.9


class ModelCallClock:
    """A clock that reads as a model call taking `first` ms the first time and 1 ms after."""

    def __init__(self, scorer, first: float):
        self.now, self.scorer, self.first, self.calls_seen = 0.0, scorer, first, 0

    def __call__(self) -> float:
        if len(self.scorer.batches) > self.calls_seen:  # a model call happened since the last reading
            self.now += (self.first if self.calls_seen == 0 else 1) / 1000
            self.calls_seen = len(self.scorer.batches)
        return self.now


@pytest.mark.parametrize("first_call_ms", [300, 30])
def test_one_slow_model_call_does_not_keep_the_task_on_rules_alone(first_call_ms):
    scorer = propensity(0.9)
    model = a_model(clock=ModelCallClock(scorer, first_call_ms), models=Fixed(ActiveModels(champions=(scorer,))))
    fast = []
    for n in range(12):  # a customer each: every one is a decision point of the same task
        customer = f"c-{n}"
        _, out = model.apply(None, a_signal("add_to_cart", BEGINNING, customer=customer, cart_value=40), customer, False)
        fast += [decision["fast_path"] for decision in decisions_in(out, acted_only=False)]
    assert len(fast) >= 12 and not fast[-1] and fast.count(True) <= 3
