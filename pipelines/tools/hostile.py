"""Generated hostile input, for the fuzz tests and the benchmark: malformed and adversarial signal
lines of every kind a producer (or an attacker) could send, reproducible from a seed.

Each line is one record: it holds no line break, so a file of them splits back into the same
records (the file source ends lines at \\n, \\r\\n and \\r).
"""
from __future__ import annotations

import json
import random
import time
from typing import Callable, Iterator

from journeys.contract import AVRO_SINGLE_OBJECT_MAGIC, encode_avro

# Personal data of every shape the privacy rules name, to plant in any field.
PERSONAL_DATA = ("ann.smith@example.com", "ann.smith%40example.com", "ann.smith＠example.com", "(555) 123-4567",
                 "+1 555 123 4567", "4111 1111 1111 1111", "4111.1111.1111.1111", "4111/1111/1111/1111",
                 "4111  1111  1111  1111", "4111 - 1111 - 1111 - 1111", "４１１１１１１１１１１１１１１１",
                 "/cart?email=ann.smith@example.com&step=2")

# What attribute values usually hold, digits and punctuation included: the yardstick for the others.
PLAIN_TEXT = "Order 12345 of 2026-03-02: 3 items, 59.90 EUR, see /orders/12345?tab=items " * 30

# Attribute values that make a backtracking scanner read a text once per start.
HOSTILE_VALUES = {
    "a run of address characters before an @": "a" * 2039 + "@",
    "a run on both sides of an @": "a" * 1000 + "@" + "a" * 1000,
    "an @ and dashes": "a@" + "a-" * 1000,
    "dots around an @": "." * 1000 + "@" + "." * 1000,
    "a dotted domain that never ends in letters": "a@" + "a." * 1000 + "1",
    "plus signs, then an @": "+a" * 1000 + "@x",
    "many @": "a@" * 16,
    "digits and spaces": "1 " * 1020,
    "digits and dashes": "1-" * 1020,
    "digit pairs": "11 " * 680,
    "phone-like runs": "(1) " * 510,
    "phone numbers": "+1 (555) 123-4567 " * 110,
}


