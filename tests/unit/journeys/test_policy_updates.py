"""Live policy updates, without Flink: a new version takes over, an invalid one is rejected and
logged while the old one stays, and a published policy is one control-stream record."""
from __future__ import annotations

from journeys.policy import loads_policy
from journeys.policy_updates import PolicyInForce

VERSION_1 = "policy: retail\nversion: '1'\nmandatory: [escalate_to_agent]\n"
VERSION_2 = "policy: retail\nversion: '2'\nmandatory: [escalate_to_agent, service_recovery_call]\n"
BROKEN = "policy: retail\nversion: '3'\ncontrol_group: {share: 2}\n"


def test_a_new_version_takes_over_and_an_invalid_one_leaves_the_old_in_force():
    in_force = PolicyInForce(loads_policy(VERSION_1))

    taken = in_force.update(VERSION_2, "v2.yaml")
    rejected = in_force.update(BROKEN, "v3.yaml")

    assert taken.accepted and in_force.policy.version == "2" and "service_recovery_call" in in_force.policy.mandatory
    assert not rejected.accepted and in_force.policy.version == "2"
    assert "v3.yaml line 3" in rejected.reason and "2 stays in force" in rejected.reason
    assert [r.to_record()["accepted"] for r in in_force.history] == [True, False]


def test_the_same_version_again_or_another_policy_is_not_applied():
    in_force = PolicyInForce(loads_policy(VERSION_1))
    assert not in_force.update(VERSION_1, "again.yaml").accepted
    assert not in_force.update(VERSION_2.replace("retail", "outlet"), "other.yaml").accepted
    assert in_force.policy.version == "1"
