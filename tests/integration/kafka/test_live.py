"""Live, Kafka to Kafka on a real broker: decisions leave as their signals arrive, and time moves
in a quiet stream (docs/time.md)."""
from __future__ import annotations

import os
import signal
import time

import pytest

from journeys.outputs import LogKind
from pipelines.kafka.tools import TopicWatch, produce_signals
from tests.harness import ROOT, a_signal, line, start_driver

pytestmark = pytest.mark.flink

GAP_S = 3  # sessions.gap of this test's configuration


class Watch(TopicWatch):
    def until(self, done, timeout: float, job) -> None:
        deadline = time.time() + timeout
        while not done(list(self.seen)):
            assert job.poll() is None, job.stdout.read()[-3000:]
            assert time.time() < deadline, f"not there after {timeout} s; seen {len(self.seen)} records"
            time.sleep(0.1)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_decisions_leave_at_once_and_after_the_burst_every_session_closes_in_silence(kafka_broker, fresh_topics,
                                                                                    tmp_path):
    bootstrap = kafka_broker.bootstrap_servers
    conf = tmp_path / "journeys.yaml"
    conf.write_text((ROOT / "journeys" / "conf" / "journeys.yaml").read_text().replace("gap: 30m", f"gap: {GAP_S}s"))
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
        produced_at = {}
        for round_ in range(3):  # a burst: three signals per journey, 0.3 s apart, sent as they happen
            burst = [a_signal(("page_view", "product_view", "search")[round_], now_ms(),
                              **({"visitor": key} if key.startswith("anon") else {"customer": key}))
                     for key in customers + visitors]
            produce_signals(bootstrap, fresh_topics["signals"], [line(s) for s in burst])
            produced_at |= {s["event_id"]: s["event_time"] for s in burst}
            time.sleep(0.3)

        def closed(seen):
            return {r["journey"] for _, _, r in seen if r.get("kind") == LogKind.SESSION and not r["open"]}

        watch.until(lambda seen: set(customers + visitors) <= closed(seen), 60, job)  # nothing else arrives
    finally:
        if job.poll() is None:
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
    assert sorted(latencies)[len(latencies) // 2] < 1.0 and max(latencies) < 2.0, \
        f"event-to-decision: median {sorted(latencies)[len(latencies) // 2]:.2f} s, up to {max(latencies):.2f} s"
