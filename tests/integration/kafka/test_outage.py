"""A Kafka broker outage in the middle of a run, Kafka to Kafka (docs/kafka.md, "A broker outage").

Tansu keeps everything in memory: stopped, it forgets its topics, their records, its producer ids
and its transactions. So this test plays a broker that comes back with its log. The job is frozen
(SIGSTOP on the driver and its JVM) twice, so that it can see neither the moment between: once
while the decisions the old broker holds are read (the job's sink writes nothing meanwhile), and
once while Tansu starts again on the same port, the topics are made again and the same signals
are written to the same partitions, at the same offsets. Whatever the job has not yet read or
written waits in its consumer and producers, as it would for a broker that kept its log.

The sinks are at-least-once with plain (not idempotent) producers: a transactional or idempotent
producer's id dies with Tansu's memory, and the broker that comes back refuses it; docs/kafka.md
says what that does to an exactly-once run, and what this test cannot prove."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from contextlib import contextmanager

import orjson
import pytest

from journeys.ontology import packaged_ontology
from journeys.settings import packaged_settings
from journeys.timers import end_clock
from pipelines.kafka.tools import create_topics, produce_signals, read_topic
from pipelines.reference import ReferenceRun
from pipelines.tools.files import read_lines
from pipelines.tools.simulate import SimulationSpec, write_simulation
from scripts.local_broker import LocalBroker, free_port
from tests.harness import kafka_arguments, start_driver, wait_for_checkpoints

pytestmark = pytest.mark.flink

PARTITIONS = {"signals": 4, "decisions": 4, "journeys": 4, "late": 1, "dead-letter": 1}
# Kept well inside the producers' delivery.timeout.ms (120 s): longer, and the sinks give up,
# which a local run does not survive (docs/kafka.md, "A broker outage").
OUTAGE_S = 20
NOTICE_WITHIN_S = 15  # the watch probes every 2 s, and waits 3 s for an answer


class BrokerOnOnePort:
    """A Tansu broker of this test alone, which starts again on the port it first took."""

    def __init__(self, directory):
        self.tansu = LocalBroker(directory)
        self.port = free_port()

    def start(self) -> "BrokerOnOnePort":
        self.tansu.start(port=self.port)
        return self

    def stop(self) -> None:
        self.tansu.stop()

    @property
    def bootstrap_servers(self) -> str:
        return self.tansu.bootstrap_servers


@pytest.fixture
def broker(tmp_path):
    broker = BrokerOnOnePort(tmp_path / "tansu").start()
    yield broker
    broker.stop()


class DriverOutput:
    """The driver's output as it comes, read in a thread of its own."""

    def __init__(self, process: subprocess.Popen):
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process) -> None:
        for line in process.stdout:
            self.lines.append((time.time(), line.rstrip("\n")))

    def first(self, text: str, after: float = 0.0, timeout: float = 60.0) -> float | None:
        """When a line holding the text came (after a time), waiting for it at most timeout s."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for at, line in list(self.lines):
                if at >= after and text in line:
                    return at
            time.sleep(0.1)
        return None

    def said(self, text: str) -> list[str]:
        return [line for _, line in self.lines if text in line]

    def tail(self, lines: int = 60) -> str:
        return "\n".join(line for _, line in self.lines[-lines:])


@contextmanager
def frozen(process: subprocess.Popen):
    """The driver and its JVM stopped for a while: the job reads, writes and probes nothing."""
    os.killpg(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGCONT)


def records_by_partition(bootstrap: str, topic: str, end_offsets: dict[int, int]) -> dict[int, list[tuple]]:
    """(key, value, timestamp) of every record, partition by partition, in offset order."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"copy-{time.time_ns()}",
                         "enable.auto.commit": False, "log_level": 0})
    consumer.assign([TopicPartition(topic, partition, 0) for partition in end_offsets])
    records = {partition: [] for partition in end_offsets}
    remaining = sum(end_offsets.values())
    deadline = time.time() + 60
    while remaining and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            records[message.partition()].append((message.key(), message.value(), message.timestamp()[1]))
            remaining -= 1
    consumer.close()
    assert not remaining, f"{remaining} records of {topic} could not be read back"
    return records


