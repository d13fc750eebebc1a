"""A policy canary, without Flink: a newer version acts for a deterministic share of people,
never for the control group, while everyone else stays on the policy in force; publishing it
again promotes it, a share of 0 stops it, and a restored task comes back to the same state."""
from __future__ import annotations

import pytest

from journeys.ontology import packaged_ontology
from journeys.policy import loads_policy
from journeys.policy_updates import CANARY, CHAMPION, PolicyInForce, read_update, update_record
from journeys.settings import packaged_settings
from journeys.timeutil import parse_instant
from pipelines.reference import ReferenceRun
from pipelines.reports.summary import format_summary, summarize
from tests.harness import NOW, EveryoneConsents, a_signal, line

CONTROL = "control_group: {share: 0.1, salt: retail-2026}\n"
VERSION_1 = "policy: retail\nversion: '1'\n" + CONTROL
VERSION_2 = "policy: retail\nversion: '2'\n" + CONTROL + "mandatory: [escalate_to_agent]\n"
PEOPLE = [f"c-{n}" for n in range(4000)]


def rolled_out(share: float) -> PolicyInForce:
    in_force = PolicyInForce(loads_policy(VERSION_1))
    assert in_force.apply_record(update_record(VERSION_2, "v2.yaml", share)).accepted
    return in_force


def test_a_canary_acts_for_its_share_of_people_and_never_for_the_control_group():
    in_force = rolled_out(0.2)

    arms = {person: in_force.policy_for(person) for person in PEOPLE}
    canary = [p for p, (policy, arm) in arms.items() if arm == CANARY]

    assert all(policy.version == "2" for policy, arm in arms.values() if arm == CANARY)
    assert all(policy.version == "1" for policy, arm in arms.values() if arm == CHAMPION)
    assert 0.15 < len(canary) / len(PEOPLE) < 0.25
    assert not any(in_force.policy.in_control_group(p) for p in canary)
    assert rolled_out(0.2).policy_for("c-7") == in_force.policy_for("c-7")  # the same person, the same arm


def test_a_larger_share_keeps_everyone_the_smaller_one_had():
    small, large = rolled_out(0.05), rolled_out(0.3)

    in_small = {p for p in PEOPLE if small.policy_for(p)[1] == CANARY}

    assert in_small and all(large.policy_for(p)[1] == CANARY for p in in_small)


def test_publishing_the_canarys_version_again_promotes_it_and_a_share_of_0_stops_it():
    promoted = rolled_out(0.2)
    result = promoted.apply_record(update_record(VERSION_2, "v2.yaml"))
    stopped = rolled_out(0.2)
    stop = stopped.apply_record(update_record(VERSION_2, "v2.yaml", 0.0))

    assert result.accepted and "canary promoted" in result.reason
    assert promoted.policy.version == "2" and promoted.canary is None and promoted.records.keys() == {CHAMPION}
    assert stop.accepted and stopped.canary is None and stopped.policy.version == "1"
    assert {stopped.policy_for(p)[1] for p in PEOPLE} == {CHAMPION}


def test_a_restored_task_comes_back_to_the_policy_in_force_and_its_canary():
    live = PolicyInForce(loads_policy(VERSION_1))
    live.apply_record(update_record(VERSION_1.replace("'1'", "'1.1'"), "v1.1.yaml"))
    live.apply_record(update_record(VERSION_2, "v2.yaml", 0.2))

    restored = PolicyInForce(loads_policy(VERSION_1))
    restored.restore(live.records)

    assert (restored.policy.version, restored.canary.version, restored.canary_share) == ("1.1", "2", 0.2)


@pytest.mark.parametrize("record", ['{"source": "x", "policy": "p", "canary": {"share": "lots"}}',
                                    '{"source": "x", "policy": "p", "canary": 0.2}',
                                    '{"source": "x", "policy": "p", "canary": {"share": NaN}}'])
def test_a_canary_record_without_a_share_that_is_a_number_is_refused(record):
    with pytest.raises(ValueError):
        read_update(record)
    assert not PolicyInForce(loads_policy(VERSION_1)).apply_record(record).accepted


def test_a_share_outside_0_to_1_is_refused_and_the_version_in_force_is_no_canary():
    in_force = PolicyInForce(loads_policy(VERSION_1))

    assert not in_force.apply_record(update_record(VERSION_2, "v2.yaml", 1.5)).accepted
    assert not in_force.apply_record(update_record(VERSION_1, "v1.yaml", 0.2)).accepted
    assert in_force.canary is None


def test_every_decision_records_its_rollout_arm_and_the_version_that_decided_it():
    in_force = rolled_out(0.5)
    run = ReferenceRun(packaged_ontology(), packaged_settings(), now_ms=NOW, profiles=EveryoneConsents(),
                       policy=in_force)
    at = parse_instant("2026-03-02T10:00:00Z")
    run.feed(line(a_signal("add_to_cart", at, customer=person, cart_value=40)) for person in PEOPLE[:200]).finish()

    arms = {(d["rollout_arm"], d["policy_version"]) for d in run.decision_log if not d["control"]}

    assert arms == {(CHAMPION, "1"), (CANARY, "2")}
    assert all(d["rollout_arm"] == in_force.policy_for(d["journey"])[1] for d in run.decision_log)
    summary = summarize(200, run.journey_records, run.decision_log, [])
    assert summary["rollout_arms"]["canary"]["policy_versions"] == ["2"]
    assert sum(arm["decision_points"] for arm in summary["rollout_arms"].values()) == \
        sum(1 for d in run.decision_log if not d["control"])
    assert "rollout arm canary (v2)" in format_summary(summary)


def test_a_canary_from_the_start_that_was_stopped_stays_stopped_when_a_task_is_restored():
    restored = rolled_out(0.2)  # as a task opens with --canary-policy

    restored.restore({CHAMPION: "", CANARY: ""})  # the broadcast state the stop left

    assert restored.canary is None and {restored.policy_for(p)[1] for p in PEOPLE} == {CHAMPION}
