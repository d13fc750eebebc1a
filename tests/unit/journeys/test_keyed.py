"""Arrival order, lateness per journey, deduplication, identity stitching and time, without an engine."""
import random
import time
from dataclasses import replace

import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from journeys.assembly import build_roles
from journeys.keyed import CUSTOMER, VISITOR, intake_item, passes_through
from journeys.outputs import LogKind, Routed
from journeys.policy import packaged_policy
from journeys.state import SECTION, WIRE_VERSION, KeyState, decode, encode
from journeys.timers import END_OF_TIME, LIVE
from journeys.timeutil import MINUTE, SECOND
from tests.harness import (A_DAY_LATER, A_MONTH_LATER, AN_HOUR_LATER, BEGINNING, FAR_LATER, ONE_MINUTE_LATER,
                           TEN_MINUTES_LATER, TEN_SECONDS_LATER, TWO_HOURS_LATER, TWO_MINUTES_LATER, a_login, a_signal,
                           journey_records_in, play, records, stages_of)

BOUND = 2 * MINUTE  # event_time.max_out_of_orderness in the default configuration
GAP = 30 * MINUTE   # sessions.gap in the default configuration


def test_a_duplicate_is_dropped_and_counted():
    signal = a_signal("add_to_cart", BEGINNING)
    run = play([signal, signal, a_signal("page_view", AN_HOUR_LATER)])
    assert [r["event_id"] for r in records(run, LogKind.DUPLICATE)] == [signal["event_id"]]
    assert len([r for r in records(run, LogKind.SIGNAL) if r["event_id"] == signal["event_id"]]) == 1


def test_a_duplicate_arriving_after_its_original_was_applied_is_still_dropped():
    signal = a_signal("add_to_cart", BEGINNING)
    run = play([signal, a_signal("page_view", TEN_MINUTES_LATER), signal | {"event_time": BEGINNING}])
    assert len(records(run, LogKind.DUPLICATE)) == 1


def test_a_signal_further_behind_its_journey_than_the_bound_is_late_counted_and_not_applied():
    late = a_signal("purchase", BEGINNING)
    run = play([a_signal("page_view", BEGINNING + 30 * SECOND), a_signal("page_view", AN_HOUR_LATER), late])
    [record] = records(run, LogKind.LATE)
    assert record["event_id"] == late["event_id"] and record["late_by"] == "journey_clock"
    assert record["behind_ms"] == AN_HOUR_LATER - BEGINNING
    assert record["signal"] == late  # kept whole, for reprocessing
    assert "conversion" not in stages_of(run, "c-1")


def test_lateness_is_judged_per_journey_so_a_file_grouped_by_customer_has_nothing_late():
    first = [a_signal("page_view", BEGINNING + n * MINUTE, customer="c-1") for n in range(5)]
    second = [a_signal("page_view", BEGINNING + n * MINUTE, customer="c-2") for n in range(5)]
    run = play(first + second)
    assert records(run, LogKind.LATE) == []
    assert len(records(run, LogKind.SIGNAL, "c-2")) == 5


def test_a_signal_behind_its_journey_within_the_bound_applies_with_its_own_event_time():
    newer = a_signal("product_view", TWO_MINUTES_LATER, channel="app")
    older = a_signal("search", ONE_MINUTE_LATER, channel="web")
    run = play([a_signal("page_view", BEGINNING), newer, older])
    assert records(run, LogKind.LATE) == []
    [session] = records(run, LogKind.SESSION)
    assert (session["start"], session["end"], session["signals"]) == (BEGINNING, TWO_MINUTES_LATER, 3)
    journey = run.state_of(CUSTOMER, "c-1").journey
    assert [t[0] for t in journey.touchpoints] == [BEGINNING, ONE_MINUTE_LATER, TWO_MINUTES_LATER]
    assert journey.last_activity == TWO_MINUTES_LATER and journey.activity.last_channel == "app"


@hypothesis_settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), jitter=st.integers(0, BOUND - 1))
def test_arrival_order_within_the_bound_loses_no_signal_and_keeps_the_sessions(seed, jitter):
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

    def sessions(run):
        return sorted((r["journey"], r["start"], r["end"], r["signals"]) for r in records(run, LogKind.SESSION))

    assert records(actual, LogKind.LATE) == []
    assert sessions(actual) == sessions(expected)
    assert ({r["event_id"] for r in records(actual, LogKind.SIGNAL)}
            == {r["event_id"] for r in records(expected, LogKind.SIGNAL)})


