"""The journey job from Kafka to Kafka on a real Kafka-protocol broker (Tansu), on a Flink MiniCluster.

Tansu shows records of aborted transactions to read_committed consumers and reports stale LATEST
offsets, so these tests compare sets of decision ids, and bound their reads by the offsets the
producer reported."""
from __future__ import annotations

import base64
import json
import time

import orjson
import pytest

from jobs.journey_job import main as run_job
from journeys.contract import DECISION_SCHEMA, decode_record_avro
from pipelines.kafka.settings import KafkaSettings, load_properties_file
from pipelines.kafka.tools import create_topics, librdkafka_properties, produce_signals, read_topic
from pipelines.reports.summary import read_records
from pipelines.tools.files import read_lines
from pipelines.tools.simulate import SimulationSpec, write_simulation
from tests.harness import job_arguments, kafka_arguments

pytestmark = pytest.mark.flink


@pytest.fixture(scope="module")
def signals_file(tmp_path_factory):
    # No signals beyond the watermark bound: from Kafka, lateness follows the journey's clock
    # behind per-partition watermarks, from a file it follows the file's order (README).
    path = tmp_path_factory.mktemp("kafka-input") / "signals.jsonl"
    write_simulation(SimulationSpec(customers=250, days=15, seed=33, late_rate=0.0), path)
    return path


