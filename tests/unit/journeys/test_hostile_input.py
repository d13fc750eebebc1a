"""Whatever a record holds, the core neither raises nor keeps a value that breaks a later call."""
import math

import orjson
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from journeys.contract import MAX_NUMBER, REJECTION_REASONS, IntakeLimits
from journeys.keyed import CUSTOMER
from journeys.ontology import packaged_ontology
from journeys.settings import packaged_settings
from journeys.state import SECTION, decode, encode
from pipelines.reference import ReferenceRun
from tests.harness import BEGINNING, NOW, TEN_MINUTES_LATER, a_signal, line

LIMITS = IntakeLimits()
EARLIEST, LATEST = LIMITS.min_event_time_ms, NOW + LIMITS.max_future_skew_ms
EVENT_TYPES = sorted(packaged_ontology().signals) + ["unmapped_thing"]
ZONES = ["UTC", "", "Pacific/Kiritimati", "Pacific/Pago_Pago", "America/St_Johns", "Asia/Kathmandu", "Etc/GMT+12"]
CHANNELS = ["web", "app", "call_center", "store", "email", "sms", "push"]

ids = st.one_of(st.sampled_from(["c-1", "c-2", "v-1", "v-2"]),
                st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=LIMITS.max_id_length))
numbers = st.one_of(st.sampled_from(["0", "-0", str(MAX_NUMBER), f"-{MAX_NUMBER:.0f}", "1e-300", "0.005", ".5"]),
                    st.floats(-MAX_NUMBER, MAX_NUMBER, allow_nan=False).map(repr))
attributes = st.dictionaries(st.sampled_from(["cart_value", "sku", "page", "decision_id", "outcome", "reason"]),
                             st.one_of(numbers, st.text(max_size=200)), max_size=6)


@st.composite
def extreme_signals(draw):
    customer, visitor = draw(st.one_of(st.tuples(ids, st.none()), st.tuples(st.none(), ids), st.tuples(ids, ids)))
    signal = a_signal(draw(st.sampled_from(EVENT_TYPES)), draw(st.integers(EARLIEST, LATEST)), customer=customer,
                      visitor=visitor, channel=draw(st.sampled_from(CHANNELS)))
    signal["attributes"] = draw(attributes)
    signal["timezone"] = draw(st.sampled_from(ZONES))
    return signal


def a_run() -> ReferenceRun:
    return ReferenceRun(packaged_ontology(), packaged_settings(), end_clock=LATEST, now_ms=NOW)


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(extreme_signals(), min_size=2, max_size=8))
def test_valid_but_extreme_signals_go_through_the_core_twice_without_raising(signals):
    run = a_run().feed(line(signal) for signal in signals)  # every state is encoded and decoded between calls
    run.feed(line(signal | {"event_id": signal["event_id"] + "-again"}) for signal in signals).finish()
    assert {letter["reason"] for letter in run.dead_letters} <= set(REJECTION_REASONS) - {"internal_error"}
    for role_states in run.states.values():
        for text in role_states.values():
            state = decode(text)
            if state.has_journey():
                assert math.isfinite(state.journey.activity.cart_value)


def test_a_state_an_older_build_wrote_with_a_nan_cart_value_reads_as_an_empty_cart():
    run = a_run().feed([line(a_signal("add_to_cart", BEGINNING, customer="c-1", cart_value="20"))])
    state = run.state_of(CUSTOMER, "c-1")
    state.journey.activity.cart_value = float("nan")  # what intake let through before it checked numbers
    run.states[CUSTOMER]["c-1"] = encode(state)  # the JSON codec writes it as null
    assert orjson.loads(run.states[CUSTOMER]["c-1"].split(SECTION)[1])["ac"][1] is None
    run.feed([line(a_signal("add_to_cart", TEN_MINUTES_LATER, customer="c-1", cart_value="5"))])
    assert run.state_of(CUSTOMER, "c-1").journey.activity.cart_value == 5.0
