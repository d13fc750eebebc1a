"""The policy engine, construct by construct, as pure functions: eligibility, consent, frequency
caps across a window boundary, quiet hours in the customer's time zone, the complaint cooldown,
arbitration worked by hand, mandatory actions, the control group, and errors that name the line."""
from __future__ import annotations

from importlib import resources

import pytest

from journeys.policy import Candidate, Context, loads_policy, packaged_policy
from journeys.yamlconf import ConfigError
from tests.harness import BEGINNING, DAY, HOUR

NOON_UTC = BEGINNING - BEGINNING % DAY + 12 * HOUR
CONSENTED = {"consent_email": True, "consent_sms": True, "consent_push": True, "tenure_days": 400}


def policy(text: str = ""):
    return loads_policy("policy: test\nversion: '7'\n" + text, "test.yaml")


def a_context(customer: str = "c-1", at: int = NOON_UTC, **kwargs) -> Context:
    values = dict(CONSENTED) | kwargs.pop("values", {})
    return Context(customer, at, values=values, **kwargs)


def reminder(channel: str = "email", propensity: float = 0.5, action: str = "cart_reminder") -> Candidate:
    return Candidate(action, channel, "conversion", propensity)


def test_arbitration_multiplies_the_named_factors_worked_by_hand():
    rules = policy("""
arbitration:
  priority: [propensity, business_value, lever]
  business_value: {by: action, values: {free_shipping_offer: 3.0}, default: 1.0}
  lever: {by: channel, values: {email: 0.5}, default: 1.0}
""")
    nudge = Candidate("onsite_cart_nudge", "web", "conversion", 0.6)        # 0.6 x 1.0 x 1.0 = 0.60
    shipping = Candidate("free_shipping_offer", "email", "conversion", 0.3)  # 0.3 x 3.0 x 0.5 = 0.45
    winback = Candidate("winback_offer", "web", "retention", 0.7)            # 0.7 x 1.0 x 1.0 = 0.70

    verdict = rules.decide([nudge, shipping, winback], a_context())

    assert verdict.chosen == winback
    assert [(c.candidate.action, c.priority) for c in verdict.considered] == [
        ("winback_offer", 0.7), ("onsite_cart_nudge", 0.6), ("free_shipping_offer", 0.45)]
    assert verdict.considered[2].factors == {"propensity": 0.3, "business_value": 3.0, "lever": 0.5}
    assert verdict.policy_version == "7"


def test_no_consent_no_contact():
    rules = policy("consent: {email: consent_email}\n")
    verdict = rules.decide([reminder("email")], a_context(values={"consent_email": False}))
    assert verdict.chosen is None and verdict.considered[0].suppressed_by == ("consent:email",)


def test_a_frequency_cap_counts_contacts_in_the_rolling_window_only():
    rules = policy("contact: {caps: [{id: email_weekly, channel: email, max: 2, per: 7d}]}\n")
    now = NOON_UTC
    two_inside = ((now - 7 * DAY + 1, "email"), (now - DAY, "email"))
    one_just_outside = ((now - 7 * DAY, "email"), (now - DAY, "email"))

    assert rules.decide([reminder()], a_context(contacts=two_inside)).chosen is None
    assert rules.decide([reminder()], a_context(contacts=one_just_outside)).chosen == reminder()
    assert rules.decide([reminder("web")], a_context(contacts=two_inside)).chosen == reminder("web")


def test_a_cap_on_any_channel_counts_every_channel():
    rules = policy("contact: {caps: [{id: all_daily, channel: any, max: 2, per: 1d}]}\n")
    contacts = ((NOON_UTC - HOUR, "sms"), (NOON_UTC - 2 * HOUR, "web"))
    verdict = rules.decide([reminder("push")], a_context(contacts=contacts))
    assert verdict.considered[0].suppressed_by == ("frequency_cap:all_daily",)


def test_quiet_hours_follow_the_customers_time_zone():
    rules = policy("contact: {quiet_hours: {start: '21:00', end: '08:00', channels: [email]}}\n")
    # Noon UTC is 21:00 in Tokyo (quiet) and 07:00 in New York in winter (quiet), 13:00 in Berlin.
    assert rules.decide([reminder()], a_context(timezone="Asia/Tokyo")).chosen is None
    assert rules.decide([reminder()], a_context(timezone="America/New_York")).chosen is None
    assert rules.decide([reminder()], a_context(timezone="Europe/Berlin")).chosen == reminder()
    assert rules.decide([reminder("web")], a_context(timezone="Asia/Tokyo")).chosen == reminder("web")