def test_the_same_signals_in_the_same_order_give_the_same_journeys_and_decisions():
    rng = random.Random(3)
    signals = [a_signal(rng.choice(("page_view", "product_view", "add_to_cart", "purchase")),
                        BEGINNING + rng.randint(0, 3 * 3600) * SECOND, customer=f"c-{rng.randint(1, 4)}")
               for _ in range(60)]
    first, second = play(signals, end_clock=A_DAY_LATER), play(signals, end_clock=A_DAY_LATER)
    assert first.journey_records == second.journey_records
    assert [d["decision_id"] for d in first.decisions] == [d["decision_id"] for d in second.decisions]


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


def test_a_bounded_key_registers_one_timer_at_the_end_of_time_and_never_another():
    customers = _roles()[CUSTOMER]
    state, _, register, delete = customers.on_signal(None, _item(a_signal("page_view", BEGINNING)))
    assert (register, delete, state.timers) == ([END_OF_TIME], [], [END_OF_TIME])
    state, _, register, delete = customers.on_signal(state, _item(a_signal("page_view", AN_HOUR_LATER)))
    assert (register, delete) == ([], [])


def test_time_driven_events_happen_when_the_keys_next_signal_arrives():
    customers = _roles()[CUSTOMER]
    state, _, _, _ = customers.on_signal(None, _item(a_signal("page_view", BEGINNING)))
    state, out, _, _ = customers.on_signal(state, _item(a_signal("page_view", AN_HOUR_LATER)))
    kinds = [r["kind"] for r in journey_records_in(out)]
    assert kinds.index(LogKind.SESSION) < kinds.index(LogKind.SIGNAL)  # the gap closed the session first


def test_a_live_key_has_one_timer_at_its_next_due_time_in_wall_clock_time():
    customers = _roles(LIVE)[CUSTOMER]
    lag = 250
    state, _, register, _ = customers.on_signal(None, _item(a_signal("page_view", BEGINNING), ingested_at=BEGINNING + lag))
    assert register == [BEGINNING + GAP + lag] and state.lag == lag
    # A later signal moves the session's end later: the timer stays where it is, and re-arms when it fires.
    state, _, register, delete = customers.on_signal(state, _item(a_signal("page_view", TEN_MINUTES_LATER),
                                                                  ingested_at=TEN_MINUTES_LATER + lag))
    assert (register, delete) == ([], [])
    state, out, register, _ = customers.on_timer(state, BEGINNING + GAP + lag, wall_time=True)
    assert journey_records_in(out, LogKind.SESSION) == [] and register == [TEN_MINUTES_LATER + GAP + lag]


def test_a_live_key_closes_its_session_when_its_timer_fires_in_silence():
    customers = _roles(LIVE)[CUSTOMER]
    state, _, register, _ = customers.on_signal(None, _item(a_signal("page_view", BEGINNING), ingested_at=BEGINNING))
    state, out, _, _ = customers.on_timer(state, register[0], wall_time=True)
    [session] = journey_records_in(out, LogKind.SESSION)
    assert session["open"] is False and session["end"] == BEGINNING
    assert state.clock == BEGINNING + GAP


def test_the_end_of_input_flush_runs_once_per_key():
    customers = _roles()[CUSTOMER]
    state, _, _, _ = customers.on_signal(None, _item(a_signal("page_view", BEGINNING)))
    state, first, _, _ = customers.on_timer(state, END_OF_TIME, BEGINNING + 10 * MINUTE)
    _, second, _, _ = customers.on_timer(state, END_OF_TIME, A_DAY_LATER)
    assert [entry.record["kind"] for entry in first] == [LogKind.SESSION] and second == []


def test_key_state_survives_its_wire_form():
    customers = _roles()[CUSTOMER]
    state, _, _, _ = customers.on_signal(None, _item(a_signal("add_to_cart", BEGINNING)))
    state, _, _, _ = customers.on_signal(state, _item(a_signal("page_view", ONE_MINUTE_LATER)))
    restored = decode(encode(state))
    assert encode(restored) == encode(state)
    assert restored.journey.stage == "intent" and restored.clock == ONE_MINUTE_LATER


def test_a_version_1_state_keeps_what_it_buffered_and_applies_it_at_its_next_call():
    buffered = _item(a_signal("add_to_cart", BEGINNING))
    head = '[%d,"%s","s",false,null,"c-1"]' % (BEGINNING, "x")
    version_1 = ('{"v":1,"k":"c-1","p":[%s],"sn":{},"c":null,"t":[%d],"e":false,"l":[],"lx":null}' % (head, BEGINNING)
                 + SECTION + SECTION + buffered)
    state = decode(version_1)
    assert state.backlog == [buffered] and state.lag is None
    state, out, _, _ = _roles()[CUSTOMER].on_signal(state, _item(a_signal("page_view", ONE_MINUTE_LATER)))
    assert [r["event_type"] for r in journey_records_in(out, LogKind.SIGNAL)] == ["add_to_cart", "page_view"]
    assert state.backlog == []


