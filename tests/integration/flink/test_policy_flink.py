"""A new policy version reaches the running Flink job through its control stream (a watched
directory or a Kafka topic, fed to broadcast state): decisions cite the old version before the swap and the new one
after, an invalid update is rejected and logged while the old policy stays, and no signal is lost. A canary decides
for its share of people, and the job stops a canary whose gates fail, by itself."""
from __future__ import annotations

import os
import signal
import time
from collections import Counter
from importlib import resources
from pathlib import Path

import orjson
import pytest

from journeys.contract import SignalDecoder
from journeys.gates import loads_gates
from journeys.ontology import packaged_ontology
from journeys.outputs import LogKind
from journeys.policy import loads_policy
from journeys.policy_updates import PolicyInForce, read_stop, update_record
from journeys.rollback import POLICY, Canary, CanaryJudge, tallies
from journeys.settings import packaged_settings
from journeys.timeutil import HOUR
from pipelines.kafka.tools import create_topics, produce_signals, read_topic
from pipelines.reference import ReferenceRun
from pipelines.tools.files import read_lines, scan_records
from pipelines.tools.policy_publish import publish
from pipelines.tools.simulate import SimulationSpec, write_simulation
from tests.harness import event_ids, start_driver, wait_for_checkpoints

pytestmark = [pytest.mark.flink]

RETAIL = resources.files("journeys.conf").joinpath("policy/retail.yaml").read_text()


def version(number: str) -> str:
    return RETAIL.replace('version: "1"', f'version: "{number}"')


def records(bootstrap: str, topic: str) -> list[dict]:
    return [orjson.loads(value) for _, value in read_topic(bootstrap, topic, idle_timeout=1.0)]


def at_least(count: int, found: list) -> list | None:
    return found if len(found) >= count else None


def wait_for(condition, job, what: str, timeout: float = 180):
    deadline = time.time() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert job.poll() is None, job.stdout.read()[-3000:]
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def a_simulated_run(tmp_path: Path, bootstrap: str, name: str, customers: int,
                    seed: int) -> tuple[list, int, str, dict]:
    """(signal lines, the end clock, this test's prefix, its topics: signals, decisions, journeys,
    dead-letter), with versions 1 and 2 of the retail policy written beside them."""
    signals = tmp_path / "signals.jsonl"
    write_simulation(SimulationSpec(customers=customers, days=10, seed=seed, late_rate=0.0), signals)
    lines = list(read_lines(signals))
    settings = packaged_settings()
    end_clock = (scan_records(lines, SignalDecoder(settings.intake).decode_json).latest_event_time
                 - settings.max_out_of_orderness_ms - 1)
    prefix = f"{name}-{time.time_ns()}"
    topics = {topic: f"{prefix}-{topic}" for topic in ("signals", "decisions", "journeys", "dead-letter")}
    create_topics(bootstrap, dict.fromkeys(topics.values(), 1))
    (tmp_path / "retail-v1.yaml").write_text(version("1"))
    (tmp_path / "retail-v2.yaml").write_text(version("2"))
    return lines, end_clock, prefix, topics


