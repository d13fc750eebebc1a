"""Rollout gates, worked by hand and on runs: a canary clearly worse on a figure fails its gate, one
no worse than noise passes, too small a sample is pending; `journeys canary status` reports the
arms and verdicts, and `promote` publishes the canary only when every gate passed."""
from __future__ import annotations

from importlib import resources

import orjson
import pytest

from journeys.gates import FAIL, PASS, PENDING, arm_points, judge, loads_gates, overall
from journeys.outputs import LogKind
from journeys.rollback import HELD
from journeys.ontology import packaged_ontology
from journeys.policy import loads_policy
from journeys.policy_updates import PolicyInForce, read_update, update_record
from journeys.settings import packaged_settings
from journeys.timeutil import parse_instant
from journeys.yamlconf import ConfigError
from pipelines.cli.main import main as journeys
from pipelines.reference import ReferenceRun
from tests.harness import NOW, EveryoneConsents, a_signal, line

ACTED = loads_gates("gates: g\nversion: '1'\nmin_decision_points: 100\n"
                    "figures: [{figure: acted_rate, worse: lower, tolerance: 0.05}]\n")


def points(arm: str, acted: int, total: int) -> list[dict]:
    return [{"decision_id": f"{arm}-{n}", "rollout_arm": arm, "acted": n < acted, "control": False}
            for n in range(total)]


def test_a_canary_clearly_worse_than_the_tolerance_fails_and_one_within_noise_passes():
    [worse] = judge(ACTED, points("champion", 800, 1000), points("canary", 600, 1000))
    [same] = judge(ACTED, points("champion", 800, 1000), points("canary", 780, 1000))

    assert worse.verdict == FAIL and worse.interval.high < -0.05
    assert same.verdict == PASS and overall([same]) == PASS


def test_a_drop_within_the_tolerance_or_too_few_points_decides_nothing_yet():
    [small] = judge(ACTED, points("champion", 80, 99), points("canary", 10, 99))
    [near] = judge(ACTED, points("champion", 800, 1000), points("canary", 740, 1000))  # 6 points worse, but noisy

    assert small.verdict == PENDING and overall([small]) == PENDING
    assert near.verdict == PASS and near.interval.low < -0.05 < near.interval.high


def test_the_control_group_is_in_neither_arm_and_a_point_is_marked_converted_by_its_outcome():
    arms = arm_points([{"decision_id": "a", "control": True}, {"decision_id": "b", "rollout_arm": "canary"}],
                      converted={"b"})

    assert list(arms) == ["canary"] and arms["canary"][0]["converted"]


@pytest.mark.parametrize("text, error", [
    ("gates: g\nversion: '1'\nfigures: [{figure: happiness, worse: lower, tolerance: 0.1}]\n", "unknown figure"),
    ("gates: g\nversion: '1'\nfigures: [{figure: acted_rate, worse: sideways, tolerance: 0.1}]\n", "worse is"),
    ("gates: g\nversion: '1'\nmin_decision_points: 0\nfigures: [{figure: acted_rate, worse: lower, tolerance: 0.1}]\n",
     "min_decision_points"),
    ("gates: g\nversion: '1'\nfigures: []\n", "figures is a list"),
])
def test_a_bad_gate_file_is_refused_with_its_line(text, error):
    with pytest.raises(ConfigError, match=error):
        loads_gates(text, "g.yaml")


RETAIL = resources.files("journeys.conf").joinpath("policy/retail.yaml").read_text()
BETTER = RETAIL.replace('version: "1"', 'version: "2"')
# A deliberately worse version: it holds back every e-mail and on-site action, nearly all that agents propose.
WORSE = RETAIL.replace('version: "1"', 'version: "3"').replace("eligibility:\n", (
    "eligibility:\n  - {id: hold_carts, when: {identified: true}, suppress: [onsite_cart_nudge, abandoned_cart_reminder]}\n"))


def canary_run(tmp_path, text: str) -> str:
    """A decision log of 1,200 customers' carts with a canary of `text` for 40% of them."""
    in_force = PolicyInForce(loads_policy(RETAIL))
    assert in_force.apply_record(update_record(text, "canary.yaml", 0.4)).accepted
    run = ReferenceRun(packaged_ontology(), packaged_settings(), now_ms=NOW, profiles=EveryoneConsents(), policy=in_force)
    at = parse_instant("2026-03-02T12:00:00Z")
    run.feed(line(a_signal("add_to_cart", at, customer=f"c-{n}", cart_value=40)) for n in range(1200)).finish()
    log = tmp_path / "decision-log"
    log.mkdir()
    (log / "part-0.jsonl").write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in run.decision_log))
    (tmp_path / "canary.yaml").write_text(text)
    return str(log)


