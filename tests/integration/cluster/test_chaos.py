"""Faults at scale: one bounded run of the journey job on the standalone cluster, from a signals file
to file sinks, whose TaskManager is SIGKILLed ten times at random points. Every kill comes after the
job has restored and completed a new checkpoint, so each one forces a restore of its own; the
outputs must still be those of an uninterrupted run, record for record."""
from __future__ import annotations

import json
import os
import random
import signal
import time
import urllib.error
from collections import Counter
from pathlib import Path

import psutil
import pytest

from pipelines.tools.simulate import SimulationSpec, write_simulation
from tests.harness import canonical, job_arguments, job_output, reference_output

pytestmark = [pytest.mark.flink, pytest.mark.chaos]

KILLS = 10
# The kill points are drawn from this seed; set CHAOS_SEED to replay a failing draw's schedule.
SEED = int(os.environ.get("CHAOS_SEED", "19"))
# How long after the job is restorable (running, with a checkpoint newer than its last restore)
# a kill may come: long enough to land anywhere in a checkpoint interval, short enough that the
# input outlasts ten kills.
LONGEST_PAUSE_S = 2.5
RESTORE_TIMEOUT_S = 180
JOB_NAME = "journey-job-ten-kills"
# No signals beyond the watermark bound (late_rate=0.0): which of those count as late depends on
# where the source's progress is when they arrive, and that progress starts over after a restore.
INPUT = SimulationSpec(customers=6000, days=30, seed=53, late_rate=0.0)
# Test-scale time for the restart strategy: a failure 3 s after the last restart counts as a new
# one, as failures ten minutes apart do for a live job, so ten kills fit under the attempt limit.
RESTART_STRATEGY = ["-D", "restart-strategy.exponential-delay.reset-backoff-threshold=3s"]
CHECKPOINTING = ["-D", "execution.checkpointing.interval=1s", "-D", "execution.checkpointing.min-pause=200ms"]


class Chaos:
    """The job on the cluster, and the kills made to it, told in every failure message."""

    def __init__(self, cluster, submitted):
        self.cluster, self.submitted = cluster, submitted
        self.rng = random.Random(SEED)
        self.job_id = self._job_id()
        self.kills = 0
        self.timeline: list[str] = []
        self.started = time.time()

    def _job_id(self) -> str:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.submitted.poll() is None, self.submitted.stdout.read()[-4000:]
            jobs = [j for j in self.cluster.get("/jobs/overview")["jobs"] if j["name"] == JOB_NAME]
            if jobs:
                return jobs[0]["jid"]
            time.sleep(0.2)
        pytest.fail(f"the job was not submitted within two minutes (seed {SEED})")

    def checkpoints(self) -> dict:
        return self.cluster.get(f"/jobs/{self.job_id}/checkpoints")

    def note(self, event: str) -> None:
        self.timeline.append(f"{time.time() - self.started:6.1f} s  {event}")

    def story(self) -> str:
        return f"seed {SEED}, {self.kills} kills:\n" + "\n".join(self.timeline)

    def wait_until_restorable(self, restores: int) -> None:
        """Until the job has been restored `restores` times, runs, and has completed a checkpoint
        since its last restore: a kill then must restore the job from a checkpoint of this attempt."""
        deadline = time.time() + RESTORE_TIMEOUT_S
        while time.time() < deadline:
            if self.submitted.poll() is not None:
                pytest.fail(f"the job ended after {self.kills} of {KILLS} kills: make the input "
                            f"bigger ({self.story()})\n{self.submitted.stdout.read()[-4000:]}")
            if self._restorable(restores):
                return
            time.sleep(0.2)
        pytest.fail(f"the job was not running with a new checkpoint {RESTORE_TIMEOUT_S} s after kill "
                    f"{restores} ({self.story()})")

    def _restorable(self, restores: int) -> bool:
        job = self.cluster.get(f"/jobs/{self.job_id}")
        if job["state"] != "RUNNING" or any(v["status"] != "RUNNING" for v in job["vertices"]):
            return False
        try:
            statistics = self.checkpoints()
        except urllib.error.HTTPError:
            return False  # a job that is not running (any more) has no checkpoint statistics to serve
        completed, restored = statistics["latest"]["completed"], statistics["latest"]["restored"]
        if statistics["counts"]["restored"] < restores or not completed or \
                (restored and completed["trigger_timestamp"] <= restored["restore_timestamp"]):
            return False
        self.note(f"running: {statistics['counts']['restored']} restores, last from checkpoint "
                  f"{restored['id'] if restored else '-'}, checkpoint {completed['id']} done since")
        return True

    def kill_the_taskmanagers_running_the_job(self) -> None:
        time.sleep(self.rng.uniform(0, LONGEST_PAUSE_S))
        victims = self._taskmanagers_running_the_job()
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        self.kills += 1
        self.note(f"kill {self.kills}: SIGKILL to TaskManager pid {', '.join(map(str, victims))}")
        replacement = self.cluster.script("add-taskmanager", timeout=120)
        assert replacement.returncode == 0, replacement.stderr + self.story()

    def _taskmanagers_running_the_job(self) -> list[int]:
        """The TaskManager processes that hold the job's subtasks, found by the data port each one
        listens on (the endpoint the REST API gives for a subtask)."""
        job = self.cluster.get(f"/jobs/{self.job_id}")
        ports = {int(tm["endpoint"].rsplit(":", 1)[1])
                 for vertex in job["vertices"]
                 for tm in self.cluster.get(f"/jobs/{self.job_id}/vertices/{vertex['id']}/taskmanagers")["taskmanagers"]
                 if tm["status"] == "RUNNING"}
        victims = [pid for pid in self.cluster.taskmanager_pids() if psutil.pid_exists(pid) and
                   any(c.status == psutil.CONN_LISTEN and c.laddr.port in ports
                       for c in psutil.Process(pid).net_connections("tcp"))]
        assert victims, f"no live TaskManager listens on the job's data ports {ports} ({self.story()})"
        return victims