@pytest.fixture(scope="module")
def file_run(signals_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("file-run")
    assert run_job(job_arguments(signals_file, out)) == 0
    return out


def topic_values(bootstrap, topic):
    return [value for _, value in read_topic(bootstrap, topic)]


def test_kafka_to_kafka_decides_exactly_what_a_file_run_decides(kafka_broker, fresh_topics, signals_file, file_run, tmp_path):
    bootstrap = kafka_broker.bootstrap_servers
    report = produce_signals(bootstrap, fresh_topics["signals"], read_lines(signals_file))
    summary_path = tmp_path / "summary.json"
    assert run_job(kafka_arguments(bootstrap, fresh_topics, report.stop_offsets(), summary_path)) == 0

    keyed = list(read_topic(bootstrap, fresh_topics["decisions"]))
    decisions = [orjson.loads(value) for _, value in keyed]
    expected = list(read_records(file_run / "decisions"))
    assert {d["decision_id"] for d in decisions} == {d["decision_id"] for d in expected}
    assert len({d["decision_id"] for d in decisions}) == len(expected)
    assert all(key.decode() == decision["journey"] for (key, _), decision in zip(keyed, decisions))
    summary = json.loads(summary_path.read_text())
    assert summary["balanced"] is True and summary["events_in"] == report.records


def test_every_malformed_signal_reaches_the_dead_letter_topic_with_its_reason(kafka_broker, fresh_topics, signals_file,
                                                                             file_run, tmp_path):
    bootstrap = kafka_broker.bootstrap_servers
    report = produce_signals(bootstrap, fresh_topics["signals"], read_lines(signals_file))
    assert run_job(kafka_arguments(bootstrap, fresh_topics, report.stop_offsets(), tmp_path / "s.json")) == 0
    dead = [orjson.loads(value) for value in topic_values(bootstrap, fresh_topics["dead-letter"])]
    expected = list(read_records(file_run / "dead-letter"))
    assert dead and sorted((d["reason"], d["original"]) for d in dead) == sorted((d["reason"], d["original"]) for d in expected)
    produced = set(read_lines(signals_file))
    assert all(base64.b64decode(d["original"]) in produced for d in dead)


def test_avro_signals_in_and_avro_decisions_out(kafka_broker, fresh_topics, signals_file, file_run, tmp_path):
    bootstrap = kafka_broker.bootstrap_servers
    report = produce_signals(bootstrap, fresh_topics["signals"], read_lines(signals_file), encoding="avro")
    assert run_job(kafka_arguments(bootstrap, fresh_topics, report.stop_offsets(), tmp_path / "s.json", fmt="avro")) == 0
    decisions = [decode_record_avro(value, DECISION_SCHEMA) for value in topic_values(bootstrap, fresh_topics["decisions"])]
    assert {d["decision_id"] for d in decisions} == {d["decision_id"] for d in read_records(file_run / "decisions")}
    dead = [decode_record_avro(value, "dead_letter.v1") for value in topic_values(bootstrap, fresh_topics["dead-letter"])]
    assert dead and {d["reason"] for d in dead} >= {"invalid_avro"}


def test_at_least_once_delivery_keeps_every_decision(kafka_broker, fresh_topics, signals_file, file_run, tmp_path):
    bootstrap = kafka_broker.bootstrap_servers
    report = produce_signals(bootstrap, fresh_topics["signals"], read_lines(signals_file))
    arguments = kafka_arguments(bootstrap, fresh_topics, report.stop_offsets(), tmp_path / "s.json",
                                "--delivery-guarantee", "at-least-once")
    assert run_job(arguments) == 0
    ids = {orjson.loads(value)["decision_id"] for value in topic_values(bootstrap, fresh_topics["decisions"])}
    assert ids == {d["decision_id"] for d in read_records(file_run / "decisions")}


def test_every_output_on_kafka_carries_what_the_same_output_in_files_carries(kafka_broker, fresh_topics, signals_file,
                                                                             tmp_path):
    bootstrap = kafka_broker.bootstrap_servers
    create_topics(bootstrap, {f"{fresh_topics['signals']}-{name}": 2 for name in ("decision-log", "feature-rows")})
    extra = {name: f"{fresh_topics['signals']}-{name}" for name in ("decision-log", "feature-rows")}
    files = tmp_path / "files"
    assert run_job(job_arguments(signals_file, files, "--late", (files / "late").as_uri(),
                                 "--decision-log", (files / "decision-log").as_uri(),
                                 "--feature-rows", (files / "feature-rows").as_uri())) == 0
    report = produce_signals(bootstrap, fresh_topics["signals"], read_lines(signals_file))
    assert run_job(kafka_arguments(bootstrap, fresh_topics, report.stop_offsets(), tmp_path / "s.json",
                                   *(option for name, topic in extra.items()
                                     for option in (f"--{name}", f"kafka://{bootstrap}/{topic}")))) == 0

    def on_kafka(topic):
        return [orjson.loads(value) for value in topic_values(bootstrap, topic)]

    def ids(records, field):
        return sorted(record[field] for record in records)

    assert ids(on_kafka(extra["decision-log"]), "decision_id") == ids(read_records(files / "decision-log"), "decision_id")
    assert len(on_kafka(extra["feature-rows"])) == len(list(read_records(files / "feature-rows"))) > 0
    assert ids(on_kafka(fresh_topics["decisions"]), "decision_id") == ids(read_records(files / "decisions"), "decision_id")
    assert len(on_kafka(fresh_topics["journeys"])) == len(list(read_records(files / "journeys")))
    assert len(on_kafka(fresh_topics["dead-letter"])) == len(list(read_records(files / "dead-letter"))) > 0


@pytest.mark.parametrize("case, change, message", [
    ("unreachable broker", {"broker": "127.0.0.1:1"}, "cannot reach the Kafka broker at 127.0.0.1:1"),
    ("missing topic", {"signals": "no-such-topic"}, "Kafka topic 'no-such-topic' does not exist"),
    ("missing jars", {"extra": ["--jars", "/nowhere/flink-connector-kafka.jar"]}, "Kafka connector jar not found: /nowhere"),
    ("wrong security settings", {"extra": ["--kafka-property", "security.protocol=SSL"]}, "with the given client properties"),
    ("short transactions", {"extra": ["--kafka-property", "transaction.timeout.ms=5000"]}, "transaction.timeout.ms is 5000 ms"),
])
def test_bad_kafka_configuration_fails_fast_and_names_the_problem(kafka_broker, fresh_topics, tmp_path, capsys,
                                                                   case, change, message):
    broker = change.get("broker", kafka_broker.bootstrap_servers)
    topics = fresh_topics | {"signals": change.get("signals", fresh_topics["signals"])}
    started = time.time()
    assert run_job(kafka_arguments(broker, topics, "0:1", tmp_path / "s.json", *change.get("extra", []))) == 2
    assert message in capsys.readouterr().err
    assert time.time() - started < 30


def test_client_properties_come_from_a_file_with_environment_values_and_from_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv("KAFKA_PASSWORD", "s3cret")
    path = tmp_path / "client.properties"
    path.write_text("# production cluster\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
                    'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required '
                    'username="journeys" password="${KAFKA_PASSWORD}";\n'
                    "ssl.truststore.type=PEM\nssl.truststore.location=/etc/kafka/ca.pem\n")
    properties = load_properties_file(path)
    assert properties["sasl.jaas.config"].endswith('password="s3cret";')
    settings = KafkaSettings(properties | {"transaction.timeout.ms": "900000"})
    assert "transaction.timeout.ms" not in settings.client_properties()
    assert settings.transaction_timeout_ms == 900000
    assert librdkafka_properties(properties) == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                                                 "sasl.username": "journeys", "sasl.password": "s3cret",
                                                 "ssl.ca.location": "/etc/kafka/ca.pem"}
