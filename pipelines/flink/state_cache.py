"""The states a journey task wrote last, kept in memory so that most calls skip the read.

PyFlink's thread mode has no state cache: every ValueState.value() is a call into Java, which
hands over the GIL all of a TaskManager's Python operators share, and about a third of a signal's
cost in the job was such reads. A task is the only writer of its keys' state, and it writes on
every call, so what it wrote last is what RocksDB holds, with two exceptions this cache respects:
- state TTL: an entry is used only while it is younger than half the TTL, so RocksDB cannot have
  expired the value it stands for;
- a restore: the cache lives in the operator's memory and starts empty after one.
Writes always go through to RocksDB, so checkpoints and savepoints are unchanged."""
from __future__ import annotations

import time
from itertools import islice

MISSING = object()


class RecentStates:
    """Encoded states by key, the most recently written last; the oldest quarter goes when full."""

    def __init__(self, max_keys: int, ttl_ms: int):
        self.max_keys = max_keys
        self.max_age_s = ttl_ms / 2000 if ttl_ms > 0 else float("inf")
        self._entries: dict[str, tuple[str | None, float]] = {}

    def get(self, key: str):
        """The state last written for key (None: cleared), or MISSING when it must be read."""
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[1] >= self.max_age_s:
            return MISSING
        return entry[0]

    def put(self, key: str, encoded: str | None) -> None:
        if not self.max_keys:
            return
        entries = self._entries
        entries.pop(key, None)
        entries[key] = (encoded, time.monotonic())
        if len(entries) > self.max_keys:
            for oldest in list(islice(entries, max(1, self.max_keys // 4))):
                del entries[oldest]
