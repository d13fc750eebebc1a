"""Intake: raw bytes in, routed items or rejections out. The first step of both the Flink job and
the in-process reference runner, so both classify every record the same way.

Lateness is decided here, from the order in which the source delivers records: a signal is late
when its event time is at or behind (the latest event time delivered so far - the bound - 1 ms),
exactly where Flink's bounded-out-of-orderness watermark would put it. Deciding it from the data,
not from when a periodic watermark happened to be emitted, makes runs repeatable.
"""
from __future__ import annotations

from typing import NamedTuple

from journeys.contract import Rejection, SignalDecoder
from journeys.keyed import intake_item, route
from journeys.timers import end_clock


class Taken(NamedTuple):
    """An accepted signal on its way to a keyed role."""

    role: str        # journeys.keyed.VISITOR or CUSTOMER
    key: str         # the anonymous id or the customer id it is keyed by
    item: str        # the item the role receives (journeys.state)
    event_time: int


_taken = tuple.__new__  # Taken(...) at C speed: this runs once per signal


class Intake:
    def __init__(self, decoder: SignalDecoder, identify_signals, max_out_of_orderness_ms: int,
                 encoding: str = "json", late_by_source_order: bool = True):
        """encoding: json or avro (single-object). late_by_source_order: only for a source that
        delivers one time-ordered stream (a file); a Kafka source interleaves partitions, and there
        lateness is left to the journey's own clock behind per-partition watermarks."""
        self.decoder = decoder
        self.identify_signals = frozenset(identify_signals)
        self.bound = max_out_of_orderness_ms
        self.latest: int | None = None
        self._decode = decoder.decode_avro if encoding == "avro" else decoder.decode_json
        self._late_by_source_order = late_by_source_order

    def watermark(self) -> int | None:
        return end_clock(self.latest, self.bound)

    def take(self, raw: bytes, now_ms: int, ingested_at: int | None = None) -> Rejection | Taken:
        decoded = self._decode(raw, now_ms)
        if isinstance(decoded, Rejection):
            return decoded
        return self.take_signal(decoded, ingested_at)

    def take_signal(self, signal: dict, ingested_at: int | None = None) -> Taken:
        at = signal["event_time"]
        latest = self.latest
        # A late item carries the intake watermark it fell behind, so the key can remember its id
        # from that point on, not from its own old event time.
        late = False
        if self._late_by_source_order and latest is not None:
            behind = end_clock(latest, self.bound)
            if at <= behind:
                late = behind
        if latest is None or at > latest:
            self.latest = at
        role, key = route(signal, self.identify_signals)
        return _taken(Taken, (role, key, intake_item(signal, key, ingested_at, late), at))
