"""An upgrade through a savepoint: the previous release runs the job and is stopped with a savepoint,
and this release, whose journey state has new fields (wire version 4, with an upgrade from 3),
restores from it and finishes the run. docs/running.md, "Upgrading a running job", is the procedure
this test follows.

This release also decides differently from the previous one (issue 20: the zone for quiet hours,
consent withdrawn by signals, one arm per person, an opt-out that puts a journey at risk), and
version 4 keeps what version 3 could not have known. So the previous release's own outputs, and a
journey in flight at the upgrade, which goes on with what its version-3 state knew
(docs/running.md), cannot equal this release's reference run. The journeys that began after the
savepoint are held to the reference record for record; those in flight to the same signals
applied, late or dropped as duplicates, each exactly once across the upgrade."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from journeys.state import WIRE_VERSION
from pipelines.tools.simulate import SimulationSpec, write_simulation
from scripts.local_broker import free_port
from tests.harness import ROOT, canonical, job_arguments, job_output, reference_output, start_driver

pytestmark = pytest.mark.flink

# The last release whose journey state is wire version 3. Its job runs on this venv: the pinned
# dependency set has not changed since.
PREVIOUS_RELEASE = "844196e94f74f52c5d14b060455bd1d6333c4e37"
PREVIOUS_WIRE_VERSION = 3
# Journey log records that say what became of a signal, whatever the journey made of it.
SIGNAL_FATES = ("signal", "late", "duplicate", "outcome")


def export_release(commit: str, into: Path) -> Path:
    """The release's tree as `git archive` gives it: a build of that commit, not this checkout."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True)
    assert archive.returncode == 0, (f"the previous release {commit} is not in this clone's history "
                                     f"(a shallow clone?): {archive.stderr.decode()[-500:]}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def start_release_driver(release: Path, arguments: list[str]) -> subprocess.Popen:
    """The release's own driver, finding the release's packages before this checkout's."""
    environment = os.environ | {"PYTHONPATH": str(release)}
    return subprocess.Popen([sys.executable, str(release / "jobs" / "journey_job.py"), *arguments], cwd=release,
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


class JobRest:
    """The REST API of the job's MiniCluster, where `flink stop` would send its request."""

    def __init__(self, port: int):
        self.base = f"http://localhost:{port}"

    def call(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def running_job(self, process: subprocess.Popen, timeout: float = 120) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert process.poll() is None, "the previous release's job ended early:\n" + process.stdout.read()[-3000:]
            try:
                jobs = self.call("/jobs/overview")["jobs"]
            except OSError:
                jobs = []
            if jobs and jobs[0]["state"] == "RUNNING" and jobs[0]["tasks"]["running"] == jobs[0]["tasks"]["total"]:
                return jobs[0]["jid"]
            time.sleep(0.2)
        pytest.fail(f"no running job at {self.base} after {timeout} s")

    def stop_with_savepoint(self, job_id: str, directory: Path, timeout: float = 120) -> Path:
        request = self.call(f"/jobs/{job_id}/stop", {"targetDirectory": directory.as_uri(), "drain": False})
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = self.call(f"/jobs/{job_id}/savepoints/{request['request-id']}")
            if status["status"]["id"] == "COMPLETED":
                operation = status["operation"]
                assert "location" in operation, f"the savepoint failed: {operation}"
                return Path(operation["location"].removeprefix("file:"))
            time.sleep(0.2)
        pytest.fail(f"the savepoint did not complete within {timeout} s")


def keys_of_wire_version(savepoint: Path, version: int) -> set[str]:
    """The keys whose journey states in the savepoint's files are of that wire version."""
    meta = re.compile(rb'\{"v":%d,"k":"([^"]+)"' % version)
    return {key.decode() for path in savepoint.iterdir() if path.is_file() for key in meta.findall(path.read_bytes())}


def in_flight(keys: set[str], journey_records: list[dict]) -> set[str]:
    """The journeys whose state came from the savepoint: its keys, and the customers its visitors joined."""
    return keys | {r["journey"] for r in journey_records if r["kind"] == "stitch" and r["anonymous_id"] in keys}


def split(records: list[dict], journeys: set[str]) -> tuple[list[dict], list[dict]]:
    """(records of these journeys, the rest)."""
    return [r for r in records if r["journey"] in journeys], [r for r in records if r["journey"] not in journeys]


def test_a_savepoint_of_the_previous_release_restores_into_this_one_and_the_run_ends_as_if_uninterrupted(tmp_path):
    assert WIRE_VERSION == PREVIOUS_WIRE_VERSION + 1, "a new wire version: move PREVIOUS_RELEASE to the last release before it"
    release = export_release(PREVIOUS_RELEASE, tmp_path / "previous-release")
    signals, out = tmp_path / "signals.jsonl", tmp_path / "out"
    # Large enough that the previous release is far from its end when it is stopped, however fast
    # the machine (on an idle one, 6 to 9% of the run's journeys were in flight at the savepoint).
    write_simulation(SimulationSpec(customers=2400, days=20, seed=29, late_rate=0.0), signals)
    rest_port = free_port()

    # No summary from the previous release: its run is stopped halfway, and would not balance.
    arguments = job_arguments(signals, out, "-D", f"rest.port={rest_port}", "-D", "execution.checkpointing.interval=1s")
    summary_at = arguments.index("--summary")
    previous = start_release_driver(release, arguments[:summary_at] + arguments[summary_at + 2:])
    rest = JobRest(rest_port)
    try:
        # Stopped as soon as every task runs: what it read by then is in the savepoint.
        savepoint = rest.stop_with_savepoint(rest.running_job(previous), tmp_path / "savepoints")
        assert previous.wait(timeout=120) == 0, previous.stdout.read()[-3000:]
    finally:
        if previous.poll() is None:
            previous.kill()
    old_keys = keys_of_wire_version(savepoint, PREVIOUS_WIRE_VERSION)
    assert old_keys, "the savepoint holds no version-3 state"

    restored = start_driver(job_arguments(signals, out, "--restore", str(savepoint)))
    assert restored.wait(timeout=400) == 0, restored.stdout.read()[-3000:]

    summary = json.loads((out / "summary.json").read_text())
    produced, expected = job_output(out), reference_output(signals, summary["end_clock"])
    assert summary["balanced"] is True
    assert canonical(produced["dead-letter"]) == canonical(expected.dead_letters)
    old = in_flight(old_keys, expected.journey_records)
    old_journeys, new_journeys = split(produced["journeys"], old)
    expected_old, expected_new = split(expected.journey_records, old)
    new_decisions = split(produced["decisions"], old)[1]
    assert old_journeys and new_journeys, "the run needs journeys on both sides of the upgrade"
    assert canonical(new_journeys) == canonical(expected_new)
    assert canonical(new_decisions) == canonical(split(expected.decisions, old)[1])

    def fates(records: list[dict]) -> list[bytes]:
        return canonical([{k: r[k] for k in ("journey", "event_id", "kind")} for r in records if r["kind"] in SIGNAL_FATES])

    assert fates(old_journeys) == fates(expected_old)
