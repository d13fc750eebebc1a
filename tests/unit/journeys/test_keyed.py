"""Intake, event-time order, deduplication, lateness and identity stitching, without an engine."""
import random
import time

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from journeys.assembly import build_roles
from journeys.keyed import CUSTOMER, VISITOR, intake_item
from journeys.outputs import LogKind, Routed
from journeys.policy import packaged_policy
from journeys.state import KeyState, decode, encode
from journeys.timers import MAX_WATERMARK
from journeys.timeutil import MINUTE, SECOND
from tests.harness import (A_DAY_LATER, A_MONTH_LATER, AN_HOUR_LATER, BEGINNING, FAR_LATER, ONE_MINUTE_LATER,
                           TEN_MINUTES_LATER, TEN_SECONDS_LATER, TWO_HOURS_LATER, TWO_MINUTES_LATER, a_login, a_signal,
                           canonical, journey_records_in, play, records, stages_of)

BOUND = 2 * MINUTE  # event_time.max_out_of_orderness in the default configuration


def test_a_duplicate_is_dropped_and_counted():
    signal = a_signal("add_to_cart", BEGINNING)
    run = play([signal, signal, a_signal("page_view", AN_HOUR_LATER)])
    assert [r["event_id"] for r in records(run, LogKind.DUPLICATE)] == [signal["event_id"]]
    assert len([r for r in records(run, LogKind.SIGNAL) if r["event_id"] == signal["event_id"]]) == 1


def test_a_duplicate_arriving_after_its_original_was_applied_is_still_dropped():
    signal = a_signal("add_to_cart", BEGINNING)
    run = play([signal, a_signal("page_view", TEN_MINUTES_LATER), signal | {"event_time": BEGINNING}])
    assert len(records(run, LogKind.DUPLICATE)) == 1


def test_a_signal_later_than_the_bound_is_late_counted_and_not_applied():
    late = a_signal("purchase", BEGINNING)
    run = play([a_signal("page_view", BEGINNING + 30 * SECOND), a_signal("page_view", AN_HOUR_LATER), late])
    [record] = records(run, LogKind.LATE)
    assert record["event_id"] == late["event_id"] and record["late_by"] == "intake"
    assert record["signal"] == late  # kept whole, for reprocessing
    assert "conversion" not in stages_of(run, "c-1")


def test_a_signal_for_a_journey_already_processed_past_it_is_late():
    model_roles = build_roles(*_defaults(), packaged_policy(), time.perf_counter)
    customers = model_roles[CUSTOMER]
    state, _, _, _ = customers.on_timer(None, [_item(a_signal("page_view", TEN_MINUTES_LATER))], TEN_MINUTES_LATER, TEN_MINUTES_LATER)
    stale = _item(a_signal("purchase", ONE_MINUTE_LATER))
    state, out, _, _ = customers.on_timer(state, [stale], ONE_MINUTE_LATER, TEN_MINUTES_LATER)
    [record] = journey_records_in(out)
    assert record["kind"] == LogKind.LATE and record["late_by"] == "journey_clock"


@hypothesis_settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), jitter=st.integers(0, BOUND - 1))
def test_arrival_order_within_the_bound_does_not_change_journeys_or_decisions(seed, jitter):
    rng = random.Random(seed)
    signals = []
    for customer in ("c-1", "c-2", "c-3"):
        at = BEGINNING
        for event_type in ("page_view", "product_view", "product_view", "add_to_cart", "purchase", "page_view"):
            at += rng.randint(5, 90) * SECOND
            signals.append(a_signal(event_type, at, customer=customer))
        signals.append(a_signal("page_view", at + AN_HOUR_LATER - BEGINNING, customer=customer))
    in_order = sorted(signals, key=lambda s: s["event_time"])
    shuffled = sorted(signals, key=lambda s: s["event_time"] + rng.randint(0, jitter))
    expected, actual = play(in_order, end_clock=TWO_HOURS_LATER), play(shuffled, end_clock=TWO_HOURS_LATER)
    assert records(actual, LogKind.LATE) == []
    assert canonical(actual.journey_records) == canonical(expected.journey_records)
    assert canonical(actual.decisions) == canonical(expected.decisions)


def test_a_visitor_is_stitched_into_the_customer_on_login():
    run = play([a_signal("product_view", BEGINNING, visitor="v-1"),
                a_signal("add_to_cart", ONE_MINUTE_LATER, visitor="v-1"),
                a_login("v-1", "c-7", TWO_MINUTES_LATER),
                a_signal("purchase", TEN_MINUTES_LATER, customer="c-7", visitor="v-1")])
    [stitch] = records(run, LogKind.STITCH)
    assert stitch["journey"] == "c-7" and stitch["anonymous_id"] == "v-1" and stitch["stage"] == "intent"
    assert stages_of(run, "c-7") == ["intent", "conversion"]
    assert records(run, LogKind.CLOSED, "v-1") == []


def test_anonymous_signals_after_login_are_forwarded_to_the_customer():
    run = play([a_login("v-1", "c-7", BEGINNING),
                a_signal("product_view", ONE_MINUTE_LATER, visitor="v-1"),
                a_signal("product_view", TWO_MINUTES_LATER, visitor="v-1")])
    assert stages_of(run, "c-7") == ["discovery", "discovery", "consideration"]
    assert records(run, LogKind.SIGNAL, "v-1") == []


