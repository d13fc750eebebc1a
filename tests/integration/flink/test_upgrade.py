"""An upgrade through a savepoint: the previous release runs the job and is stopped with a savepoint,
and this release, whose journey state has a new field (wire version 3, with an upgrade from 2),
restores from it and finishes the run. docs/running.md, "Upgrading a running job", is the procedure
this test follows."""
from __future__ import annotations

import json
import os
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

# The last release whose journey state is wire version 2. Its job runs on this venv: the pinned
# dependency set has not changed since.
PREVIOUS_RELEASE = "156d50896008ca21e80c369ee81cb144050ecc6d"
PREVIOUS_WIRE_VERSION = 2


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

    def completed_checkpoints(self, job_id: str) -> int:
        return self.call(f"/jobs/{job_id}/checkpoints")["counts"]["completed"]

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


def states_of_wire_version(savepoint: Path, version: int) -> int:
    """How many journey states in the savepoint's files begin with that wire version's meta."""
    marker = b'{"v":%d,' % version
    return sum(path.read_bytes().count(marker) for path in savepoint.iterdir() if path.is_file())


def test_a_savepoint_of_the_previous_release_restores_into_this_one_and_the_run_ends_as_if_uninterrupted(tmp_path):
    assert WIRE_VERSION == PREVIOUS_WIRE_VERSION + 1, "a new wire version: move PREVIOUS_RELEASE to the last release before it"
    release = export_release(PREVIOUS_RELEASE, tmp_path / "previous-release")
    signals, out = tmp_path / "signals.jsonl", tmp_path / "out"
    write_simulation(SimulationSpec(customers=800, days=20, seed=29, late_rate=0.0), signals)
    rest_port = free_port()

    # No summary from the previous release: its run is stopped halfway, and would not balance.
    arguments = job_arguments(signals, out, "-D", f"rest.port={rest_port}", "-D", "execution.checkpointing.interval=1s")
    summary_at = arguments.index("--summary")
    previous = start_release_driver(release, arguments[:summary_at] + arguments[summary_at + 2:])
    rest = JobRest(rest_port)
    try:
        job_id = rest.running_job(previous)
        while rest.completed_checkpoints(job_id) < 1:
            assert previous.poll() is None, "the job ended before its first checkpoint:\n" + previous.stdout.read()[-3000:]
            time.sleep(0.1)
        savepoint = rest.stop_with_savepoint(job_id, tmp_path / "savepoints")
        assert previous.wait(timeout=120) == 0, previous.stdout.read()[-3000:]
    finally:
        if previous.poll() is None:
            previous.kill()
    assert states_of_wire_version(savepoint, PREVIOUS_WIRE_VERSION) > 0, "the savepoint holds no version-2 state"

    restored = start_driver(job_arguments(signals, out, "--restore", str(savepoint)))
    assert restored.wait(timeout=400) == 0, restored.stdout.read()[-3000:]

    summary = json.loads((out / "summary.json").read_text())
    produced, expected = job_output(out), reference_output(signals, summary["end_clock"])
    assert summary["balanced"] is True
    assert canonical(produced["journeys"]) == canonical(expected.journey_records)
    assert canonical(produced["decisions"]) == canonical(expected.decisions)
    assert canonical(produced["dead-letter"]) == canonical(expected.dead_letters)
