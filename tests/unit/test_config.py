"""Configuration files read from disk (pipelines.config): the process environment fills their
${...} references; the core, handed only text, reads no environment of its own."""
import pytest

from journeys.policy import loads_policy
from journeys.yamlconf import ConfigError
from pipelines.config import read_policy, read_settings, start_policy_text

POLICY = "policy: retail\nversion: '${POLICY_VERSION:-1}'\ncontrol_group: {share: 0.1, salt: '${CONTROL_SALT}'}\n"


def test_a_policy_file_takes_its_placeholders_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "policy.yaml").write_text(POLICY)
    monkeypatch.setenv("CONTROL_SALT", "spring")
    monkeypatch.setenv("POLICY_VERSION", "7")

    policy = read_policy(tmp_path / "policy.yaml")

    assert (policy.version, policy.control_salt) == ("7", "spring")
    assert start_policy_text(str(tmp_path / "policy.yaml"), read_settings())[0] == POLICY  # handed on as written


def test_the_core_given_no_environment_refuses_a_placeholder_without_a_default(monkeypatch):
    monkeypatch.setenv("CONTROL_SALT", "spring")
    with pytest.raises(ConfigError, match="CONTROL_SALT is not set"):
        loads_policy(POLICY, "policy.yaml")
    assert loads_policy(POLICY, "policy.yaml", {"CONTROL_SALT": "autumn"}).control_salt == "autumn"


def test_a_missing_file_is_a_configuration_error_that_names_it(tmp_path):
    with pytest.raises(ConfigError, match="cannot read .*nothing.yaml"):
        read_policy(tmp_path / "nothing.yaml")


@pytest.mark.parametrize("section, key, value", [("dedupe", "max_ids", "lots"), ("journey", "touchpoints", "-3"),
                                                 ("intake", "max_record_bytes", "'64k'"), ("intake", "max_future_skew", "soon")])
def test_a_bad_number_in_the_job_configuration_names_the_file_the_line_and_the_key(tmp_path, section, key, value):
    conf = tmp_path / "journeys.yaml"
    conf.write_text(f"privacy:\n  hash_key: test-key\n{section}:\n  {key}: {value}\n")
    with pytest.raises(ConfigError, match=rf"journeys.yaml line 4: {section}\.{key}"):
        read_settings(str(conf))
