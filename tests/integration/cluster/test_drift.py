"""Drift on a real cluster, read where an operator would read it: the propensity champion is
trained on one simulated population, then the job, submitted with `flink run -py`, scores another
population drawn the same way and one whose carts are five times dearer. Prometheus shows a PSI
gauge per feature for both; only the shifted one raises `drift_alerts`, for the cart value and the
score, and not for what did not move."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from journeys.drift import DEFAULT_THRESHOLD, SCORE
from journeys.scoring import PROPENSITY_MODEL
from models.registry import client_for, promote, register, train_and_log
from pipelines.kafka.tools import create_topics, produce_signals
from pipelines.tools.files import read_lines
from pipelines.tools.simulate import SimulationSpec, write_simulation
from tests.integration.cluster.test_cluster import journeys_samples, total

pytestmark = [pytest.mark.flink, pytest.mark.mlflow]
USUAL, DEARER = 1.0, 5.0


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> str:
    """conversion_propensity@champion, trained on a replay of the usual population."""
    folder = tmp_path_factory.mktemp("drift-registry")
    signals = folder / "signals.jsonl"
    write_simulation(SimulationSpec(customers=300, days=10, seed=61), signals)
    replayed = subprocess.run([str(Path(sys.executable).parent / "journeys"), "replay", "--input", str(signals),
                               "--output", str(folder / "replay"), "--emit", "training-set"], capture_output=True, text=True)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    uri = f"sqlite:///{folder / 'registry.db'}"
    client = client_for(uri)
    trained = train_and_log(PROPENSITY_MODEL, str(folder / "replay" / "training_set"), uri=uri)
    promote(client, PROPENSITY_MODEL, register(client, trained.run_id, PROPENSITY_MODEL), "champion")
    return uri


def psi_and_alerts(cluster, kafka_broker, registry: str, tmp_path: Path, cart_value_scale: float) -> tuple[dict, dict]:
    """(PSI in thousandths, alerts) by feature, summed over the job's tasks, once every signal is in."""
    signals = tmp_path / f"signals-{cart_value_scale}.jsonl"
    write_simulation(SimulationSpec(customers=300, days=10, seed=62, cart_value_scale=cart_value_scale), signals)
    lines = list(read_lines(signals))
    bootstrap, job_name = kafka_broker.bootstrap_servers, f"journey_job_drift_{int(cart_value_scale)}"
    topic = f"drift-signals-{int(cart_value_scale)}-{time.time_ns()}"
    create_topics(bootstrap, {topic: 1})
    produce_signals(bootstrap, topic, lines)
    outputs = [argument for output in ("decisions", "journeys", "dead-letter")
               for argument in (f"--{output}", str(tmp_path / f"{output}-{cart_value_scale}"))]
    submitted = cluster.submit(["--signals", f"kafka://{bootstrap}/{topic}", *outputs, "--model-registry", registry,
                                "--job-name", job_name, "--checkpoints", str(tmp_path / "checkpoints")])
    try:
        deadline, last, steady = time.time() + 300, None, 0
        while steady < 3:  # every signal read and the scored decisions no longer growing
            scraped = cluster.scrape()
            scored = total(scraped, "model_decisions_scored", job_name)
            ready = total(scraped, "signals_in", job_name) == len(lines) and journeys_samples(scraped, "drift_psi_milli", job_name)
            steady = steady + 1 if ready and scored == last else 0
            last = scored
            assert submitted.poll() is None, submitted.stdout.read()[-4000:]
            assert time.time() < deadline, "the job did not take in every signal within 5 minutes"
            time.sleep(1)
    finally:
        for job in cluster.get("/jobs/overview")["jobs"]:
            if job["name"] == job_name and job["state"] == "RUNNING":
                cluster.cancel(job["jid"])
        submitted.communicate(timeout=120)
    psi: dict = {}
    for sample in journeys_samples(scraped, "drift_psi_milli", job_name):
        psi[sample.labels["feature"]] = max(psi.get(sample.labels["feature"], 0), sample.value)
    alerts: dict = {}
    for sample in journeys_samples(scraped, "drift_alerts", job_name):
        alerts[sample.labels["feature"]] = alerts.get(sample.labels["feature"], 0) + sample.value
    return psi, alerts


def test_a_population_with_dearer_carts_raises_the_drift_alert_and_the_usual_one_does_not(cluster, kafka_broker,
                                                                                          registry, tmp_path):
    usual_psi, usual_alerts = psi_and_alerts(cluster, kafka_broker, registry, tmp_path, USUAL)
    dearer_psi, dearer_alerts = psi_and_alerts(cluster, kafka_broker, registry, tmp_path, DEARER)
    threshold = DEFAULT_THRESHOLD * 1000

    assert {"cart_value", "stage", SCORE, "event_type", "channel"} <= set(usual_psi) and max(usual_psi.values()) < threshold
    assert sum(usual_alerts.values()) == 0
    assert dearer_psi["cart_value"] > threshold and dearer_alerts.get("cart_value", 0) >= 1
    assert dearer_alerts.get(SCORE, 0) >= 1 and not dearer_alerts.get("stage")
