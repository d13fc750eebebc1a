"""journeys policy publish (pipelines.tools.policy_publish): a checked policy file into a running
job's watched directory, as one control-stream record."""
from __future__ import annotations

import pytest

from journeys.policy import loads_policy
from journeys.policy_updates import PolicyInForce
from journeys.yamlconf import ConfigError
from pipelines.tools.policy_publish import publish

VERSION_1 = "policy: retail\nversion: '1'\nmandatory: [escalate_to_agent]\n"
VERSION_2 = "policy: retail\nversion: '2'\nmandatory: [escalate_to_agent, service_recovery_call]\n"
BROKEN = "policy: retail\nversion: '3'\ncontrol_group: {share: 2}\n"


def test_a_published_policy_is_one_control_record_and_anything_else_on_the_stream_is_rejected(tmp_path):
    (tmp_path / "retail-v2.yaml").write_text(VERSION_2)
    published = publish(tmp_path / "retail-v2.yaml", tmp_path / "updates")
    in_force = PolicyInForce(loads_policy(VERSION_1))

    assert [p.name for p in (tmp_path / "updates").iterdir()] == [published.name]  # nothing half-written left
    assert in_force.apply_record("policy: retail\n").accepted is False
    assert "not a policy update record" in in_force.history[-1].reason
    assert in_force.apply_record(published.read_text().strip()).accepted
    assert in_force.policy.version == "2"


def test_an_invalid_policy_is_not_published(tmp_path):
    (tmp_path / "bad.yaml").write_text(VERSION_2.replace("version:", "versoin:"))
    with pytest.raises(ConfigError, match="bad.yaml"):
        publish(tmp_path / "bad.yaml", tmp_path / "updates")
    assert not (tmp_path / "updates").exists()


def test_the_publish_command_puts_a_checked_policy_into_the_directory_and_refuses_a_bad_one(tmp_path, capsys):
    from pipelines.cli.main import main as journeys

    (tmp_path / "v2.yaml").write_text(VERSION_2)
    (tmp_path / "v3.yaml").write_text(BROKEN)

    assert journeys(["policy", "publish", str(tmp_path / "v2.yaml"), "--to", str(tmp_path / "updates")]) == 0
    assert journeys(["policy", "publish", str(tmp_path / "v3.yaml"), "--to", str(tmp_path / "updates")]) == 1
    assert "v3.yaml line 3" in capsys.readouterr().err
    assert len(list((tmp_path / "updates").iterdir())) == 1


def test_publish_with_a_canary_share_writes_a_canary_record_and_refuses_a_share_outside_0_to_1(tmp_path, capsys):
    from journeys.policy_updates import read_update
    from pipelines.cli.main import main as journeys

    (tmp_path / "v2.yaml").write_text(VERSION_2)

    assert journeys(["policy", "publish", str(tmp_path / "v2.yaml"), "--to", str(tmp_path / "updates"),
                     "--canary", "0.05"]) == 0
    assert journeys(["policy", "publish", str(tmp_path / "v2.yaml"), "--to", str(tmp_path / "updates"),
                     "--canary", "1.5"]) == 1
    [written] = (tmp_path / "updates").iterdir()
    assert read_update(written.read_text().strip())[2] == 0.05
    assert "--canary is a share in [0, 1)" in capsys.readouterr().err
