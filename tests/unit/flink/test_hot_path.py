"""The Flink wing's hot-path helpers that need no engine: the states a task keeps in memory, and
counters that reach Flink in batches."""
from __future__ import annotations

from pipelines.flink import metrics, state_cache
from pipelines.flink.metrics import BatchedGroup, CounterBatch
from pipelines.flink.state_cache import MISSING, RecentStates

A_DAY_MS = 86_400_000


class FlinkCounter:
    """Stands for the Java counter behind a metric group: it records each call it gets."""

    def __init__(self):
        self.calls: list[int] = []

    def inc(self, by: int = 1) -> None:
        self.calls.append(by)


class FlinkGroup:
    def __init__(self):
        self.counters: dict[str, FlinkCounter] = {}

    def add_group(self, name, extra=None):
        return self

    def counter(self, name):
        return self.counters.setdefault(name, FlinkCounter())


def test_a_state_written_is_read_back_without_asking_rocksdb():
    recent = RecentStates(max_keys=10, ttl_ms=A_DAY_MS)
    assert recent.get("c-1") is MISSING
    recent.put("c-1", "state one")
    recent.put("c-2", None)
    assert (recent.get("c-1"), recent.get("c-2")) == ("state one", None)


def test_a_full_cache_forgets_the_keys_written_longest_ago():
    recent = RecentStates(max_keys=4, ttl_ms=A_DAY_MS)
    for key in ("a", "b", "c", "d"):
        recent.put(key, key)
    recent.put("a", "a again")  # written last now
    recent.put("e", "e")
    assert recent.get("b") is MISSING
    assert [recent.get(key) for key in ("a", "c", "d", "e")] == ["a again", "c", "d", "e"]


def test_no_entry_outlives_half_the_state_ttl(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(state_cache.time, "monotonic", lambda: clock[0])
    recent = RecentStates(max_keys=10, ttl_ms=60_000)
    recent.put("c-1", "state")
    clock[0] += 29.9
    assert recent.get("c-1") == "state"
    clock[0] += 0.1
    assert recent.get("c-1") is MISSING  # RocksDB may expire it from here on: read it there


def test_a_cache_of_no_keys_keeps_nothing():
    recent = RecentStates(max_keys=0, ttl_ms=A_DAY_MS)
    recent.put("c-1", "state")
    assert recent.get("c-1") is MISSING


def test_counts_reach_flink_in_one_call_per_counter_when_the_batch_is_flushed():
    flink, batch = FlinkGroup(), CounterBatch()
    group = BatchedGroup(flink, batch)
    signals_in, rejected = group.counter("signals_in"), group.add_group("reason", "bad_json").counter("signals_rejected")
    for _ in range(500):
        signals_in.inc()
    rejected.inc(3)
    assert batch.dirty and flink.counters["signals_in"].calls == []
    batch.flush()
    assert flink.counters["signals_in"].calls == [500] and flink.counters["signals_rejected"].calls == [3]
    assert not batch.dirty
    batch.flush()  # nothing new: no call
    assert flink.counters["signals_in"].calls == [500]


def test_a_batch_is_handed_over_once_its_interval_has_passed(monkeypatch):
    clock = [50.0]
    monkeypatch.setattr(metrics.time, "monotonic", lambda: clock[0])
    flink, batch = FlinkGroup(), CounterBatch()
    counter = BatchedGroup(flink, batch).counter("signals_in")
    counter.inc()
    batch.flush_if_due()  # the first count goes at once
    counter.inc()
    clock[0] += metrics.FLUSH_S / 2
    batch.flush_if_due()
    assert flink.counters["signals_in"].calls == [1]
    clock[0] += metrics.FLUSH_S / 2
    batch.flush_if_due()
    assert flink.counters["signals_in"].calls == [1, 1]