def test_a_visitor_who_never_identifies_keeps_a_journey_under_the_anonymous_id():
    run = play([a_signal("product_view", BEGINNING, visitor="v-2"), a_signal("search", ONE_MINUTE_LATER, visitor="v-2")])
    assert stages_of(run, "v-2") == ["discovery", "consideration"]
    assert all(r["anonymous"] for r in records(run, journey="v-2"))


def test_a_duplicate_of_a_visitor_signal_after_the_merge_is_still_dropped():
    browse = a_signal("product_view", BEGINNING, visitor="v-1")
    run = play([browse, a_login("v-1", "c-7", ONE_MINUTE_LATER), a_signal("page_view", AN_HOUR_LATER, customer="c-7"),
                browse])
    assert [r["event_id"] for r in records(run, LogKind.DUPLICATE)] == [browse["event_id"]]
    assert len([r for r in records(run, LogKind.SIGNAL) if r["event_id"] == browse["event_id"]]) == 1


def test_at_end_of_input_time_stops_at_the_end_clock_and_open_sessions_are_reported():
    run = play([a_signal("purchase", BEGINNING)], end_clock=TEN_MINUTES_LATER)
    [session] = records(run, LogKind.SESSION)
    assert session["open"] is True
    assert records(run, LogKind.TRANSITION) == []  # a week has not passed by the end clock


def test_without_an_end_clock_no_time_rule_fires_at_end_of_input():
    run = play([a_signal("purchase", BEGINNING)])
    assert records(run, LogKind.TRANSITION) == [] and records(run, LogKind.SESSION)[0]["open"] is True


def test_every_record_in_is_accepted_rejected_or_a_duplicate():
    signal = a_signal("page_view", BEGINNING)
    run = play([signal, signal, a_signal("page_view", AN_HOUR_LATER), a_signal("x", BEGINNING)])
    run.feed([b"not json", b""]).finish()
    accepted = len(records(run, LogKind.SIGNAL)) + len(records(run, LogKind.LATE))
    assert run.lines_in == accepted + len(run.dead_letters) + len(records(run, LogKind.DUPLICATE))


def test_a_churned_customer_leaves_no_state_behind():
    run = play([a_signal("purchase", BEGINNING), a_signal("page_view", FAR_LATER + A_MONTH_LATER - BEGINNING, customer="c-2")],
               end_clock=FAR_LATER + A_MONTH_LATER - BEGINNING)
    assert records(run, LogKind.CLOSED, "c-1")[0]["stage"] == "churned"
    assert "c-1" not in run.states[CUSTOMER]


def test_after_each_timer_a_key_keeps_exactly_one_timer_at_its_next_wakeup():
    customers = build_roles(*_defaults(), packaged_policy(), time.perf_counter)[CUSTOMER]
    arrivals = [_item(a_signal("page_view", BEGINNING)), _item(a_signal("page_view", TEN_SECONDS_LATER))]
    state, _, register, delete = customers.on_timer(None, arrivals, BEGINNING, TEN_SECONDS_LATER)
    assert register == [TEN_SECONDS_LATER + 30 * MINUTE]  # the session closes then
    assert delete == [TEN_SECONDS_LATER]  # the second arrival's own timer is no longer needed
    assert state.timers == register


def test_the_end_of_input_flush_runs_once_per_key():
    customers = build_roles(*_defaults(), packaged_policy(), time.perf_counter)[CUSTOMER]
    state, _, _, _ = customers.on_timer(None, [_item(a_signal("page_view", BEGINNING))], BEGINNING, BEGINNING)
    state, first, _, _ = customers.on_timer(state, [], BEGINNING + 30 * MINUTE, MAX_WATERMARK, A_DAY_LATER)
    _, second, _, _ = customers.on_timer(state, [], BEGINNING + 31 * MINUTE, MAX_WATERMARK, A_DAY_LATER)
    assert [entry.record["kind"] for entry in first] == [LogKind.SESSION] and second == []


def test_key_state_survives_its_wire_form():
    customers = build_roles(*_defaults(), packaged_policy(), time.perf_counter)[CUSTOMER]
    state, _, _, _ = customers.on_timer(None, [_item(a_signal("add_to_cart", BEGINNING)),
                                               _item(a_signal("page_view", AN_HOUR_LATER))], BEGINNING, ONE_MINUTE_LATER)
    restored = decode(encode(state))
    assert encode(restored) == encode(state)
    assert restored.journey.stage == "intent" and len(restored.items) == 1


def test_state_from_an_unknown_wire_version_is_refused_with_a_clear_message():
    text = encode(KeyState("c-1")).replace('"v":1', '"v":99')
    with pytest.raises(ValueError, match="wire version 99"):
        decode(text)


def test_the_visitor_role_hands_the_journey_over_in_one_record():
    visitors = build_roles(*_defaults(), packaged_policy(), time.perf_counter)[VISITOR]
    arrivals = [_item(a_signal("add_to_cart", BEGINNING, visitor="v-1"), key="v-1"),
                _item(a_login("v-1", "c-3", ONE_MINUTE_LATER), key="v-1")]
    state, out, _, _ = visitors.on_timer(None, arrivals, BEGINNING, ONE_MINUTE_LATER)
    routes = [entry for entry in out if isinstance(entry, Routed)]
    assert len(routes) == 1 and routes[0].key == "c-3"
    assert state.journey is None and state.links == [[ONE_MINUTE_LATER, "c-3"]]


def _defaults():
    from journeys.ontology import packaged_ontology
    from journeys.settings import packaged_settings
    return packaged_ontology(), packaged_settings()


def _item(signal, key=None, late=False):
    return intake_item(signal, key or signal["customer_id"] or signal["anonymous_id"], None, late)
