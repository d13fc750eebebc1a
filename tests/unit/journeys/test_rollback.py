"""The job's own judge of a canary, without Flink: it judges the gates at marks of event time once
its tallies are past them by the lateness bound, stops
a canary clearly worse than the policy in force with a stop record that the policy in force
obeys, says nothing more once it has, and comes to the same verdicts whatever order the points of
a mark arrive in, or after its state is written and read back."""
from __future__ import annotations

import random

import orjson

from journeys.gates import FAIL, PASS, PENDING, loads_gates
from journeys.outputs import LogKind
from journeys.policy import loads_policy
from journeys.policy_updates import CANARY, CHAMPION, PolicyInForce, read_stop, update_record
from journeys.rollback import HELD, MODEL, POLICY, Canary, CanaryJudge, TaskClock, tallies
from journeys.timeutil import HOUR, MINUTE
from tests.harness import BEGINNING

GATES = loads_gates("gates: g\nversion: '1'\nmin_decision_points: 100\njudge_every: 1h\nfigures:\n"
                    "  - {figure: acted_rate, worse: lower, tolerance: 0.05}\n"
                    "  - {figure: conversion_rate, worse: lower, tolerance: 0.05}\n")
FIRST_MARK = BEGINNING + HOUR  # BEGINNING is on the hour


def points(arm: str, acted_share: float, count: int, start: int = BEGINNING, version: str = "2") -> list[dict]:
    """`count` tallies of one arm, a minute apart from `start`, the first acted_share of them acted on."""
    decided = [{"decision_id": f"{arm}-{start}-{n}", "rollout_arm": arm, "control": False, "decided_at": start + n * MINUTE // 4,
                "acted": n < acted_share * count, "feature_source": "online", "fast_path": False, "latency_ms": 9}
               for n in range(count)]
    return [t for point in decided for t in tallies(point, [Canary(POLICY, version)])]


LATENESS = 2 * MINUTE
ONE_HOUR_ON = FIRST_MARK + LATENESS  # the first mark is judged once a tally is this late


IDLE = 60_000  # wall clock
WALL = 1_000_000  # the judge's wall clock in these tests, when it does not matter


def judged(judge: CanaryJudge, tallies: list[dict], finish: bool = True, task: str = "customer-0") -> list:
    """Feed the tallies one at a time from one task whose clock is each tally's time, then (finish)
    judge the marks still open: the judgements that said something."""
    said = [judged for t in tallies for judged in judge.take(told(task, t["at"]), [t], WALL, "gates g v1")]
    return said + (judge.finish("gates g v1") if finish else [])


def told(task: str, clock: int, tasks: int = 2) -> dict:
    return {"task": task, "tasks": tasks, "clock": clock}


def a_judge(state: dict | None = None) -> CanaryJudge:
    return CanaryJudge(GATES, LATENESS, IDLE, state)


def test_a_canary_clearly_worse_than_the_policy_in_force_is_stopped_at_the_mark_that_shows_it():
    judge = a_judge()

    [verdict] = judged(judge, points(CHAMPION, 0.8, 200) + points(CANARY, 0.4, 200))

    assert verdict.log["kind"] == LogKind.CANARY_VERDICT and verdict.log["verdict"] == FAIL and verdict.log["stopped"]
    assert verdict.log["at"] == FIRST_MARK and verdict.log["decision_points"] == {CANARY: 200, CHAMPION: 200}
    assert verdict.log["not_judged"] == ["conversion_rate"]  # the job has no outcomes joined to decisions
    assert read_stop(verdict.stop).version == "2" and "acted_rate" in read_stop(verdict.stop).reason
    assert verdict.log["canary"] == "policy v2" and verdict.log["canary_of"] == "policy"


def test_the_stop_record_stops_that_canary_in_the_policy_in_force_and_no_other():
    retail = "policy: retail\nversion: '{}'\ncontrol_group: {{share: 0.1, salt: s}}\n"
    in_force = PolicyInForce(loads_policy(retail.format(1)))
    in_force.apply_record(update_record(retail.format(2), "v2.yaml", 0.3))
    [verdict] = judged(a_judge(), points(CHAMPION, 0.8, 200) + points(CANARY, 0.4, 200))
    other = PolicyInForce(loads_policy(retail.format(1)))
    other.apply_record(update_record(retail.format(3), "v3.yaml", 0.3))

    stopped, ignored = in_force.apply_record(verdict.stop), other.apply_record(verdict.stop)

    assert stopped.accepted and in_force.canary is None and in_force.canary_share == 0 and CANARY not in in_force.records
    assert "stopped (gates g v1 failed" in stopped.reason and stopped.to_record()["canary_share"] == 0
    assert not ignored.accepted and other.canary.version == "3"


