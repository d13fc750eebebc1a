"""`journeys policy check` warns about rules that can never fire: conditions on values the feature
definitions or the ontology never produce, and actions or channels that never occur."""
from __future__ import annotations

from importlib import resources

from journeys.features import PROFILE_VALUES
from journeys.ontology import packaged_ontology
from journeys.policy import loads_policy, packaged_policy
from journeys.policy_check import never_fire
from pipelines.cli.main import main as journeys
from pipelines.tools.simulate import _PROFILE_STYLE

ONTOLOGY = packaged_ontology()
TODAYS_MAIN_RULE = """
eligibility:
  - id: vip_gets_no_cold_sms
    when: {segment: vip, last_channel: {ne: sms}}
    suppress: [sms_reminder]
"""


def warnings_for(text: str) -> list[str]:
    return [str(w) for w in never_fire(loads_policy("policy: p\nversion: '1'\n" + text, "p.yaml"), ONTOLOGY)]


def test_a_rule_on_a_segment_no_profile_has_can_never_fire():
    [warning] = warnings_for(TODAYS_MAIN_RULE)

    assert warning.startswith("eligibility rule vip_gets_no_cold_sms: can never fire: segment is never 'vip'")
    assert "loyal" in warning


def test_a_rule_that_suppresses_only_actions_no_stage_offers_can_never_fire():
    [warning] = warnings_for("eligibility:\n  - {id: r, when: {segment: loyal}, suppress: [sms_reminder]}\n")

    assert warning == "eligibility rule r: can never fire: it suppresses only actions the ontology never offers (sms_reminder)"


def test_conditions_on_stages_and_channels_are_checked_against_the_ontology_and_the_contract():
    found = warnings_for("eligibility:\n"
                         "  - {id: a, when: {stage: checkout}}\n"
                         "  - {id: b, when: {last_channel: {in: [fax, telex]}}}\n"
                         "  - {id: c, when: {stage: {in: [checkout, intent]}, consent_email: false}}\n"
                         "contact:\n  caps: [{id: pigeon_weekly, channel: pigeon, max: 1, per: 7d}]\n")

    assert [w.split(":")[0] for w in found] == ["contact cap pigeon_weekly", "eligibility rule a", "eligibility rule b"]


def test_a_rule_on_a_value_whose_values_are_not_known_is_not_judged():
    assert warnings_for("eligibility:\n  - {id: r, when: {lifetime_value: {gt: 5000}, propensity: {lt: 0.01}}}\n") == []


def test_the_packaged_policy_has_no_rule_that_can_never_fire():
    assert never_fire(packaged_policy(), ONTOLOGY) == []


def test_the_simulated_profiles_take_only_the_declared_segments():
    assert {style[0] for style in _PROFILE_STYLE.values()} <= set(PROFILE_VALUES["segment"])


def test_policy_check_warns_and_fails_only_when_strict(tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text("policy: p\nversion: '1'\n" + TODAYS_MAIN_RULE)

    assert journeys(["policy", "check", str(policy)]) == 0
    assert "warning: eligibility rule vip_gets_no_cold_sms: can never fire" in capsys.readouterr().err
    assert journeys(["policy", "check", "--strict", str(policy)]) == 1
    assert journeys(["policy", "check", "--strict",
                     str(resources.files("journeys.conf").joinpath("policy/retail.yaml"))]) == 0
