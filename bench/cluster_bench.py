"""The job on a standalone cluster of two one-slot TaskManagers, for `make bench`: the journey
roles sharing one TaskManager (and its one Python interpreter), against each role in a
TaskManager of its own (`--slot-sharing per-role`). The cluster has its own configuration (the
project's, on free ports, one slot per TaskManager) and its own PID, log and lib folders."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("shared", "per-role")


def measure_cluster(work: Path, signals: Path, runs: int, report) -> dict[str, list[dict]]:
    """Each variant `runs` times, interleaved; report(variant, run) is told of each run."""
    base = work / "cluster"
    shutil.rmtree(base, ignore_errors=True)
    environment = _configured(base)
    _script(environment, "up")
    try:
        _script(environment, "add-taskmanager")
        measured: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
        for attempt in range(runs):
            for variant in VARIANTS:
                measured[variant].append(_run(environment, base / f"{variant}-{attempt}", signals, variant))
                report(variant, measured[variant][-1])
        return measured
    finally:
        _script(environment, "down")


def _configured(base: Path) -> dict:
    from scripts.local_broker import free_port

    conf = base / "conf"
    shutil.copytree(ROOT / "flink-conf", conf)
    metric_port = free_port()
    text = (conf / "config.yaml").read_text()
    for key, value in (("rest.port", free_port()), ("jobmanager.rpc.port", free_port()),
                       ("taskmanager.numberOfTaskSlots", 1), ("metrics.reporter.prom.port", f"{metric_port}-{metric_port + 3}")):
        text, found = re.subn(rf"(?m)^{re.escape(key)}: .*$", f"{key}: {value}", text)
        if not found:
            raise SystemExit(f"flink-conf/config.yaml has no {key}, which the cluster figure sets")
    (conf / "config.yaml").write_text(text)
    return os.environ | {"FLINK_CONF_DIR": str(conf), "FLINK_PID_DIR": str(base / "pids"),
                         "FLINK_LOG_DIR": str(base / "log"), "FLINK_LIB_DIR": str(base / "lib")}


def _script(environment: dict, *arguments: str) -> None:
    completed = subprocess.run([str(ROOT / "scripts" / "cluster.sh"), *arguments], env=environment,
                               capture_output=True, text=True, timeout=180)
    if completed.returncode != 0:
        raise SystemExit(f"scripts/cluster.sh {' '.join(arguments)} failed:\n{completed.stdout}\n{completed.stderr}")


def _run(environment: dict, out: Path, signals: Path, variant: str) -> dict:
    command = [str(ROOT / "scripts" / "cluster.sh"), "submit", "--signals", signals.as_uri(),
               "--decisions", (out / "decisions").as_uri(), "--journeys", (out / "journeys").as_uri(),
               "--dead-letter", (out / "dead-letter").as_uri(), "--summary", str(out / "summary.json"),
               "--checkpoints", str(out / "checkpoints"), "--slot-sharing", variant,
               "--job-name", f"journey-job-{variant}"]
    started = time.time()
    completed = subprocess.run(command, env=environment, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"the job on the cluster failed ({variant}):\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    runtime = summary["runtime"]
    shutil.rmtree(out / "journeys", ignore_errors=True)  # large, and not needed after the summary
    return {"variant": variant, "events": summary["events_in"], "job_seconds": runtime["job_seconds"],
            "wall_seconds": round(time.time() - started, 2),
            "events_per_second": summary["events_in"] / runtime["job_seconds"],
            "latency_p50_ms": summary["decision_latency_ms"]["p50"], "latency_p99_ms": summary["decision_latency_ms"]["p99"],
            "balanced": summary["balanced"]}
