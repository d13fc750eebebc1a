"""The simulator: realistic, multi-channel, seeded, and honest about its ground truth."""
from collections import Counter

import orjson
import pytest

from journeys.contract import Rejection, SignalDecoder
from pipelines.tools.simulate import SimulationSpec, simulate
from tests.harness import NOW

SPEC = SimulationSpec(customers=300, days=20, seed=3)


@pytest.fixture(scope="module")
def lines():
    return list(simulate(SPEC))


@pytest.fixture(scope="module")
def decoded(lines):
    decoder = SignalDecoder()
    return [decoder.decode_json(line, NOW) for line in lines]


def parsed(lines):
    out = []
    for line in lines:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict) and "simulator_truth" in record:
            out.append(record)
    return out


def test_the_same_seed_gives_the_same_signals(lines):
    assert list(simulate(SPEC)) == lines
    assert list(simulate(SimulationSpec(customers=300, days=20, seed=4))) != lines


def test_signals_cover_every_channel_and_the_journey_moments(lines):
    records = parsed(lines)
    assert {r["channel"] for r in records} >= {"web", "app", "store", "email", "call_center"}
    types = Counter(r["event_type"] for r in records)
    for moment in ("page_view", "product_view", "add_to_cart", "purchase", "login", "signup", "store_visit",
                   "support_call", "complaint", "email_open", "unsubscribe"):
        assert types[moment] > 0, moment


def test_every_clean_signal_carries_its_ground_truth_stage(lines):
    stages = Counter(r["simulator_truth"]["stage"] for r in parsed(lines))
    assert set(stages) <= {"discovery", "consideration", "intent", "conversion", "retention", "at_risk"}
    assert len(stages) == 6


def test_anonymous_browsing_later_logs_in_to_a_customer(lines):
    records = parsed(lines)
    logins = [r for r in records if r["event_type"] in ("login", "signup")]
    assert logins and all(r["customer_id"] and r["anonymous_id"] for r in logins)
    visitor = logins[0]["anonymous_id"]
    before = [r for r in records if r["anonymous_id"] == visitor and r["event_time"] < logins[0]["event_time"]]
    assert before and all(r["customer_id"] is None for r in before)


def test_carts_are_abandoned_and_customers_buy_again(lines):
    records = parsed(lines)
    purchases = Counter(r["customer_id"] for r in records if r["event_type"] == "purchase")
    assert any(count > 1 for count in purchases.values())
    carts = Counter(r["customer_id"] or r["anonymous_id"] for r in records if r["event_type"] == "add_to_cart")
    assert sum(carts.values()) > sum(purchases.values())


def test_shares_of_malformed_and_duplicate_records_follow_the_spec(lines, decoded):
    rejected = sum(isinstance(d, Rejection) for d in decoded)
    assert 0.005 < rejected / len(lines) < 0.02
    ids = Counter(d["event_id"] for d in decoded if not isinstance(d, Rejection))
    duplicates = sum(count - 1 for count in ids.values())
    assert 0.01 < duplicates / len(lines) < 0.03
    assert len({d.reason for d in decoded if isinstance(d, Rejection)}) >= 8


def test_delivery_is_out_of_order_and_sometimes_hours_late(lines):
    times = [r["event_time"] for r in parsed(lines)]
    behind = [latest - t for latest, t in zip(_running_max(times), times)]
    assert sum(1 for gap in behind if 0 < gap <= 2 * 60_000) > 0.05 * len(times)
    assert sum(1 for gap in behind if gap > 60 * 60_000) > 0


def test_sensitive_values_appear_in_the_raw_stream_for_intake_to_mask(lines):
    records = parsed(lines)
    assert any("email" in r["attributes"] for r in records)
    assert any("4111" in r["attributes"].get("note", "") for r in records)


def _running_max(values):
    latest = None
    for value in values:
        latest = value if latest is None else max(latest, value)
        yield latest
