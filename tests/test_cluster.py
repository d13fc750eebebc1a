"""The journey job on a real standalone Flink cluster (a JobManager and a TaskManager JVM), submitted
with `flink run -py`, reading and writing Kafka: delivery, and a TaskManager killed mid-stream."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from journeys.inputs import read_lines
from journeys.ontology import load_ontology
from journeys.reference import ReferenceRun
from journeys.settings import load_settings
from journeys.simulate import SimulationSpec, write_simulation
from pipelines.kafka_tools import produce_signals, read_topic
from pipelines.local_broker import free_port
from tests.test_kafka import kafka_arguments

pytestmark = pytest.mark.flink
ROOT = Path(__file__).resolve().parents[1]


class Cluster:
    def __init__(self, environment: dict, pid_dir: Path, rest: str):
        self.environment = environment
        self.pid_dir = pid_dir
        self.rest = rest

    def script(self, *arguments: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([str(ROOT / "scripts" / "cluster.sh"), *arguments], env=self.environment,
                              capture_output=True, text=True, **kwargs)

    def submit(self, arguments: list[str]) -> subprocess.Popen:
        return subprocess.Popen([str(ROOT / "scripts" / "cluster.sh"), "submit", *arguments], env=self.environment,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def taskmanager_pids(self) -> list[int]:
        return [int(p) for f in self.pid_dir.glob("*taskexecutor.pid") for p in f.read_text().split()]

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://{self.rest}{path}", timeout=5) as response:
            return json.load(response)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Its own configuration (the project's, on free ports) and its own PID, log and lib folders,
    so it neither meets nor disturbs a cluster started with `make cluster-up`."""
    base = tmp_path_factory.mktemp("cluster")
    conf = base / "conf"
    shutil.copytree(ROOT / "flink-conf", conf)
    rest_port, rpc_port = free_port(), free_port()
    text = (conf / "config.yaml").read_text()
    text = re.sub(r"(?m)^rest\.port: .*$", f"rest.port: {rest_port}", text)
    text = re.sub(r"(?m)^jobmanager\.rpc\.port: .*$", f"jobmanager.rpc.port: {rpc_port}", text)
    (conf / "config.yaml").write_text(text)
    environment = os.environ | {"FLINK_CONF_DIR": str(conf), "FLINK_PID_DIR": str(base / "pids"),
                                "FLINK_LOG_DIR": str(base / "log"), "FLINK_LIB_DIR": str(base / "lib")}
    running = Cluster(environment, base / "pids", f"localhost:{rest_port}")
    started = running.script("up", timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    yield running
    running.script("down", timeout=60)


def reference_decision_ids(signals: Path) -> set[str]:
    settings = load_settings()
    run = ReferenceRun(load_ontology(), settings).feed(read_lines(signals))
    run.end_clock = run.intake.latest - settings.max_out_of_orderness_ms - 1
    return {d["decision_id"] for d in run.finish().decisions}


def decision_ids(bootstrap: str, topic: str) -> set[str]:
    return {orjson.loads(value)["decision_id"] for _, value in read_topic(bootstrap, topic)}


def test_a_kafka_job_submitted_to_the_cluster_delivers_its_decisions(cluster, kafka_broker, fresh_topics, tmp_path):
    signals = tmp_path / "signals.jsonl"
    write_simulation(SimulationSpec(customers=200, days=10, seed=41, late_rate=0.0), signals)
    bootstrap = kafka_broker.bootstrap_servers
    report = produce_signals(bootstrap, fresh_topics["signals"], read_lines(signals))
    submitted = cluster.submit(kafka_arguments(bootstrap, fresh_topics, report.stop_offsets(), tmp_path / "summary.json",
                                               "--checkpoints", str(tmp_path / "checkpoints")))
    output, _ = submitted.communicate(timeout=300)
    assert submitted.returncode == 0, output[-4000:]
    assert decision_ids(bootstrap, fresh_topics["decisions"]) == reference_decision_ids(signals)
    [job] = [j for j in cluster.get("/jobs/overview")["jobs"] if j["state"] == "FINISHED"][-1:]
    assert job["name"] == "journey-job"


def test_a_taskmanager_killed_mid_stream_loses_no_decision(cluster, kafka_broker, fresh_topics, tmp_path):
    signals = tmp_path / "signals.jsonl"
    write_simulation(SimulationSpec(customers=1500, days=30, seed=43, late_rate=0.0), signals)
    bootstrap = kafka_broker.bootstrap_servers
    report = produce_signals(bootstrap, fresh_topics["signals"], read_lines(signals))
    checkpoints = tmp_path / "checkpoints"
    # No run summary: after the failover, Tansu shows read_committed readers the records of the
    # aborted transactions too, and the summary would count them (Apache Kafka hides them).
    submitted = cluster.submit(kafka_arguments(bootstrap, fresh_topics, report.stop_offsets(), None,
                                               "--checkpoints", str(checkpoints), "--job-name", "journey-job-killed",
                                               "-D", "execution.checkpointing.interval=1s"))
    deadline = time.time() + 120
    while not list(checkpoints.glob("*/chk-*/_metadata")):
        assert submitted.poll() is None, "the job ended before its first checkpoint:\n" + submitted.stdout.read()[-4000:]
        assert time.time() < deadline, "no checkpoint completed within two minutes"
        time.sleep(0.1)
    victims = cluster.taskmanager_pids()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    replacement = cluster.script("add-taskmanager", timeout=120)
    assert replacement.returncode == 0, replacement.stderr

    output, _ = submitted.communicate(timeout=400)
    assert submitted.returncode == 0, output[-4000:]
    [job] = [j for j in cluster.get("/jobs/overview")["jobs"] if j["name"] == "journey-job-killed"]
    history = cluster.get(f"/jobs/{job['jid']}/exceptions")
    assert history.get("exceptionHistory", {}).get("entries"), "the job never failed over: the kill came too late"
    assert decision_ids(bootstrap, fresh_topics["decisions"]) == reference_decision_ids(signals)