def test_a_sound_canary_passes_once_and_too_few_points_say_nothing():
    sound, small = a_judge(), a_judge()

    said = judged(sound, points(CHAMPION, 0.8, 200) + points(CANARY, 0.79, 200))
    nothing = judged(small, points(CHAMPION, 0.8, 50) + points(CANARY, 0.1, 50))
    again = judged(sound, points(CHAMPION, 0.8, 50, start=FIRST_MARK) + points(CANARY, 0.79, 50, start=FIRST_MARK))

    assert [v.log["verdict"] for v in said] == [PASS] and said[0].stop is None
    # Pending is where a judge starts, and a pass said once is not said again, but the end of the
    # input says the verdict it ends with.
    assert [(v.log["verdict"], v.log["final"]) for v in nothing] == [(PENDING, True)]
    assert [(v.log["verdict"], v.log["final"], v.log["at"]) for v in again] == [(PASS, True, FIRST_MARK + HOUR)]


def test_the_order_points_arrive_in_within_a_mark_changes_no_verdict():
    hours = [points(CHAMPION, 0.8, 150) + points(CANARY, 0.5, 150),
             points(CHAMPION, 0.8, 150, start=FIRST_MARK) + points(CANARY, 0.5, 150, start=FIRST_MARK)]
    tallies = [t for hour in hours for t in hour]
    shuffled = [t for hour in hours for t in random.Random(7).sample(hour, len(hour))]

    in_order, out_of_order = judged(a_judge(), tallies), judged(a_judge(), shuffled)

    assert [v.log for v in in_order] == [v.log for v in out_of_order] and in_order[0].stop == out_of_order[0].stop


def test_a_judge_read_back_from_its_state_goes_on_as_the_one_that_wrote_it():
    first_hour, second_hour = (points(CHAMPION, 0.8, 60) + points(CANARY, 0.3, 60),
                               points(CHAMPION, 0.8, 60, start=FIRST_MARK) + points(CANARY, 0.3, 60, start=FIRST_MARK))
    straight, restored = a_judge(), a_judge()
    judged(restored, first_hour, finish=False)
    restored = a_judge(orjson.loads(orjson.dumps(restored.state)))

    assert [v.log for v in judged(straight, first_hour, finish=False) + judged(straight, second_hour)] == \
        [v.log for v in judged(restored, second_hour)]


def test_a_mark_is_judged_once_a_tally_is_past_it_by_the_lateness_bound_and_a_later_point_counts_next():
    judge = a_judge()
    hour = points(CHAMPION, 0.8, 200) + points(CANARY, 0.8, 200)

    before = judged(judge, hour + points(CHAMPION, 1.0, 1, start=ONE_HOUR_ON - 1), finish=False)
    at_bound = judged(judge, points(CHAMPION, 1.0, 1, start=ONE_HOUR_ON), finish=False)
    judged(judge, points(CANARY, 1.0, 1), finish=False)  # from the first hour, after it was judged

    assert before == [] and [v.log["at"] for v in at_bound] == [FIRST_MARK]
    marks = judge.state["canaries"]["policy v2"]["marks"]
    assert list(marks) == [str(FIRST_MARK + HOUR)] and marks[str(FIRST_MARK + HOUR)][CANARY]["points"] == 1


def test_after_a_stop_the_stopped_canarys_points_are_ignored_and_a_new_canary_starts_afresh():
    judge = a_judge()
    judged(judge, points(CHAMPION, 0.8, 200) + points(CANARY, 0.4, 200))

    ignored = judged(judge, points(CANARY, 0.4, 1, start=FIRST_MARK))
    fresh = judged(judge, points(CHAMPION, 0.8, 200, FIRST_MARK, "3") + points(CANARY, 0.8, 200, FIRST_MARK, "3"))

    assert ignored == [] and list(judge.state["canaries"]) == ["policy v3"]
    assert [(v.log["canary_version"], v.log["verdict"]) for v in fresh] == [("3", PASS)]


