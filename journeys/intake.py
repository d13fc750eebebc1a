"""Intake: raw bytes in, routed items or rejections out. The first step of both the Flink job and
the in-process reference runner, so both classify every record the same way.

Intake judges no lateness: a signal is late only against its own journey's clock, where it
arrives (journeys.keyed). It keeps the latest event time it has taken, from which a bounded run's
end clock follows.
"""
from __future__ import annotations

from typing import NamedTuple

from journeys.contract import Rejection, SignalDecoder, internal_error
from journeys.keyed import intake_item, route


class Taken(NamedTuple):
    """An accepted signal on its way to a keyed role."""

    role: str        # journeys.keyed.VISITOR or CUSTOMER
    key: str         # the anonymous id or the customer id it is keyed by
    item: str        # the item the role receives (journeys.state)
    event_time: int


_taken = tuple.__new__  # Taken(...) at C speed: this runs once per signal


class Intake:
    def __init__(self, decoder: SignalDecoder, encoding: str = "json"):
        """encoding: json or avro (single-object)."""
        self.decoder = decoder
        self.latest: int | None = None
        self._decode = decoder.decode_avro if encoding == "avro" else decoder.decode_json

    def take(self, raw: bytes, now_ms: int, ingested_at: int | None = None) -> Rejection | Taken:
        try:
            decoded = self._decode(raw, now_ms)
            if isinstance(decoded, Rejection):
                return decoded
            return self.take_signal(decoded, ingested_at)
        except Exception as error:  # noqa: BLE001 - no record may stop the job, whatever it makes intake do
            return internal_error(raw, error)

    def take_signal(self, signal: dict, ingested_at: int | None = None) -> Taken:
        at = signal["event_time"]
        if self.latest is None or at > self.latest:
            self.latest = at
        role, key = route(signal)
        return _taken(Taken, (role, key, intake_item(signal, role, key, ingested_at), at))