def differences(expected: list, produced: list) -> str:
    """How many records went missing, came twice (or more) and came unexpected."""
    wanted, got = Counter(expected), Counter(produced)
    missing, extra = wanted - got, got - wanted
    duplicated = sum(count for record, count in extra.items() if record in wanted)
    return (f"{sum(missing.values())} lost, {duplicated} duplicated, {sum(extra.values()) - duplicated} unexpected "
            f"of {len(expected)}")


def test_ten_taskmanager_kills_in_one_run_lose_and_duplicate_nothing(cluster, tmp_path):
    signals, out = tmp_path / "signals.jsonl", tmp_path / "out"
    write_simulation(INPUT, signals)
    # No spare TaskManager: measured here, one made recovery no faster (203 s for the ten kills
    # against 188 s without). The replacement JVM starts while the JobManager is still noticing
    # the loss (about 3.5 s, heartbeat RPCs failing) and backing off, and on two cores a spare's
    # head start is lost to the replacement starting beside the restoring job.
    submitted = cluster.submit(job_arguments(signals, out, "--job-name", JOB_NAME, *CHECKPOINTING, *RESTART_STRATEGY))
    try:
        chaos = Chaos(cluster, submitted)
        for kill in range(KILLS):
            chaos.wait_until_restorable(restores=kill)
            chaos.kill_the_taskmanagers_running_the_job()
        chaos.wait_until_restorable(restores=KILLS)
        chaos.note("restored after the last kill")
        output, _ = submitted.communicate(timeout=600)
    finally:
        if submitted.poll() is None:  # a failed wait: stop the job too, not just its client
            for job in cluster.get("/jobs/overview")["jobs"]:
                if job["name"] == JOB_NAME and job["state"] not in ("FINISHED", "FAILED", "CANCELED"):
                    cluster.cancel(job["jid"])
            submitted.kill()
    assert submitted.returncode == 0, output[-4000:] + chaos.story()

    restores = chaos.checkpoints()["counts"]["restored"]
    failures = cluster.get(f"/jobs/{chaos.job_id}/exceptions")["exceptionHistory"]["entries"]
    # More restores than kills happen on a loaded machine (seen: 19 for 10, with load 8 on 2 cores):
    # the causes say why.
    causes = dict(Counter(failure["exceptionName"] for failure in failures))
    assert restores >= KILLS and len(failures) >= KILLS, \
        f"{restores} restores and {len(failures)} failures ({causes}) for {KILLS} kills ({chaos.story()})"
    summary = json.loads((out / "summary.json").read_text())
    expected, produced = reference_output(signals, summary["end_clock"]), job_output(out)
    expected_ids = sorted(d["decision_id"] for d in expected.decisions)
    produced_ids = sorted(d["decision_id"] for d in produced["decisions"])
    assert produced_ids == expected_ids, \
        f"decision ids: {differences(expected_ids, produced_ids)} ({chaos.story()})"
    for name, records in (("decisions", expected.decisions), ("journeys", expected.journey_records),
                          ("dead-letter", expected.dead_letters)):
        assert canonical(produced[name]) == canonical(records), \
            f"{name}: {differences(canonical(records), canonical(produced[name]))} ({chaos.story()})"
    assert summary["balanced"] is True
    print(f"\n{KILLS} kills, {restores} restores, failures {causes}, {len(expected_ids)} decisions compared; "
          f"{chaos.story()}")