def write_again(bootstrap: str, topic: str, records: dict[int, list[tuple]]) -> dict[int, int]:
    """The same records to the same partitions, in the same order; the end offsets written."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20, "log_level": 0})
    ends: dict[int, int] = {}

    def delivered(error, message):
        assert error is None, error
        ends[message.partition()] = max(ends.get(message.partition(), 0), message.offset() + 1)

    for partition, items in records.items():
        for key, value, timestamp in items:
            while True:
                try:
                    producer.produce(topic, value, key, partition=partition, timestamp=timestamp, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
    producer.flush(60)
    return ends


def decision_ids(bootstrap: str, topic: str) -> list[str]:
    return [orjson.loads(value)["decision_id"] for _, value in read_topic(bootstrap, topic)]


def reference_decision_ids(signals) -> set[str]:
    settings = packaged_settings()
    run = ReferenceRun(packaged_ontology(), settings).feed(read_lines(signals))
    run.end_clock = end_clock(run.intake.latest, settings.max_out_of_orderness_ms)
    return {d["decision_id"] for d in run.finish().decisions}


def test_a_broker_outage_mid_run_is_said_ridden_out_and_loses_no_decision(broker, tmp_path, monkeypatch):
    monkeypatch.setenv("FLINK_LOG_DIR", str(tmp_path / "log"))  # the job's log of this test alone
    signals = tmp_path / "signals.jsonl"
    write_simulation(SimulationSpec(customers=1500, days=30, seed=43, late_rate=0.0), signals)
    bootstrap = broker.bootstrap_servers
    topics = {name: f"outage-{name}" for name in PARTITIONS}

    def make_topics():
        create_topics(bootstrap, {topics[name]: count for name, count in PARTITIONS.items()})

    make_topics()
    report = produce_signals(bootstrap, topics["signals"], read_lines(signals))
    the_signals = records_by_partition(bootstrap, topics["signals"], report.end_offsets)
    checkpoints = tmp_path / "checkpoints"
    driver = start_driver(kafka_arguments(bootstrap, topics, report.stop_offsets(), None, "--checkpoints", str(checkpoints),
                                          "--delivery-guarantee", "at-least-once",
                                          "--kafka-property", "enable.idempotence=false"))
    output = DriverOutput(driver)
    try:
        wait_for_checkpoints(checkpoints, 2, driver, timeout=240)
        with frozen(driver):
            decided_before = decision_ids(bootstrap, topics["decisions"])
            broker.stop()
        stopped = time.time()

        noticed = output.first(f"the Kafka broker at {bootstrap} does not answer", after=stopped, timeout=NOTICE_WITHIN_S)
        assert noticed is not None, f"nothing said within {NOTICE_WITHIN_S} s of the broker stopping:\n{output.tail()}"
        time.sleep(max(0.0, stopped + OUTAGE_S - time.time()))
        assert driver.poll() is None, f"the job gave up during a {OUTAGE_S} s outage:\n{output.tail()}"

        with frozen(driver):
            broker.start()
            make_topics()
            assert write_again(bootstrap, topics["signals"], the_signals) == report.end_offsets
        back = time.time()
        assert output.first(f"the Kafka broker at {bootstrap} answers again", after=back, timeout=NOTICE_WITHIN_S), \
            output.tail()
        assert driver.wait(timeout=400) == 0, output.tail()
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)

    decided_after = decision_ids(bootstrap, topics["decisions"])
    expected = reference_decision_ids(signals)
    assert 0 < len(set(decided_before)) < len(expected), "the outage did not come in the middle of the run"
    assert set(decided_before) | set(decided_after) == expected
    # At-least-once may write a decision twice; it did not fail over, so nothing was replayed.
    assert output.said("journey_job: failure") == [], output.tail()
    print(f"noticed after {noticed - stopped:.1f} s; {len(decided_before)} decisions before the outage, "
          f"{len(decided_after)} after, {len(decided_before) + len(decided_after) - len(expected)} written twice",
          *output.said("journey_job: the Kafka broker"), sep="\n")
