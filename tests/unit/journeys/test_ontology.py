"""The ontology file: the shipped retail ontology, and clear errors for broken ones."""
import pytest

from journeys.ontology import packaged_ontology, parse_ontology
from journeys.settings import packaged_settings, parse_settings
from journeys.yamlconf import ConfigError, loads_yaml
from tests.harness import ROOT

RETAIL = ROOT / "journeys" / "conf" / "ontology" / "retail.yaml"


def retail_with(old: str, new: str):
    text = RETAIL.read_text()
    assert old in text, f"{old!r} is not in the retail ontology"
    return parse_ontology(loads_yaml(text.replace(old, new, 1), "edited.yaml"))


def line_of(text: str) -> int:
    return next(number for number, line in enumerate(RETAIL.read_text().splitlines(), start=1) if text in line)


def test_the_retail_ontology_has_the_stages_the_product_needs():
    ontology = packaged_ontology()
    assert {"discovery", "consideration", "intent", "conversion", "retention", "at_risk"} <= set(ontology.stage_ids)
    assert ontology.initial_stage == "discovery"
    assert {"login", "identify", "signup"} == set(ontology.identify_signals)
    assert any(rule.on >= {"complaint"} for rule in ontology.escalations)
    assert ontology.stage_by_id["churned"].terminal


def test_every_stage_lists_its_actions_and_the_default_is_one_of_them():
    for stage in packaged_ontology().stages:
        if stage.default_action:
            assert stage.default_action.action in stage.actions


def test_a_transition_to_an_unknown_stage_names_the_file_and_line():
    with pytest.raises(ConfigError, match=rf"edited.yaml line {line_of('to: consideration')}: .*'considration' is not a stage"):
        retail_with("to: consideration", "to: considration")


def test_an_unknown_key_is_refused_rather_than_ignored():
    with pytest.raises(ConfigError, match="unknown key 'min_count_in_sesion'"):
        retail_with("min_count_in_session: 2", "min_count_in_sesion: 2")


def test_a_rule_on_an_unknown_signal_is_refused():
    with pytest.raises(ConfigError, match="signal 'purchased' is not in the ontology's signals"):
        retail_with("on: [purchase]", "on: [purchased]")


def test_on_is_a_key_not_a_boolean():
    ontology = packaged_ontology()
    assert all(rule.on for rule in ontology.signal_rules)


def test_a_bad_duration_is_refused_with_its_line():
    with pytest.raises(ConfigError, match=rf"line {line_of('after_in_stage: 7d')}: after_in_stage: not a duration"):
        retail_with("after_in_stage: 7d", "after_in_stage: a week")


def test_time_rules_that_cycle_are_refused():
    with pytest.raises(ConfigError, match="time rules form a cycle"):
        retail_with("    after_inactivity: 60d\n    to: churned", "    after_inactivity: 60d\n    to: retention")


def test_a_default_action_outside_the_stage_actions_is_refused():
    with pytest.raises(ConfigError, match="default_action 'flyer' is not among the stage's actions"):
        retail_with("default_action: {action: welcome_content", "default_action: {action: flyer")


def test_consent_in_the_ontology_is_refused_with_where_it_went():
    with pytest.raises(ConfigError, match=r"line \d+: channel_consent has moved to the decision policy's `consent`"):
        retail_with("identified_channels:", "channel_consent: {email: consent_email}\nidentified_channels:")


def test_the_job_settings_load_with_environment_placeholders(monkeypatch):
    from pipelines.config import read_settings

    monkeypatch.setenv("JOURNEYS_HASH_KEY", "from-the-environment")
    assert read_settings().privacy.hash_key == "from-the-environment"
    assert packaged_settings().privacy.hash_key == "dev-only-hash-key"  # the core reads no environment of its own


def test_a_missing_environment_variable_without_default_is_an_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_VARIABLE", raising=False)
    with pytest.raises(ConfigError, match="NO_SUCH_VARIABLE is not set"):
        loads_yaml("privacy:\n  hash_key: ${NO_SUCH_VARIABLE}\n", "job.yaml")


def test_an_unknown_settings_section_is_refused():
    with pytest.raises(ConfigError, match="unknown section 'sesions'"):
        parse_settings(loads_yaml("sesions:\n  gap: 30m\n", "job.yaml"))