def test_the_judge_waits_for_the_slowest_task_unless_it_has_been_silent_for_the_idle_timeout():
    hour = points(CHAMPION, 0.8, 200) + points(CANARY, 0.3, 200)
    waiting, idle, rescaled = a_judge(), a_judge(), a_judge()
    for judge in (waiting, idle, rescaled):
        judge.take(told("customer-1", BEGINNING), [], WALL, "g")  # a task that is behind

    held = waiting.take(told("customer-0", ONE_HOUR_ON), hour, WALL, "g")
    caught_up = waiting.take(told("customer-1", ONE_HOUR_ON), [], WALL, "g")
    after_silence = idle.take(told("customer-0", ONE_HOUR_ON), hour, WALL + IDLE + 1, "g")
    one_task_now = rescaled.take(told("customer-0", ONE_HOUR_ON, tasks=1), hour, WALL, "g")

    assert held == [] and [v.log["verdict"] for v in caught_up] == [FAIL]
    assert [v.log["verdict"] for v in after_silence] == [FAIL]
    assert [v.log["verdict"] for v in one_task_now] == [FAIL] and list(rescaled.state["tasks"]) == ["customer-0"]


def test_a_task_tells_its_clock_when_it_passes_a_mark_by_the_lateness_bound():
    clock = TaskClock("visitor-0", 2, HOUR, LATENESS)
    signal_at = lambda at: [{"kind": LogKind.SIGNAL, "at": at}]  # noqa: E731

    said = [clock.advance(signal_at(at), []) for at in (BEGINNING + 10 * MINUTE, FIRST_MARK, ONE_HOUR_ON - 1, ONE_HOUR_ON)]
    by_a_decision = clock.advance([{"kind": LogKind.POLICY_UPDATE, "at": WALL * 10**9}],
                                  [{"decided_at": ONE_HOUR_ON + HOUR}])

    assert said == [True, False, False, True] and by_a_decision  # a policy update's wall-clock time is no event time
    assert clock.header(["m.f"]) == {"task": "visitor-0", "tasks": 2, "clock": ONE_HOUR_ON + HOUR, "drifting": ["m.f"]}


def test_the_control_group_is_in_neither_arm():
    assert tallies({"control": True, "decided_at": BEGINNING, "acted": False}, [Canary(POLICY, "2")]) == []


def test_a_model_canary_compares_the_points_its_model_scored_and_is_stopped_by_its_own_record():
    canary = Canary(MODEL, "5", "conversion_propensity")
    scored = lambda version, arm="champion": {"control": False, "decided_at": BEGINNING, "acted": True,  # noqa: E731
                                              "model_arm": arm, "models": [{"model": "conversion_propensity",
                                                                            "version": version}]}

    arms = [[t["arm"] for t in tallies(point, [canary])]
            for point in (scored("2"), scored("5", "canary"), {"control": False, "decided_at": BEGINNING, "models": []},
                          scored("2", "canary"))]  # the last: another model's canary scored it
    stop = read_stop(canary.stop("gates g v1", "acted_rate"))

    assert arms == [[CHAMPION], [CANARY], [], []]
    assert (stop.model, stop.version) == ("conversion_propensity", "5")
    assert not PolicyInForce(loads_policy("policy: retail\nversion: '1'\n")).apply_record(
        canary.stop("gates g v1", "acted_rate")).accepted  # a model's stop is no policy update


def test_each_canary_in_force_is_judged_apart_and_a_new_version_of_one_replaces_its_judgement():
    judge = a_judge()
    policy, model = Canary(POLICY, "2"), Canary(MODEL, "5", "m")
    point = lambda arm, n, acted: {  # noqa: E731
        "control": False, "decided_at": BEGINNING + n * MINUTE // 4, "acted": acted, "rollout_arm": arm,
        "model_arm": arm, "models": [{"model": "m", "version": "5" if arm == CANARY else "2"}]}
    points = [point(arm, n, n < share * 200) for arm, share in ((CHAMPION, 0.8), (CANARY, 0.3)) for n in range(200)]
    both = [t for p in points for t in tallies(p, [policy, model])]

    said = judged(judge, both, finish=False) + judge.take(told("customer-0", ONE_HOUR_ON), [], WALL, "g")
    by_version_6 = point(CANARY, 0, True) | {"models": [{"model": "m", "version": "6"}]}
    judge.take(told("customer-0", ONE_HOUR_ON), tallies(by_version_6, [Canary(MODEL, "6", "m")]), WALL, "g")

    assert sorted(v.log["canary"] for v in said) == ["model m v5", "policy v2"] and all(v.stop for v in said)
    assert set(judge.state["stopped"]) == {"model m v5", "policy v2"} and list(judge.state["canaries"]) == ["model m v6"]