def test_a_complaint_holds_marketing_back_for_the_cooldown_but_not_service():
    rules = policy("contact: {complaint_cooldown: {for: 48h, spares: [escalate_to_agent]}}\n")
    escalation = Candidate("escalate_to_agent", "call_center", "service", 0.1)
    just_complained = a_context(last_complaint_at=NOON_UTC - HOUR)

    verdict = rules.decide([reminder(propensity=0.9), escalation], just_complained)

    assert verdict.chosen == escalation
    assert verdict.suppressions == {"complaint_cooldown": 1}
    assert rules.decide([reminder()], a_context(last_complaint_at=NOON_UTC - 48 * HOUR)).chosen == reminder()


def test_eligibility_rules_suppress_their_actions_while_every_condition_holds():
    rules = policy("""
eligibility:
  - id: no_discounts_for_new
    when: {tenure_days: {lt: 30}, segment: {in: [new, regular]}}
    suppress: [winback_offer]
""")
    offer = Candidate("winback_offer", "web", "retention", 0.9)
    assert rules.decide([offer], a_context(values={"tenure_days": 10, "segment": "new"})).considered[0].suppressed_by == (
        "eligibility:no_discounts_for_new",)
    assert rules.decide([offer], a_context(values={"tenure_days": 10, "segment": "vip"})).chosen == offer
    assert rules.decide([offer], a_context(values={"tenure_days": 90, "segment": "new"})).chosen == offer


def test_a_mandatory_action_skips_arbitration_but_not_the_contact_policy():
    rules = policy("mandatory: [escalate_to_agent]\ncontact: {quiet_hours: {start: '00:00', end: '23:59', channels: [call_center]}}\n")
    escalation = Candidate("escalate_to_agent", "call_center", "service", 0.01)
    by_web = Candidate("escalate_to_agent", "web", "service", 0.01)

    assert rules.decide([reminder(propensity=0.99), by_web], a_context()).chosen == by_web
    assert rules.decide([reminder(propensity=0.99), by_web], a_context()).mandatory is True
    assert rules.decide([reminder(propensity=0.99), escalation], a_context()).chosen == reminder(propensity=0.99)


def test_the_control_group_is_a_stable_share_of_customers_chosen_by_hash():
    rules = policy("control_group: {share: 0.2, salt: s1}\n")
    customers = [f"c-{i}" for i in range(5000)]
    controlled = [c for c in customers if rules.decide([reminder()], a_context(c)).control_group]

    assert 0.18 < len(controlled) / len(customers) < 0.22
    assert all(rules.decide([reminder()], a_context(c)).chosen is None for c in controlled[:20])
    assert controlled == [c for c in customers if policy("control_group: {share: 0.2, salt: s1}\n").in_control_group(c)]
    assert controlled != [c for c in customers if policy("control_group: {share: 0.2, salt: s2}\n").in_control_group(c)]


def test_the_packaged_policy_loads():
    packaged = packaged_policy("retail")
    assert packaged.name == "retail" and packaged.mandatory == {"escalate_to_agent"}


@pytest.mark.parametrize("text, line, words", [
    ("contact:\n  caps:\n    - {id: x, channel: email, max: two, per: 7d}\n", 5, "max is a whole number"),
    ("contact:\n  quiet_hours: {start: '25:00', end: '08:00'}\n", 4, "time of day"),
    ("arbitration:\n  priority: [propensity, lever]\n", 4, "no table"),
    ("control_group: {share: 1.5}\n", 3, "share in [0, 1)"),
    ("eligibility:\n  - id: r\n    when: {tenure_days: {about: 3}}\n", 5, "a condition is one of"),
    ("surprise: 1\n", 3, "unknown key 'surprise'"),
])
def test_a_bad_policy_is_rejected_with_the_line(text, line, words):
    with pytest.raises(ConfigError) as error:
        policy(text)
    assert f"test.yaml line {line}" in str(error.value) and words in str(error.value)


def test_policy_check_prints_the_policy_or_the_error_with_its_line(tmp_path, capsys):
    from pipelines.cli.main import main as journeys

    assert journeys(["policy", "check", str(resources.files("journeys.conf").joinpath("policy/retail.yaml"))]) == 0
    assert "policy retail version 1: priority = propensity x context_weight x business_value x lever" in capsys.readouterr().out
    broken = tmp_path / "broken.yaml"
    broken.write_text("policy: p\nversion: '2'\ncontrol_group: {share: 3}\n")
    assert journeys(["policy", "check", str(broken)]) == 1
    assert f"{broken} line 3" in capsys.readouterr().err