def fastest_seconds(call: Callable[[], object], calls: int = 5) -> float:
    """The fastest of several calls: one slow call says more about the machine than the input."""
    best = float("inf")
    for _ in range(calls):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def _dumps(value) -> bytes:
    """JSON as a producer might write it: integers of any size, and characters as they are."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def a_record_of(value: str, base: dict) -> bytes:
    """About 62 KB: 30 attributes of the value, each cut to the attribute length limit."""
    return _dumps(base | {"attributes": {f"a{n}": value[:2040] for n in range(30)}})


def _valid(rng: random.Random, at: int) -> dict:
    return {"event_id": f"h-{rng.getrandbits(48):012x}", "event_time": at + rng.randint(0, 86_400_000),
            "channel": rng.choice(("web", "app", "email", "store")),
            "event_type": rng.choice(("page_view", "product_view", "add_to_cart", "purchase", "login")),
            "customer_id": f"hc-{rng.randint(1, 50)}", "anonymous_id": None, "session_hint": None,
            "attributes": {"sku": f"s-{rng.randint(1, 9)}"}, "schema_version": 2, "timezone": "UTC"}


def _truncated(rng, signal):
    raw = _dumps(signal)
    return raw[:rng.randint(0, len(raw) - 1)]


def _wrong_type(rng, signal):
    field = rng.choice(sorted(signal))
    return _dumps(signal | {field: rng.choice([[], {}, 1.5, -1, True, "x", [None], {"a": [1]}, 2**70])})


def _huge(rng, signal):
    return _dumps(signal | {rng.choice(("event_id", "event_type", "customer_id")): "x" * rng.randint(129, 70_000)})


def _deep(rng, signal):
    depth = rng.randint(100, 3000)
    return _dumps(signal)[:-1] + b',"extra":' + b"[" * depth + b"]" * depth + b"}"


def _not_a_number(rng, signal):
    literal = rng.choice((b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-0", b"1" * 400))
    return _dumps(signal).replace(str(signal["event_time"]).encode(), literal)


def _bad_utf8(rng, signal):
    raw = _dumps(signal)
    cut = rng.randint(1, len(raw) - 1)
    return raw[:cut] + rng.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80")) + raw[cut:]


def _nul(rng, signal):
    raw = _dumps(signal)
    cut = rng.randint(0, len(raw))
    return rng.choice((raw[:cut] + b"\x00" + raw[cut:], _dumps(signal | {"customer_id": "c\u0000-1"})))


def _time_out_of_range(rng, signal):
    return _dumps(signal | {"event_time": rng.choice((253402300800000, -99999999999999999, 2**63 - 1,
                                                            -(2**63), 0, 1, 10**15))})


def _personal_data(rng, signal):
    field = rng.choice(("customer_id", "anonymous_id", "event_type", "event_id", "session_hint", "timezone", "attr"))
    value = rng.choice(PERSONAL_DATA)
    if field == "attr":
        return _dumps(signal | {"attributes": {rng.choice(("note", "page", "q")): value}})
    return _dumps(signal | {field: value})


def _odd_identity(rng, signal):
    return _dumps(signal | {rng.choice(("customer_id", "anonymous_id", "event_id")):
                                  rng.choice((" ", "\t", "\u200b", "c-1\u200b", "\ufeffc-1", "\u3000", "c\u2028"))})


def _duplicate_key(rng, signal):
    raw = _dumps(signal)
    return raw[:-1] + b',"customer_id":"hc-other"}'


def _hostile_value(rng, signal):
    return a_record_of(rng.choice(list(HOSTILE_VALUES.values())), signal)


def _odd_numbers(rng, signal):
    return _dumps(signal | {"event_type": "add_to_cart",
                                  "attributes": {"cart_value": rng.choice(("nan", "inf", "1e999", "-1e309", "1_0", "0x1"))}})


def _odd_zone(rng, signal):
    return _dumps(signal | {"timezone": rng.choice(("A" * 300, "Europe", "../../etc/passwd", "Nowhere/City"))})


def _not_json(rng, _signal):
    return rng.choice((b"", b" ", b"null", b"[]", b'"text"', b"{", b"}", b"{}", b"\x00" * 8, bytes(rng.getrandbits(8)
                       for _ in range(rng.randint(1, 64))).replace(b"\n", b" ").replace(b"\r", b" ")))


MUTATIONS: dict[str, Callable] = {
    "truncated": _truncated, "wrong type": _wrong_type, "huge value": _huge, "deep value": _deep,
    "not a number": _not_a_number, "invalid UTF-8": _bad_utf8, "NUL": _nul, "time out of range": _time_out_of_range,
    "personal data": _personal_data, "odd identity": _odd_identity, "duplicate key": _duplicate_key,
    "hostile value": _hostile_value, "odd number": _odd_numbers, "odd time zone": _odd_zone, "not JSON": _not_json,
}


def hostile_lines(count: int, seed: int, at: int) -> Iterator[tuple[str, bytes]]:
    """(kind, line) for `count` generated lines, each a mutation of a valid signal near `at`."""
    rng = random.Random(seed)
    kinds = sorted(MUTATIONS)
    for _ in range(count):
        kind = rng.choice(kinds)
        line = MUTATIONS[kind](rng, _valid(rng, at))
        yield kind, line.replace(b"\n", b" ").replace(b"\r", b" ")


def hostile_avro(count: int, seed: int, at: int) -> Iterator[bytes]:
    """Avro single-object messages with wrong fingerprints, cut bodies and trailing bytes."""
    rng = random.Random(seed)
    for _ in range(count):
        raw = encode_avro(_valid(rng, at))
        yield rng.choice((AVRO_SINGLE_OBJECT_MAGIC + bytes(rng.getrandbits(8) for _ in range(8)) + raw[10:],
                          raw[:rng.randint(0, len(raw) - 1)], raw + bytes(rng.getrandbits(8) for _ in range(3)),
                          raw[:10] + bytes(rng.getrandbits(8) for _ in range(len(raw) - 10))))