def test_a_key_remembers_the_earliest_signal_it_applied_even_one_that_came_out_of_order():
    customers = _roles()[CUSTOMER]
    state, _, _, _ = customers.on_signal(None, _item(a_signal("page_view", ONE_MINUTE_LATER)))
    state, _, _, _ = customers.on_signal(state, _item(a_signal("page_view", TEN_SECONDS_LATER)))
    assert decode(encode(state)).first_seen == TEN_SECONDS_LATER


def _as_version_3(state: KeyState) -> str:
    """The state as a version-3 release wrote it: the same sections, a journey without the arm,
    withdrawals and contact stages of version 4, and a time zone from any signal."""
    meta, journey, items = encode(state).split(SECTION)
    if journey:
        wire = orjson.loads(journey)
        for key in ("am", "wd"):
            del wire[key]
        wire["co"] = [contact[:4] for contact in wire["co"]]
        journey = orjson.dumps(wire | {"tz": "UTC"}).decode()
    return orjson.dumps(orjson.loads(meta) | {"v": 3}).decode() + SECTION + journey + SECTION + items


def _as_version_2(state: KeyState) -> str:
    """The state as a version-2 release wrote it: version 3's, without the first sight of the key."""
    meta, journey, items = _as_version_3(state).split(SECTION)
    wire = orjson.loads(meta)
    del wire["fs"]
    return orjson.dumps(wire | {"v": 2}).decode() + SECTION + journey + SECTION + items


def test_a_version_2_state_takes_the_start_of_its_journey_as_the_keys_first_sight():
    customers = _roles()[CUSTOMER]
    state, _, _, _ = customers.on_signal(None, _item(a_signal("page_view", BEGINNING)))
    state, _, _, _ = customers.on_signal(state, _item(a_signal("add_to_cart", ONE_MINUTE_LATER)))
    upgraded = decode(_as_version_2(state))
    assert upgraded.first_seen == BEGINNING
    assert encode(upgraded).startswith(f'{{"v":{WIRE_VERSION},')
    # nothing else changes but what version 4 added (the next test)
    assert upgraded.journey == replace(state.journey, timezone=None, arm=None, contacts=[c[:4] for c in state.journey.contacts])


def test_a_version_3_journey_forgets_a_zone_no_device_is_known_to_have_said_and_keeps_its_own_keys_arm():
    customers = _roles()[CUSTOMER]
    state, _, _, _ = customers.on_signal(None, _item(a_signal("page_view", BEGINNING) | {"timezone": "Asia/Tokyo"}))
    assert state.journey.timezone == "Asia/Tokyo" and state.journey.arm[2] == "c-1"

    upgraded = decode(_as_version_3(state)).journey

    assert upgraded.timezone is None and upgraded.withdrawn == {}
    assert upgraded.arm_identity() == [BEGINNING, BEGINNING, "c-1"]


def test_a_version_2_visitor_that_handed_its_journey_on_takes_its_clock_as_its_first_sight():
    visitor = KeyState("v-1", clock=ONE_MINUTE_LATER, links=[[ONE_MINUTE_LATER, "c-1"]])
    assert decode(_as_version_2(visitor)).first_seen == ONE_MINUTE_LATER


def test_state_from_an_unknown_wire_version_is_refused_with_a_clear_message():
    text = encode(KeyState("c-1")).replace(f'"v":{WIRE_VERSION}', '"v":99')
    with pytest.raises(ValueError, match="wire version 99"):
        decode(text)


def test_the_visitor_role_hands_the_journey_over_in_one_record():
    visitors = _roles()[VISITOR]
    state, _, _, _ = visitors.on_signal(None, _item(a_signal("add_to_cart", BEGINNING, visitor="v-1"), key="v-1"))
    state, out, _, _ = visitors.on_signal(state, _item(a_login("v-1", "c-3", ONE_MINUTE_LATER), key="v-1"))
    routes = [entry for entry in out if isinstance(entry, Routed)]
    assert len(routes) == 1 and routes[0].key == "c-3"
    assert state.journey is None and state.links == [[ONE_MINUTE_LATER, "c-3"]]


def test_a_signal_that_names_its_customer_passes_the_visitor_on_to_the_customer_without_linking():
    visitors = _roles()[VISITOR]
    signal = a_signal("product_view", BEGINNING, customer="c-3", visitor="v-1")
    state, out, _, _ = visitors.on_signal(None, _item(signal, key="v-1"))
    [route] = [entry for entry in out if isinstance(entry, Routed)]
    assert route.key == "c-3" and state is None  # nothing to keep for the visitor


def test_a_customers_own_signal_passes_through_the_visitor_role_unread():
    own = intake_item(a_signal("email_open", BEGINNING, channel="email"), CUSTOMER, "c-1", None)
    anonymous = intake_item(a_signal("page_view", BEGINNING, visitor="v-1"), VISITOR, "v-1", None)
    assert passes_through(own) == "c-1" and passes_through(anonymous) is None


