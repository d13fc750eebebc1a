"""Intake on 64 KB records for `make bench`: a plain one beside the slowest of the hostile ones
(pipelines.tools.hostile), every detector of the privacy scan on. Each figure is the fastest of
several calls, since one slow call says more about the machine than about the record."""
from __future__ import annotations

from journeys.contract import SignalDecoder
from journeys.privacy import Masker, PrivacySettings
from pipelines.tools.hostile import HOSTILE_VALUES, PLAIN_TEXT, a_record_of, fastest_seconds

BASE = {"event_id": "bench-1", "event_time": 1_772_442_000_000, "channel": "web", "event_type": "page_view",
        "customer_id": "c-1", "anonymous_id": None, "session_hint": None, "attributes": {}, "schema_version": 2,
        "timezone": "UTC"}
BUDGET_MS = 5.0


def _fastest_ms(decoder: SignalDecoder, raw: bytes) -> float:
    return fastest_seconds(lambda: decoder.decode_json(raw, BASE["event_time"]), calls=9) * 1000


def measure_hostile_intake() -> dict:
    decoder = SignalDecoder(masker=Masker(PrivacySettings("bench-key", scan_values=("email", "card", "phone"))))
    plain = _fastest_ms(decoder, a_record_of(PLAIN_TEXT, BASE))
    each = {name: round(_fastest_ms(decoder, a_record_of(value, BASE)), 3) for name, value in HOSTILE_VALUES.items()}
    slowest = max(each, key=each.get)
    return {"plain_64kb_ms": round(plain, 3), "slowest_hostile_64kb_ms": each[slowest], "slowest_hostile": slowest,
            "slowest_to_plain_ratio": round(each[slowest] / plain, 2), "budget_ms": BUDGET_MS, "hostile_ms": each}