@pytest.mark.parametrize("control", ["directory", "kafka"])
def test_a_policy_published_mid_stream_is_in_force_without_a_restart_and_a_bad_one_is_rejected(kafka_broker, control,
                                                                                                 tmp_path: Path):
    signals = tmp_path / "signals.jsonl"
    write_simulation(SimulationSpec(customers=120, days=10, seed=5, late_rate=0.0), signals)
    lines = list(read_lines(signals))
    first_half, second_half = lines[:len(lines) // 2], lines[len(lines) // 2:]
    settings = packaged_settings()
    end_clock = (scan_records(lines, SignalDecoder(settings.intake).decode_json).latest_event_time
                 - settings.max_out_of_orderness_ms - 1)
    bootstrap = kafka_broker.bootstrap_servers
    prefix = f"policy-{time.time_ns()}"
    topics = {name: f"{prefix}-{name}" for name in ("signals", "decisions", "journeys", "dead-letter", "policy")}
    create_topics(bootstrap, dict.fromkeys(topics.values(), 1))
    updates = tmp_path / "policy-updates"
    (tmp_path / "broken.yaml").write_text(version("9").replace("share: 0.1", "share: 2"))
    (tmp_path / "retail-v1.yaml").write_text(version("1"))
    (tmp_path / "retail-v2.yaml").write_text(version("2"))
    address = lambda name: f"kafka://{bootstrap}/{topics[name]}"  # noqa: E731

    def send(name: str, validate: bool = True) -> None:
        if control == "directory":
            publish(tmp_path / name, updates, validate=validate)
        else:  # the same record, produced to the control topic
            produce_signals(bootstrap, topics["policy"], [update_record((tmp_path / name).read_text(), name).encode()])

    send("broken.yaml", validate=False)  # already there when the job starts

    job = start_driver(["--signals", address("signals"), "--stop-offsets", f"0:{len(lines)}",
                         "--decisions", address("decisions"), "--journeys", address("journeys"),
                         "--dead-letter", address("dead-letter"), "--end-clock", str(end_clock), "--parallelism", "2",
                         "--delivery-guarantee", "at-least-once", "--transactional-id-prefix", prefix,
                         "--checkpoints", str(tmp_path / "checkpoints"), "-D", "execution.checkpointing.interval=1s",
                         "--policy", str(tmp_path / "retail-v1.yaml"), "--policy-updates", updates.as_uri() if control == "directory" else address("policy")])
    expected = ReferenceRun(packaged_ontology(), settings, end_clock=end_clock,
                            policy=PolicyInForce(loads_policy(version("1")))).feed(lines).finish().decisions
    try:
        updates_seen = lambda accepted: [r for r in records(bootstrap, topics["journeys"])  # noqa: E731
                                         if r["kind"] == LogKind.POLICY_UPDATE and r["accepted"] is accepted]
        rejected = wait_for(lambda: updates_seen(False), job, "the broken update to be rejected")
        produce_signals(bootstrap, topics["signals"], first_half)
        before = wait_for(lambda: at_least(50, records(bootstrap, topics["decisions"])), job,
                          "decisions from the first half")

        send("retail-v2.yaml")
        accepted = wait_for(lambda: at_least(2, updates_seen(True)), job, "both journey operators to take version 2")
        produce_signals(bootstrap, topics["signals"], second_half)
        decisions = wait_for(lambda: at_least(len(expected), records(bootstrap, topics["decisions"])), job,
                             "every decision", timeout=300)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)  # a control stream is unbounded: the job runs until cancelled
            job.wait()

    assert "control_group.share is a share in [0, 1), not 2.0" in rejected[0]["reason"]
    assert "stays in force" in rejected[0]["reason"]
    assert {r["operator"] for r in accepted} == {"visitor", "customer"} and accepted[0]["version"] == "2"
    assert before and all(d["policy_version"] == "1" for d in before)
    second_half_ids = event_ids(second_half)
    after = [d for d in decisions if d["event_id"] in second_half_ids]
    assert after and all(d["policy_version"] == "2" for d in after)
    # Nothing was lost or decided twice: the pure core's decisions (the two versions differ only in number).
    assert sorted(d["decision_id"] for d in decisions) == sorted(d["decision_id"] for d in expected)


