"""Live, Kafka to Kafka on a real broker: decisions leave as their signals arrive, and time moves
in a quiet stream (docs/time.md)."""
from __future__ import annotations

import os
import signal
import time

import orjson
import pytest

from journeys.outputs import LogKind
from pipelines.kafka.tools import produce_signals
from tests.harness import a_signal, line, start_driver

pytestmark = pytest.mark.flink

GAP_S = 3  # sessions.gap of this test's configuration


class Watch:
    """Every record of some topics, with the wall-clock time this consumer received it."""

    def __init__(self, bootstrap: str, topics: list[str]):
        from confluent_kafka import Consumer, TopicPartition

        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"live-watch-{time.time_ns()}",
                                  "enable.auto.commit": False, "isolation.level": "read_committed"})
        from pipelines.kafka.tools import check_topics

        partitions = check_topics(bootstrap, topics)
        self.consumer.assign([TopicPartition(topic, p, 0) for topic in topics for p in range(partitions[topic])])
        self.seen: list[tuple[float, str, dict]] = []

    def until(self, done, timeout: float, job) -> None:
        deadline = time.time() + timeout
        while not done(self.seen):
            assert job.poll() is None, job.stdout.read()[-3000:]
            assert time.time() < deadline, f"not there after {timeout} s; seen {len(self.seen)} records"
            message = self.consumer.poll(0.2)
            if message is not None and not message.error():
                self.seen.append((time.time(), message.topic(), orjson.loads(message.value())))

    def close(self) -> None:
        self.consumer.close()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_decisions_leave_at_once_and_after_the_burst_every_session_closes_in_silence(kafka_broker, fresh_topics,
                                                                                    tmp_path):
    bootstrap = kafka_broker.bootstrap_servers
    conf = tmp_path / "journeys.yaml"
    conf.write_text(f"sessions:\n  gap: {GAP_S}s\n")
    address = lambda name: f"kafka://{bootstrap}/{fresh_topics[name]}"  # noqa: E731
    job = start_driver(["--signals", address("signals"), "--decisions", address("decisions"),
                        "--journeys", address("journeys"), "--dead-letter", address("dead-letter"),
                        "--delivery-guarantee", "at-least-once", "--conf", str(conf),
                        "--transactional-id-prefix", fresh_topics["signals"], "--checkpoints", str(tmp_path / "checkpoints"),
                        "-D", "execution.checkpointing.interval=2s"])
    watch = Watch(bootstrap, [fresh_topics["journeys"], fresh_topics["decisions"]])
    try:
        # The job is up once a first signal comes back through it.
        produce_signals(bootstrap, fresh_topics["signals"], [line(a_signal("page_view", now_ms(), customer="warm-up"))])
        watch.until(lambda seen: any(r.get("journey") == "warm-up" for _, _, r in seen), 180, job)

        customers = [f"live-{n}" for n in range(20)]
        visitors = [f"anon-live-{n}" for n in range(10)]
        burst = []
        for round_ in range(3):
            for key in customers + visitors:
                who = {"visitor": key} if key.startswith("anon") else {"customer": key}
                burst.append(a_signal(("page_view", "product_view", "search")[round_], now_ms(), **who))
            time.sleep(0.3)
        produce_signals(bootstrap, fresh_topics["signals"], [line(s) for s in burst])
        produced_at = {s["event_id"]: s["event_time"] for s in burst}

        def closed(seen):
            return {r["journey"] for _, _, r in seen if r.get("kind") == LogKind.SESSION and not r["open"]}

        watch.until(lambda seen: set(customers + visitors) <= closed(seen), 60, job)  # nothing else arrives
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
        watch.close()

    sessions = {r["journey"]: (received, r) for received, _, r in watch.seen
                if r.get("kind") == LogKind.SESSION and r["journey"] in set(customers + visitors)}
    for key, (received, session) in sessions.items():
        assert session["signals"] == 3
        due = (session["end"] + GAP_S * 1000) / 1000
        assert 0 <= received - due < 2.5, f"{key}: the session closed {received - due:.1f} s after it fell due"
    first_decisions = {}
    for received, topic, record in watch.seen:
        if topic == fresh_topics["decisions"] and record["event_id"] in produced_at:
            first_decisions.setdefault(record["journey"], (received, record))
    assert len(first_decisions) >= len(customers + visitors) // 2  # the rest went to the control group, or nowhere
    latencies = [received - produced_at[record["event_id"]] / 1000 for received, record in first_decisions.values()]
    assert max(latencies) < 2.0, f"event-to-decision took up to {max(latencies):.2f} s"
