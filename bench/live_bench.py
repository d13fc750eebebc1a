"""Live figures for `make bench`: the job reading Kafka without an end, signals produced at a steady
rate and stamped with the wall clock.

- Event-to-decision latency as a consumer sees it: on the at-least-once path (a decisions topic,
  visible as soon as the job writes it) and on the exactly-once path (committed files, which
  appear at each checkpoint; Tansu does not hide uncommitted Kafka records, so files show what a
  read_committed consumer would wait for).
- Decisions per signal produced, so that a run that decides nothing cannot look fast.
- The quiet stream: after the last signal, how long until the last session closes, against when
  it fell due (sessions.gap is short here, so the wait is seconds).
"""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
GAP_S = 5
FETCH_WAIT_MS = 10
# Tansu keeps each produced batch as an object that every fetch of the partition lists, so its
# latency grows with the batches a partition holds (docs/kafka.md, "The local broker"). At 1,000
# signals/s a 2 ms linger makes a batch per signal or two, and after 40 s the broker, not the job,
# sets the latency; 20 ms keeps 60 s of signals in about 3,000 batches per partition.
PRODUCER_LINGER_MS = 20


def checkpoint_interval() -> str:
    """The interval a live run checkpoints at: flink-conf/live.yaml's (the driver applies it)."""
    from pipelines.flink.env import load_flink_conf, load_live_conf

    return (load_flink_conf() | load_live_conf())["execution.checkpointing.interval"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def measure_live(work: Path, lines: list[bytes], rate: int, seconds: int) -> dict:
    from scripts.local_broker import LocalBroker

    figures = {}
    for guarantee in ("at-least-once", "exactly-once"):
        # A broker of its own for each run, so neither path reads through the other's batches.
        broker = LocalBroker(work / f"live-kafka-{guarantee}").start()
        try:
            figures[guarantee] = _live_run(broker.bootstrap_servers, work, lines, rate, seconds, guarantee)
        finally:
            broker.stop()
    at_least_once, exactly_once = figures["at-least-once"], figures["exactly-once"]
    return {"rate": rate, "seconds": seconds, "gap_s": GAP_S, "checkpoint_interval": checkpoint_interval(),
            "at_least_once": at_least_once, "exactly_once": exactly_once}


def _live_run(bootstrap: str, work: Path, lines: list[bytes], rate: int, seconds: int, guarantee: str) -> dict:
    from pipelines.kafka.tools import create_topics

    prefix = f"live-{guarantee}-{time.time_ns()}"
    topics = {name: f"{prefix}-{name}" for name in ("signals", "decisions", "journeys", "dead-letter")}
    create_topics(bootstrap, {topics["signals"]: 4, topics["decisions"]: 4, topics["journeys"]: 4, topics["dead-letter"]: 1})
    out = work / prefix
    out.mkdir(parents=True)
    conf = out / "journeys.yaml"
    conf.write_text((ROOT / "journeys" / "conf" / "journeys.yaml").read_text().replace("gap: 30m", f"gap: {GAP_S}s"))
    to_files = guarantee == "exactly-once"
    decisions = (out / "decisions").as_uri() if to_files else f"kafka://{bootstrap}/{topics['decisions']}"
    job = subprocess.Popen([sys.executable, str(ROOT / "jobs" / "journey_job.py"),
                            "--signals", f"kafka://{bootstrap}/{topics['signals']}", "--decisions", decisions,
                            "--journeys", f"kafka://{bootstrap}/{topics['journeys']}",
                            "--dead-letter", f"kafka://{bootstrap}/{topics['dead-letter']}",
                            "--delivery-guarantee", guarantee, "--conf", str(conf), "--transactional-id-prefix", prefix,
                            "--checkpoints", str(out / "checkpoints"),
                            # Tansu answers a waiting fetch only when its wait is over, not when records
                            # arrive (docs/kafka.md, "The local broker"): without this, the source's
                            # fetches would add up to the Java client's 500 ms to every signal.
                            "--kafka-property", f"fetch.max.wait.ms={FETCH_WAIT_MS}"],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    seen = _Seen(bootstrap, [topics["journeys"]] + ([] if to_files else [topics["decisions"]]), out / "decisions")
    try:
        _produce(bootstrap, topics["signals"], [_stamped(lines[0], now_ms())])
        seen.until(lambda: seen.journeys, 180, job)  # the job is up
        produced = _steady(bootstrap, topics["signals"], lines, rate, seconds)
        silence = time.time()
        seen.until(lambda: time.time() > silence + GAP_S + 10, 60, job)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
        seen.close()
    return _figures(produced, seen, silence)


def _figures(produced: dict[str, int], seen: "_Seen", silence: float) -> dict:
    answered = [(received, record) for received, record in seen.decisions
                if record.get("event_id") in produced and record.get("trigger") != "plan_due"]
    latencies = [received * 1000 - produced[record["event_id"]] for received, record in answered]
    # From intake to the decision leaving the journey operator: the job's own part of the latency.
    in_job = [record["latency_ms"] for _, record in answered if record.get("latency_ms") is not None]
    after_silence = [(received, record) for received, record in seen.journeys
                     if record.get("kind") == "session" and not record["open"] and received >= silence]
    fired_late = [received - (record["end"] / 1000 + GAP_S) for received, record in after_silence]
    return {
        "signals_produced": len(produced),
        "decisions": len(seen.decisions),
        "decisions_per_signal": round(len(seen.decisions) / len(produced), 3) if produced else 0,
        "latency_p50_ms": _quantile(latencies, 0.5), "latency_p99_ms": _quantile(latencies, 0.99),
        "latency_max_ms": round(max(latencies)) if latencies else None,
        "job_latency_p50_ms": _quantile(in_job, 0.5), "job_latency_p99_ms": _quantile(in_job, 0.99),
        "quiet_sessions_closed": len(after_silence),
        "quiet_last_transition_s": round(max(r for r, _ in after_silence) - silence, 2) if after_silence else None,
        "quiet_fired_after_due_p99_s": round(_quantile(fired_late, 0.99, 1), 2) if fired_late else None,
        "quiet_fired_after_due_max_s": round(max(fired_late), 2) if fired_late else None,
    }


def _quantile(values: list[float], q: float, digits: int = 0):
    if not values:
        return None
    ordered = sorted(values)
    value = ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return round(value, digits) if digits else round(value)


def _stamped(raw: bytes, at: int) -> bytes:
    signal = orjson.loads(raw)
    signal["event_time"] = at
    return orjson.dumps(signal)


def _steady(bootstrap: str, topic: str, lines: list[bytes], rate: int, seconds: int) -> dict[str, int]:
    """Valid signals at `rate` per second for `seconds`, each stamped with the wall clock when sent."""
    from confluent_kafka import Producer

    from pipelines.kafka.tools import journey_owners

    from journeys.contract import Rejection, SignalDecoder
    from journeys.settings import packaged_settings

    decoder, now = SignalDecoder(packaged_settings().intake), now_ms()
    # What intake accepts, as it was written: the simulation's malformed lines would only be dead letters.
    valid = [orjson.loads(raw) for raw in lines if not isinstance(decoder.decode_json(raw, now), Rejection)]
    owners = journey_owners(orjson.dumps(s) for s in valid)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": PRODUCER_LINGER_MS, "enable.idempotence": True})
    produced: dict[str, int] = {}
    started = time.time()
    for n in range(rate * seconds):
        signal = dict(valid[n % len(valid)])
        due = started + n / rate
        pause = due - time.time()
        if pause > 0:
            time.sleep(pause)
        at = now_ms()
        signal["event_time"] = at
        signal["event_id"] = f"{signal['event_id']}-{n}"
        key = signal.get("customer_id") or owners.get(signal.get("anonymous_id")) or signal.get("anonymous_id")
        producer.produce(topic, value=orjson.dumps(signal), key=key.encode(), timestamp=at)
        produced[signal["event_id"]] = at
        producer.poll(0)
    producer.flush(30)
    return produced


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, value=value, key=b"warm-up", timestamp=now_ms())
    producer.flush(30)


class _Seen:
    """What comes out of the job, each record with the wall-clock time it was seen: the topics'
    records, and the lines of part files as the file sink commits them."""

    def __init__(self, bootstrap: str, topics: list[str], committed_files: Path):
        from pipelines.kafka.tools import TopicWatch

        self.journeys_topic = topics[0]
        self.files, self.read_files, self.from_files = committed_files, set(), []
        self.watch = TopicWatch(bootstrap, topics, also=self._committed_files)

    @property
    def journeys(self) -> list[tuple[float, dict]]:
        return [(at, record) for at, topic, record in list(self.watch.seen) if topic == self.journeys_topic]

    @property
    def decisions(self) -> list[tuple[float, dict]]:
        return [(at, record) for at, topic, record in list(self.watch.seen) if topic != self.journeys_topic] + self.from_files

    def _committed_files(self, now: float) -> None:
        if not self.files.exists():
            return
        for path in self.files.rglob("*.jsonl"):
            if path.name.startswith(".") or path in self.read_files:
                continue
            self.read_files.add(path)
            self.from_files.extend((now, orjson.loads(text)) for text in path.read_bytes().splitlines() if text)

    def until(self, done, timeout: float, job) -> None:
        deadline = time.time() + timeout
        while not done():
            if job.poll() is not None:
                raise SystemExit("the live job ended early")
            if time.time() > deadline:
                raise SystemExit(f"the live job did not get there within {timeout} s")
            time.sleep(0.1)

    def close(self) -> None:
        self.watch.close()


def median(values):
    return statistics.median(values)
