"""The behavioural agents as pure functions: what each proposes, how they coordinate through the
shared state and the policy, and plans that fire or are cancelled when the goal is reached."""
from __future__ import annotations

from journeys.agents import (HOUR_MS, ConversionAgent, DiscoveryAgent, Observation, RetentionAgent, ServiceAgent,
                             follow_up_candidate, plans_after, proposals)
from journeys.policy import Context, packaged_policy
from tests.harness import BEGINNING

CONSENTED = {"consent_email": True, "consent_sms": True, "consent_push": True, "tenure_days": 400}


def seen(stage: str, trigger: str = "stage_entered", *, identified: bool = True, at: int = BEGINNING,
         propensity: float | None = None, open_complaint: bool = False, **values) -> Observation:
    return Observation("c-1", identified, stage, trigger, at, CONSENTED | values, propensity, open_complaint)


def actions(observation: Observation, agent) -> list[str]:
    return [p.candidate.action for p in agent.propose(observation)]


def test_the_conversion_agent_nudges_an_open_cart_and_reminds_an_abandoned_one_with_a_planned_offer():
    agent = ConversionAgent()
    assert actions(seen("intent", cart_value=40.0), agent) == ["onsite_cart_nudge"]

    reminder, = agent.propose(seen("intent", "session_closed", cart_value=40.0, propensity=0.4))

    assert reminder.candidate.action == "abandoned_cart_reminder" and reminder.candidate.propensity == 0.4
    assert reminder.follow_up.action == "free_shipping_offer" and reminder.follow_up.due_at == BEGINNING + 24 * HOUR_MS
    assert reminder.follow_up.goal == {"conversion"}
    assert actions(seen("consideration"), agent) == ["recommend_products"]


def test_intent_the_stage_model_sees_where_the_rules_saw_no_cart_gets_products_not_a_cart_nudge():
    def mapped_to_intent(rules_stage: str) -> Observation:  # the model's stage; the rules' is among the values
        return Observation("c-1", True, "intent", "stage_entered", BEGINNING, CONSENTED | {"stage": rules_stage})

    assert actions(mapped_to_intent("consideration"), ConversionAgent()) == ["recommend_products"]
    assert actions(mapped_to_intent("intent"), ConversionAgent()) == ["onsite_cart_nudge"]


def test_the_retention_agent_wins_back_the_at_risk_and_leaves_visitors_alone():
    agent = RetentionAgent()
    assert actions(seen("at_risk", propensity=0.2), agent) == ["winback_offer"]
    assert agent.propose(seen("at_risk", propensity=0.2))[0].candidate.propensity == 0.8
    assert actions(seen("retention"), agent) == ["loyalty_offer"]
    assert actions(seen("at_risk", identified=False), agent) == []


def test_the_service_agent_escalates_complaints_and_repeated_contacts():
    agent = ServiceAgent()
    assert actions(seen("at_risk", "escalation", open_complaint=True), agent) == ["escalate_to_agent"]
    assert actions(seen("at_risk", open_complaint=True, support_contacts_7d=3), agent) == []  # already with a person
    assert actions(seen("retention", support_contacts_7d=3), agent) == ["escalate_to_agent"]
    assert actions(seen("retention", support_contacts_7d=2), agent) == []
    assert actions(seen("retention", support_contacts_7d=4, escalated_7d=True), agent) == []  # not twice a week


def test_the_discovery_agent_welcomes_customers_and_invites_visitors_to_sign_up():
    agent = DiscoveryAgent()
    assert actions(seen("discovery"), agent) == ["welcome_content"]
    assert actions(seen("discovery", identified=False), agent) == ["newsletter_signup_prompt"]
    assert actions(seen("intent"), agent) == []


def test_an_open_complaint_escalates_and_holds_the_other_agents_marketing_back():
    policy = packaged_policy("retail")
    observation = seen("intent", "escalation", cart_value=80.0, propensity=0.9, open_complaint=True)
    candidates = [p.candidate for p in proposals(observation)]
    customer = next(f"c-{i}" for i in range(100) if not policy.in_control_group(f"c-{i}"))
    noon = BEGINNING - BEGINNING % (24 * HOUR_MS) + 12 * HOUR_MS

    verdict = policy.decide(candidates, Context(customer, noon, values=observation.values, last_complaint_at=noon - HOUR_MS),
                            observation.trigger)

    assert verdict.chosen.action == "escalate_to_agent" and verdict.mandatory
    assert verdict.suppressions == {"complaint_cooldown": 1}  # the cart nudge


def test_a_planned_follow_up_fires_when_due_and_is_cancelled_when_the_goal_is_reached():
    reminder, = ConversionAgent().propose(seen("intent", "session_closed", cart_value=40.0))
    plan = reminder.follow_up

    assert plans_after((plan,), None, plan.due_at - 1) == ((plan,), ())
    assert plans_after((plan,), None, plan.due_at) == ((), (plan,))
    assert plans_after((plan,), "conversion", plan.due_at - HOUR_MS) == ((), ())
    assert follow_up_candidate(plan).action == "free_shipping_offer"