def test_a_worse_canary_fails_its_gate_and_is_not_promoted_unless_forced(tmp_path, capsys):
    log = canary_run(tmp_path, WORSE)
    updates = tmp_path / "updates"

    status = journeys(["canary", "status", "--decision-log", log, "--json", str(tmp_path / "status.json")])
    refused = journeys(["canary", "promote", str(tmp_path / "canary.yaml"), "--decision-log", log, "--to", str(updates)])
    forced = journeys(["canary", "promote", str(tmp_path / "canary.yaml"), "--decision-log", log, "--to", str(updates),
                       "--force"])

    report = orjson.loads((tmp_path / "status.json").read_bytes())
    assert status == 1 and report["verdict"] == FAIL and report["canary_versions"] == ["3"]
    assert {v["figure"]: v["verdict"] for v in report["verdicts"]}["acted_rate"] == FAIL
    assert refused == 1 and "not promoted" in capsys.readouterr().err
    assert forced == 0 and [read_update(f.read_text().strip())[2] for f in updates.iterdir()] == [None]


def test_a_canary_no_worse_than_the_policy_in_force_passes_and_is_promoted(tmp_path, capsys):
    log = canary_run(tmp_path, BETTER)
    updates = tmp_path / "updates"

    promoted = journeys(["canary", "promote", str(tmp_path / "canary.yaml"), "--decision-log", log, "--to", str(updates)])

    out = capsys.readouterr().out
    assert promoted == 0 and "verdict: PASS" in out and "not judged without the journey log's outcomes" in out
    [record] = updates.iterdir()
    in_force = PolicyInForce(loads_policy(RETAIL))
    in_force.apply_record(update_record(BETTER, "canary.yaml", 0.4))
    assert in_force.apply_record(record.read_text().strip()).accepted and in_force.policy.version == "2"


def job_verdict(verdict: str, stopped: bool, drifting: list[str] = ()) -> dict:
    """A journey log record of the job's judge on the canary of version 2, as journeys.rollback writes one."""
    return {"kind": LogKind.CANARY_VERDICT, "journey": "", "at": 1, "canary": "policy v2", "canary_of": "policy",
            "canary_version": "2", "verdict": verdict, "gates": "retail v1", "decision_points": {"canary": 480, "champion": 600},
            "verdicts": [], "not_judged": ["conversion_rate"], "drifting": list(drifting), "stopped": stopped, "final": True}


def test_a_canary_the_jobs_judge_held_for_drift_is_not_promoted_though_its_gates_pass(tmp_path, capsys):
    log = canary_run(tmp_path, BETTER)
    journey_log = tmp_path / "journeys"
    journey_log.mkdir()
    held = job_verdict(HELD, stopped=False, drifting=["conversion_propensity.cart_value"])
    (journey_log / "part-0.jsonl").write_bytes(orjson.dumps(held) + b"\n")

    refused = journeys(["canary", "promote", str(tmp_path / "canary.yaml"), "--decision-log", log,
                        "--journeys", str(journey_log), "--to", str(tmp_path / "updates")])

    out = capsys.readouterr().out
    assert refused == 1 and "verdict: HELD" in out and "drift above the threshold in conversion_propensity.cart_value" in out
    assert not (tmp_path / "updates").exists()


def test_a_canary_the_jobs_judge_stopped_is_not_promoted_though_the_whole_log_passes(tmp_path, capsys):
    log = canary_run(tmp_path, BETTER)
    journey_log = tmp_path / "journeys"
    journey_log.mkdir()
    stopped = job_verdict(FAIL, stopped=True)
    (journey_log / "part-0.jsonl").write_bytes(orjson.dumps(stopped) + b"\n")

    refused = journeys(["canary", "promote", str(tmp_path / "canary.yaml"), "--decision-log", log,
                        "--journeys", str(journey_log), "--to", str(tmp_path / "updates")])

    out = capsys.readouterr().out
    assert refused == 1 and "verdict: FAIL" in out and "the job's judge stopped this canary" in out