def test_an_operator_that_has_read_the_head_already_gets_the_same_call():
    from journeys.outputs import Decision
    from journeys.state import encode, item_head

    def ids(out):
        return [(type(o).__name__, getattr(o, "record", {}).get("decision_id")) for o in out]

    customers = _roles()[CUSTOMER]
    item = _item(a_signal("add_to_cart", BEGINNING, customer="c-1", cart_value="40"))
    head = item_head(item)
    own = intake_item(a_signal("email_open", BEGINNING, channel="email"), CUSTOMER, "c-1", None)
    read_once, read_twice = customers.on_signal(None, item, head), customers.on_signal(None, item)
    assert encode(read_once.state) == encode(read_twice.state)
    assert ids(read_once.out) == ids(read_twice.out) and any(isinstance(o, Decision) for o in read_once.out)
    assert passes_through(own, item_head(own)) == "c-1"


def _roles(time_mode: str = "bounded"):
    from journeys.ontology import packaged_ontology
    from journeys.settings import packaged_settings
    return build_roles(packaged_ontology(), packaged_settings(), packaged_policy(), time.perf_counter, time_mode=time_mode)


def _item(signal, key=None, ingested_at=None):
    role = VISITOR if key is not None and key == signal["anonymous_id"] else CUSTOMER
    return intake_item(signal, role, key or signal["customer_id"] or signal["anonymous_id"], ingested_at)


def _handoff_of(visitors, signals):
    state, routed = None, []
    for signal in signals:
        state, out, _, _ = visitors.on_signal(state, _item(signal, key=signal["anonymous_id"]))
        routed += [entry for entry in out if isinstance(entry, Routed)]
    [handoff] = routed
    return handoff.item


def test_a_handoff_that_arrives_after_the_customers_own_signal_still_joins():
    roles = _roles()
    handoff = _handoff_of(roles[VISITOR], [a_signal("add_to_cart", BEGINNING, visitor="v-1"),
                                           a_login("v-1", "c-3", ONE_MINUTE_LATER)])
    own = _item(a_signal("email_open", TWO_MINUTES_LATER, customer="c-3", channel="email"))
    customers = roles[CUSTOMER]
    state, _, _, _ = customers.on_signal(None, own)
    state, out, _, _ = customers.on_signal(state, handoff)
    [stitch] = journey_records_in(out, LogKind.STITCH)
    assert stitch["anonymous_id"] == "v-1"
    journey = state.journey
    assert journey.counts == {"email_open": 1, "add_to_cart": 1, "login": 1}
    assert [t[0] for t in journey.touchpoints] == [BEGINNING, ONE_MINUTE_LATER, TWO_MINUTES_LATER]
    # The defined difference: the customer's own signal started the journey later than the visitor's
    # cart, so its initial stage is the latest evidence and stays (handoff first, it would be intent).
    assert journey.stage == "discovery"


def test_a_handoff_far_behind_the_customers_clock_joins_though_its_login_is_late():
    roles = _roles()
    handoff = _handoff_of(roles[VISITOR], [a_signal("add_to_cart", BEGINNING, visitor="v-1"),
                                           a_login("v-1", "c-3", ONE_MINUTE_LATER)])
    state, _, _, _ = roles[CUSTOMER].on_signal(None, _item(a_signal("email_open", AN_HOUR_LATER, customer="c-3",
                                                                    channel="email")))
    state, out, _, _ = roles[CUSTOMER].on_signal(state, handoff)
    assert [r["kind"] for r in journey_records_in(out)] == [LogKind.STITCH, LogKind.LATE]
    assert state.journey.counts == {"email_open": 1, "add_to_cart": 1}


def test_a_live_key_carries_out_a_planned_follow_up_when_it_falls_due_in_silence():
    from journeys.agents import FollowUp

    customers = _roles(LIVE)[CUSTOMER]
    state, _, _, _ = customers.on_signal(None, _item(a_signal("page_view", BEGINNING), ingested_at=BEGINNING))
    plan = FollowUp("c-1:check@1", "conversion", TEN_MINUTES_LATER, "cart_reminder", "email", frozenset({"purchase"}),
                    0.5, "a test plan")
    state.journey.plans.append(plan.to_wire())
    state, _, register, _ = customers.on_signal(state, _item(a_signal("page_view", ONE_MINUTE_LATER),
                                                             ingested_at=ONE_MINUTE_LATER))
    assert register == [TEN_MINUTES_LATER]  # earlier than the session's end: the timer moves earlier
    _, out, _, _ = customers.on_timer(state, TEN_MINUTES_LATER, wall_time=True)
    assert [d["trigger"] for d in (e.record for e in out if type(e).__name__ == "Decision")] == ["plan_due"]
