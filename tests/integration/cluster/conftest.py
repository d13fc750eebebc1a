"""A standalone Flink cluster for the tests of this folder: its own configuration (the project's,
on free ports) and its own PID, log and lib folders, started by scripts/cluster.sh."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from scripts.local_broker import free_port
from tests.harness import ROOT


class Cluster:
    def __init__(self, environment: dict, pid_dir: Path, rest: str, metric_ports: range):
        self.environment = environment
        self.pid_dir = pid_dir
        self.rest = rest
        self.metric_ports = metric_ports

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

    def cancel(self, job_id: str) -> None:
        request = urllib.request.Request(f"http://{self.rest}/jobs/{job_id}?mode=cancel", method="PATCH")
        urllib.request.urlopen(request, timeout=5).close()

    def scrape(self) -> str:
        """What Prometheus would scrape from every process of the cluster (the JobManager and the
        TaskManagers each serve one port of the reporter's range)."""
        pages = []
        for port in self.metric_ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    pages.append(response.read().decode())
            except OSError:
                continue
        return "\n".join(pages)


def free_port_range(size: int) -> range:
    for _ in range(50):
        start = free_port()
        ports = range(start, start + size)
        if ports.stop < 65536 and all(_is_free(port) for port in ports):
            return ports
    raise RuntimeError(f"no {size} free consecutive ports on loopback")


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Its own configuration (the project's, on free ports) and its own PID, log and lib folders,
    so it neither meets nor disturbs a cluster started with `make cluster-up`, nor the cluster of
    another test module."""
    base = tmp_path_factory.mktemp("cluster")
    conf = base / "conf"
    shutil.copytree(ROOT / "flink-conf", conf)
    rest_port, rpc_port, metric_ports = free_port(), free_port(), free_port_range(4)
    text = (conf / "config.yaml").read_text()
    text = re.sub(r"(?m)^rest\.port: .*$", f"rest.port: {rest_port}", text)
    text = re.sub(r"(?m)^jobmanager\.rpc\.port: .*$", f"jobmanager.rpc.port: {rpc_port}", text)
    text = re.sub(r"(?m)^metrics\.reporter\.prom\.port: .*$",
                  f"metrics.reporter.prom.port: {metric_ports.start}-{metric_ports.stop - 1}", text)
    (conf / "config.yaml").write_text(text)
    environment = os.environ | {"FLINK_CONF_DIR": str(conf), "FLINK_PID_DIR": str(base / "pids"),
                                "FLINK_LOG_DIR": str(base / "log"), "FLINK_LIB_DIR": str(base / "lib")}
    running = Cluster(environment, base / "pids", f"localhost:{rest_port}", metric_ports)
    started = running.script("up", timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    yield running
    running.script("down", timeout=60)