def test_a_judge_with_no_control_stream_to_stop_through_says_fail_and_stops_nothing():
    judge = CanaryJudge(GATES, LATENESS, IDLE, stops=False)

    said = judged(judge, points(CHAMPION, 0.8, 200) + points(CANARY, 0.4, 200))

    assert [(v.log["verdict"], v.log["stopped"], v.stop) for v in said] == [(FAIL, False, None)]
    assert judge.state["stopped"] == [] and list(judge.state["canaries"]) == ["policy v2"]


def test_a_drift_alert_holds_a_canary_whose_gates_pass_until_the_drift_is_gone():
    judge, unheld = a_judge(), CanaryJudge(GATES, LATENESS, IDLE, drift_holds=False)
    sound = points(CHAMPION, 0.8, 200) + points(CANARY, 0.79, 200)
    drifting = {"drifting": ["conversion_propensity.cart_value"]}
    next_hour = points(CHAMPION, 0.8, 10, start=FIRST_MARK) + points(CANARY, 0.8, 10, start=FIRST_MARK)

    held = judge.take(told("customer-0", ONE_HOUR_ON, tasks=1) | drifting, sound, WALL, "g")
    passed = judge.take(told("customer-0", ONE_HOUR_ON + HOUR, tasks=1), next_hour, WALL, "g")
    not_held = unheld.take(told("customer-0", ONE_HOUR_ON, tasks=1) | drifting, sound, WALL, "g")

    assert [(v.log["verdict"], v.log["drifting"], v.stop) for v in held] == \
        [(HELD, ["conversion_propensity.cart_value"], None)]
    assert [v.log["verdict"] for v in passed] == [PASS] and [v.log["verdict"] for v in not_held] == [PASS]


def test_a_late_tally_of_a_replaced_canary_does_not_undo_the_judgement_of_the_one_that_replaced_it():
    judge = a_judge()
    judged(judge, points(CHAMPION, 0.8, 10, version="3") + points(CANARY, 0.8, 10, version="3"), finish=False)
    judged(judge, points(CHAMPION, 0.8, 10, version="4") + points(CANARY, 0.8, 10, version="4"), finish=False)

    judged(judge, points(CANARY, 0.8, 1, version="3"), finish=False)  # a task that had not heard of version 4 yet

    assert list(judge.state["canaries"]) == ["policy v4"] and judge.state["retired"] == ["policy v3"]
    assert judge.state["canaries"]["policy v4"]["marks"][str(FIRST_MARK)][CANARY]["points"] == 10


def test_a_judge_that_knows_its_roles_waits_for_every_task_to_speak_until_the_idle_timeout():
    hour = points(CHAMPION, 0.8, 200) + points(CANARY, 0.3, 200)
    judge = CanaryJudge(GATES, LATENESS, IDLE, roles=("visitor", "customer"))

    alone = judge.take(told("customer-0", ONE_HOUR_ON, tasks=1), hour, WALL, "g")
    visitors_in = judge.take(told("visitor-0", ONE_HOUR_ON, tasks=1), [], WALL + 1, "g")
    restored = CanaryJudge(GATES, LATENESS, IDLE, orjson.loads(orjson.dumps(judge.state)), roles=("visitor", "customer"))
    restored.restarted(WALL + 10 * IDLE)

    assert alone == [] and [v.log["verdict"] for v in visitors_in] == [FAIL]
    assert all(task[1] == WALL + 10 * IDLE for task in restored.state["tasks"].values())


def test_a_judge_that_has_heard_one_role_only_judges_once_the_idle_timeout_has_passed():
    judge = CanaryJudge(GATES, LATENESS, IDLE, roles=("visitor", "customer"))
    hour = points(CHAMPION, 0.8, 200) + points(CANARY, 0.3, 200)

    waiting = judge.take(told("customer-0", ONE_HOUR_ON, tasks=1), hour, WALL, "g")
    later = judge.take(told("customer-0", ONE_HOUR_ON, tasks=1), [], WALL + IDLE + 1, "g")

    assert waiting == [] and [v.log["verdict"] for v in later] == [FAIL]
