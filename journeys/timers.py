"""Time as every runner keeps it: the two ways a key's time moves, the end clock of a bounded
input, and a Flink-like timer queue.

A key's time-driven events (a session gap, a stage time-out, a plan due, a visitor's expiry) happen
when the key's next signal arrives, and otherwise when its one timer fires:

- BOUNDED runs (a file, Kafka up to --stop-offsets): the timer is an event-time timer at the end
  of time, so it fires when the input ends, with time stopping at the end clock. What happens
  depends only on each key's items in order, so the run repeats exactly.
- LIVE runs: the timer is a processing-time timer at the key's next due time, told in wall-clock
  time by the key's lag (journeys.keyed), so a key's time moves on in silence.

TimerQueue behaves like Flink's timer service, for runners without one: one timer per key and
timestamp, a deleted timer never fires, and timers fire in time order (then key order).
"""
from __future__ import annotations

import heapq

MIN_WATERMARK = -(2 ** 63)
MAX_WATERMARK = 2 ** 63 - 1  # Flink's Long.MAX_VALUE: the end of a bounded input
END_OF_TIME = MAX_WATERMARK  # a bounded run's one timer per key: it fires when the input ends

BOUNDED, LIVE = "bounded", "live"  # how a key's time moves (above)


def end_clock(latest_event_time: int | None, bound_ms: int) -> int | None:
    """Where time stops when a bounded input ends: the watermark its latest event time allows
    (the latest minus the out-of-orderness bound, minus 1 ms, as Flink's bounded-out-of-orderness
    watermark is). None for an input with no accepted signal."""
    return None if latest_event_time is None else latest_event_time - bound_ms - 1


class TimerQueue:
    def __init__(self):
        self._heap: list[tuple[int, str]] = []
        self._registered: set[tuple[str, int]] = set()

    def register(self, at: int, key: str = "") -> None:
        if (key, at) not in self._registered:
            self._registered.add((key, at))
            heapq.heappush(self._heap, (at, key))

    def delete(self, at: int, key: str = "") -> None:
        self._registered.discard((key, at))  # its heap entry is skipped when it comes up

    def pop_due(self, until: int) -> tuple[int, str] | None:
        """The next registered timer at or before `until`, as (time, key), taken out; None if there is none."""
        heap = self._heap
        while heap and heap[0][0] <= until:
            at, key = heapq.heappop(heap)
            if (key, at) in self._registered:
                self._registered.discard((key, at))
                return at, key
        return None

    def earliest(self) -> int | None:
        return min((at for _, at in self._registered), default=None)

    def __bool__(self) -> bool:
        return bool(self._registered)