def test_a_job_restored_from_a_checkpoint_keeps_the_policy_that_was_in_force(kafka_broker, tmp_path: Path):
    bootstrap = kafka_broker.bootstrap_servers
    lines, end_clock, prefix, topics = a_simulated_run(tmp_path, bootstrap, "policy-restore", customers=80, seed=11)
    first_half, second_half = lines[:len(lines) // 2], lines[len(lines) // 2:]
    checkpoints = tmp_path / "checkpoints"

    def start(updates: Path, *more: str):
        return start_driver(["--signals", f"kafka://{bootstrap}/{topics['signals']}", "--stop-offsets", f"0:{len(lines)}",
                              *(arg for name in ("decisions", "journeys", "dead-letter")
                                for arg in (f"--{name}", f"kafka://{bootstrap}/{topics[name]}")),
                              "--end-clock", str(end_clock), "--parallelism", "2", "--delivery-guarantee", "at-least-once",
                              "--transactional-id-prefix", prefix, "--checkpoints", str(checkpoints),
                              "-D", "execution.checkpointing.interval=1s", "--policy", str(tmp_path / "retail-v1.yaml"),
                              "--policy-updates", updates.as_uri(), *more])

    first = start(tmp_path / "updates")
    try:
        publish(tmp_path / "retail-v2.yaml", tmp_path / "updates")
        wait_for(lambda: at_least(2, [r for r in records(bootstrap, topics["journeys"])
                                      if r["kind"] == LogKind.POLICY_UPDATE and r["accepted"]]), first, "version 2 in force")
        produce_signals(bootstrap, topics["signals"], first_half)
        wait_for(lambda: at_least(20, records(bootstrap, topics["decisions"])), first, "decisions from the first half")
        taken = len(list(checkpoints.glob("*/chk-*/_metadata")))
        checkpoint = wait_for_checkpoints(checkpoints, taken + 2, first)  # taken after version 2 was in force
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()

    # The restored job watches an empty directory: version 2 can only come from the checkpoint.
    restored = start(tmp_path / "no-updates", "--restore", str(checkpoint))
    try:
        produce_signals(bootstrap, topics["signals"], second_half)
        second_half_ids = event_ids(second_half)
        after = wait_for(lambda: at_least(20, [d for d in records(bootstrap, topics["decisions"])
                                               if d["event_id"] in second_half_ids]), restored,
                         "decisions from the second half")
    finally:
        os.killpg(restored.pid, signal.SIGKILL)
        restored.wait()

    assert {d["policy_version"] for d in after} == {"2"}


def test_a_canary_policy_decides_for_its_share_of_people_and_the_rest_stay_on_the_policy_in_force(kafka_broker,
                                                                                                   tmp_path: Path):
    bootstrap = kafka_broker.bootstrap_servers
    lines, end_clock, prefix, topics = a_simulated_run(tmp_path, bootstrap, "canary", customers=120, seed=17)
    updates = tmp_path / "policy-updates"
    publish(tmp_path / "retail-v2.yaml", updates, canary_share=0.3)
    in_force = PolicyInForce(loads_policy(version("1")))
    in_force.apply_record(update_record(version("2"), "retail-v2.yaml", 0.3))
    expected = ReferenceRun(packaged_ontology(), packaged_settings(), end_clock=end_clock,
                            policy=in_force).feed(lines).finish().decisions

    job = start_driver(["--signals", f"kafka://{bootstrap}/{topics['signals']}", "--stop-offsets", f"0:{len(lines)}",
                        *(arg for name in ("decisions", "journeys", "dead-letter")
                          for arg in (f"--{name}", f"kafka://{bootstrap}/{topics[name]}")),
                        "--end-clock", str(end_clock), "--parallelism", "2", "--delivery-guarantee", "at-least-once",
                        "--transactional-id-prefix", prefix, "--checkpoints", str(tmp_path / "checkpoints"),
                        "--policy", str(tmp_path / "retail-v1.yaml"), "--policy-updates", updates.as_uri()])
    try:
        canary_taken = lambda: at_least(2, [r for r in records(bootstrap, topics["journeys"])  # noqa: E731
                                            if r["kind"] == LogKind.POLICY_UPDATE and r.get("canary_share") == 0.3])
        taken = wait_for(canary_taken, job, "both journey operators to take the canary")
        produce_signals(bootstrap, topics["signals"], lines)
        decisions = wait_for(lambda: at_least(len(expected), records(bootstrap, topics["decisions"])), job,
                             "every decision", timeout=300)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()

    def arms(found: list[dict]) -> list[tuple]:
        return sorted((d["decision_id"], d["rollout_arm"], d["policy_version"]) for d in found)

    assert {r["operator"] for r in taken} == {"visitor", "customer"}
    assert arms(decisions) == arms(expected)
    assert {(arm, v) for _, arm, v in arms(decisions)} == {("champion", "1"), ("canary", "2")}


# A deliberately worse version: quiet hours all day, on-site too, so nearly every action is held back.
WORSE = version("3").replace('quiet_hours: {start: "21:00", end: "08:00", channels: [email, sms, push]}',
                             'quiet_hours: {start: "00:00", end: "23:59", channels: [email, sms, push, web]}')
HOURLY_GATES = ("gates: hourly\nversion: '1'\nmin_decision_points: 50\njudge_every: 1h\n"
                "figures: [{figure: acted_rate, worse: lower, tolerance: 0.05}]\n")


def test_a_canary_of_a_worse_policy_is_stopped_by_its_gates_in_the_running_job(kafka_broker, tmp_path: Path):
    bootstrap = kafka_broker.bootstrap_servers
    lines, _, prefix, topics = a_simulated_run(tmp_path, bootstrap, "rollback", customers=200, seed=17)
    topics["decision-log"] = f"{prefix}-decision-log"
    create_topics(bootstrap, {topics["decision-log"]: 1})
    (tmp_path / "worse.yaml").write_text(WORSE)
    (tmp_path / "gates.yaml").write_text(HOURLY_GATES)
    updates = tmp_path / "policy-updates"
    publish(tmp_path / "worse.yaml", updates, canary_share=0.3)
    first_part, rest = lines[:len(lines) * 6 // 10], lines[len(lines) * 6 // 10:]

    # Live: no stop offsets, so the job's time is the signals' and the wall clock's, as in production.
    job = start_driver(["--signals", f"kafka://{bootstrap}/{topics['signals']}",
                        *(arg for name in ("decisions", "journeys", "dead-letter", "decision-log")
                          for arg in (f"--{name}", f"kafka://{bootstrap}/{topics[name]}")),
                        "--parallelism", "2", "--delivery-guarantee", "at-least-once", "--transactional-id-prefix", prefix,
                        "--checkpoints", str(tmp_path / "checkpoints"), "-D", "execution.checkpointing.interval=1s",
                        "--policy", str(tmp_path / "retail-v1.yaml"), "--policy-updates", updates.as_uri(),
                        "--gates", str(tmp_path / "gates.yaml")])
    journey_log = lambda kind: [r for r in records(bootstrap, topics["journeys"]) if r["kind"] == kind]  # noqa: E731
    try:
        wait_for(lambda: at_least(2, [r for r in journey_log(LogKind.POLICY_UPDATE) if r.get("canary_share") == 0.3]),
                 job, "both journey operators to take the canary")
        produce_signals(bootstrap, topics["signals"], first_part)
        [verdict] = wait_for(lambda: [r for r in journey_log(LogKind.CANARY_VERDICT) if r["stopped"]], job,
                             "the canary's gates to fail")
        stops = wait_for(lambda: at_least(2, [r for r in journey_log(LogKind.POLICY_UPDATE)
                                              if r["accepted"] and r.get("canary_share") == 0]),
                         job, "both journey operators to stop the canary")
        produce_signals(bootstrap, topics["signals"], rest)
        rest_ids = event_ids(rest)
        later = wait_for(lambda: at_least(100, [p for p in records(bootstrap, topics["decision-log"])
                                                if set(p["event_ids"]) & rest_ids]), job,
                         "decision points on the signals sent after the stop")
        log = records(bootstrap, topics["decision-log"])
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()

    assert verdict["verdict"] == "fail" and verdict["canary"] == "policy v3" and verdict["gates"] == "hourly v1"
    assert {v["figure"]: v["verdict"] for v in verdict["verdicts"]} == {"acted_rate": "fail"}
    assert {r["operator"] for r in stops} == {"visitor", "customer"}
    assert all("stopped (gates hourly v1 failed" in r["reason"] for r in stops)
    # The stop is a record of the job's own control stream, beside the publish that started the canary.
    written = [read_stop(line) for f in updates.glob("canary-stop*") for line in f.read_text().splitlines()]
    assert [(stop.version, stop.source, stop.model) for stop in written] == [("3", "gates hourly v1", None)]
    assert any(p["rollout_arm"] == "canary" for p in log)
    assert {(p["rollout_arm"], p["policy_version"]) for p in later} == {("champion", "1")}
    # The verdict is the gates' on the decision log itself. Every point it counted was decided before
    # its mark (a point that reached the judge late counts at a later mark), and judged offline in
    # event-time order, the log fails the same gate within one mark of the job.
    before_mark = Counter(p["rollout_arm"] for p in log if not p["control"] and p["decided_at"] < verdict["at"])
    assert all(0 < counted <= before_mark[arm] for arm, counted in verdict["decision_points"].items())
    settings = packaged_settings()
    judge = CanaryJudge(loads_gates(HOURLY_GATES), settings.max_out_of_orderness_ms, settings.idle_source_timeout_ms)
    in_event_time = sorted(log, key=lambda p: (p["decided_at"], p["decision_id"]))
    offline = [said.log for p in in_event_time for t in tallies(p, [Canary(POLICY, "3")])
               for said in judge.take({"task": "log-0", "tasks": 1, "clock": t["at"]}, [t], 0, "offline")]
    failed = [said for said in offline if said["verdict"] == "fail"]
    assert failed and abs(failed[0]["at"] - verdict["at"]) <= HOUR
