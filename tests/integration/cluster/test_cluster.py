"""The journey job on a real standalone Flink cluster (a JobManager and a TaskManager JVM), submitted
with `flink run -py`: Kafka delivery, a TaskManager killed mid-stream, and the job's metrics as
Prometheus scrapes them from the cluster's reporter."""
from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from journeys.ontology import packaged_ontology
from journeys.outputs import LogKind
from journeys.settings import packaged_settings
from pipelines.kafka.tools import create_topics, produce_signals, read_topic
from pipelines.reference import ReferenceRun
from pipelines.reports.summary import summarize
from pipelines.tools.files import read_lines
from pipelines.tools.simulate import SimulationSpec, write_simulation
from tests.harness import kafka_arguments

pytestmark = pytest.mark.flink


def reference_decision_ids(signals: Path) -> set[str]:
    settings = packaged_settings()
    run = ReferenceRun(packaged_ontology(), settings).feed(read_lines(signals))
    run.end_clock = run.intake.latest - settings.max_out_of_orderness_ms - 1
    return {d["decision_id"] for d in run.finish().decisions}


def decision_ids(bootstrap: str, topic: str) -> set[str]:
    return {orjson.loads(value)["decision_id"] for _, value in read_topic(bootstrap, topic)}


@pytest.mark.parametrize("slot_sharing", ["shared", "per-role"])
def test_a_kafka_job_submitted_to_the_cluster_delivers_its_decisions(slot_sharing, cluster, kafka_broker, fresh_topics,
                                                                     tmp_path):
    signals = tmp_path / "signals.jsonl"
    write_simulation(SimulationSpec(customers=200, days=10, seed=41, late_rate=0.0), signals)
    bootstrap = kafka_broker.bootstrap_servers
    report = produce_signals(bootstrap, fresh_topics["signals"], read_lines(signals))
    job_name = f"journey-job-{slot_sharing}"
    submitted = cluster.submit(kafka_arguments(bootstrap, fresh_topics, report.stop_offsets(), tmp_path / "summary.json",
                                               "--checkpoints", str(tmp_path / "checkpoints"),
                                               "--slot-sharing", slot_sharing, "--job-name", job_name))
    output, _ = submitted.communicate(timeout=300)
    assert submitted.returncode == 0, output[-4000:]
    assert decision_ids(bootstrap, fresh_topics["decisions"]) == reference_decision_ids(signals)
    [job] = [j for j in cluster.get("/jobs/overview")["jobs"] if j["name"] == job_name]
    assert job["state"] == "FINISHED"


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


def journeys_samples(scraped: str, name: str, job_name: str) -> list:
    """The samples of one of the job's metrics (README.md, "Metrics") in a scrape."""
    wanted = re.compile(rf"^flink_taskmanager_job_task_operator_journeys_(?:\w+_)?{name}$")
    return [sample for family in text_string_to_metric_families(scraped) for sample in family.samples
            if wanted.match(sample.name) and sample.labels.get("job_name") == job_name]


def total(scraped: str, name: str, job_name: str) -> float:
    return sum(sample.value for sample in journeys_samples(scraped, name, job_name))


def by_labels(scraped: str, name: str, job_name: str, *labels: str) -> dict:
    found: Counter = Counter()
    for sample in journeys_samples(scraped, name, job_name):
        found[tuple(sample.labels[label] for label in labels)] += int(sample.value)
    return dict(found)


def test_the_jobs_counters_and_latencies_are_on_the_prometheus_endpoint_and_add_up(cluster, kafka_broker,
                                                                                    fresh_topics, tmp_path):
    signals = tmp_path / "signals.jsonl"
    # Malformed, duplicate and late signals too: lateness is judged per journey (docs/time.md), so
    # the counts are exact.
    write_simulation(SimulationSpec(customers=300, days=10, seed=47, late_rate=0.01), signals)
    lines = list(read_lines(signals))
    reference = ReferenceRun(packaged_ontology(), packaged_settings()).feed(lines)  # not finished: the stream goes on
    expected = summarize(reference.lines_in, reference.journey_records, reference.decisions, reference.dead_letters)
    bootstrap, job_name = kafka_broker.bootstrap_servers, "journey_job_metrics"
    in_order = fresh_topics["signals"] + "-in-order"
    create_topics(bootstrap, {in_order: 1})
    produce_signals(bootstrap, in_order, lines)
    # Unbounded (no stop offsets): every operator keeps running, so all the job's metrics stay registered.
    submitted = cluster.submit([
        "--signals", f"kafka://{bootstrap}/{in_order}",
        *(argument for output in ("decisions", "journeys", "late", "dead-letter")
          for argument in (f"--{output}", f"kafka://{bootstrap}/{fresh_topics[output]}")),
        "--delivery-guarantee", "at-least-once", "--job-name", job_name, "--checkpoints", str(tmp_path / "checkpoints")])
    decided = len(reference.decisions)
    try:
        deadline = time.time() + 300
        while True:
            scraped = cluster.scrape()
            if total(scraped, "signals_in", job_name) == len(lines) and \
                    sum(by_labels(scraped, "decisions", job_name, "agent", "action").values()) >= decided:
                break
            assert submitted.poll() is None, submitted.stdout.read()[-4000:]
            assert time.time() < deadline, "the job's counters did not reach the input's counts within 5 minutes"
            time.sleep(1)
        time.sleep(2)  # nothing more should come: the last scrape must still say the same
        scraped = cluster.scrape()
    finally:
        for job in cluster.get("/jobs/overview")["jobs"]:
            if job["name"] == job_name and job["state"] == "RUNNING":
                cluster.cancel(job["jid"])
        submitted.communicate(timeout=120)

    accepted, rejected = total(scraped, "signals_accepted", job_name), total(scraped, "signals_rejected", job_name)
    deduplicated = total(scraped, "signals_deduplicated", job_name)
    assert (accepted, rejected, deduplicated) == (expected["accepted"], expected["rejected"], expected["duplicates"])
    assert rejected > 0 and deduplicated > 0
    assert total(scraped, "signals_in", job_name) == accepted + rejected + deduplicated  # nothing waits
    assert by_labels(scraped, "signals_rejected", job_name, "reason") == {
        (reason,): count for reason, count in expected["rejected_by_reason"].items()}
    assert total(scraped, "signals_late", job_name) == expected["late"]
    assert by_labels(scraped, "decisions", job_name, "agent", "action") == dict(
        Counter((d["agent"], d["action"]) for d in reference.decisions))
    assert by_labels(scraped, "suppressions", job_name, "rule") == dict(
        Counter((rule,) for d in reference.decision_log for rule in d["suppressions"]))
    assert total(scraped, "decisions_control_group", job_name) == sum(d["control"] for d in reference.decision_log)
    assert {s.value for s in journeys_samples(scraped, "policy_version", job_name)} == {1.0}
    # Latencies: Flink histograms, reported as summaries with quantiles over the latest samples.
    for histogram in ("time_to_map_ms", "decision_latency_ms"):
        counts = journeys_samples(scraped, f"{histogram}_count", job_name)
        medians = [s.value for s in journeys_samples(scraped, histogram, job_name) if s.labels.get("quantile") == "0.5"]
        assert sum(s.value for s in counts) > 0 and medians, histogram
        assert all(0 <= median < 10_000 for median in medians), (histogram, medians)  # no signal waits
    applied = sum(record["kind"] == LogKind.SIGNAL for record in reference.journey_records)
    assert total(scraped, "time_to_map_ms_count", job_name) == applied
