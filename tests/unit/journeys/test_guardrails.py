"""Guardrails that hold whatever the signals say and whatever order they arrive in: quiet hours in
the customer's own zone, consent withdrawn by a signal, one arm per person across stitching, and
a planned cart follow-up cancelled by a purchase that comes before it is due."""
from __future__ import annotations

import itertools
from datetime import datetime, timezone

import pytest

from journeys.features import StaticProfiles
from journeys.ontology import packaged_ontology
from journeys.policy import packaged_policy
from journeys.settings import packaged_settings
from journeys.timeutil import DAY, HOUR, MINUTE, parse_instant
from pipelines.reference import ReferenceRun
from tests.harness import NOW, EveryoneConsents, a_core, a_login, a_signal, decisions_in, line

POLICY = packaged_policy()
# 18:00 in New York (UTC-5 in March): a cart then is reminded of at 18:30, in the evening there.
NEW_YORK_EVENING = parse_instant("2026-03-02T23:00:00Z")
# 03:00 in New York: a reminder half an hour later would wake the customer.
NEW_YORK_NIGHT = parse_instant("2026-03-03T08:00:00Z")
SESSION_GAP = 30 * MINUTE


def from_new_york(event_type: str, at: int, **attributes) -> dict:
    return a_signal(event_type, at, **attributes) | {"timezone": "America/New_York"}


def an_answer(decision: dict, at: int) -> dict:
    """An outcome answer as delivery systems send it: stamped UTC, on the decision's channel."""
    return a_signal("clicked", at, channel=decision["channel"], decision_id=decision["decision_id"])


def reminders_after_a_cart(signals_after_nudge, cart_at: int, profiles=None) -> list[dict]:
    core = a_core(profiles or EveryoneConsents())
    journey, out = core.apply(None, from_new_york("add_to_cart", cart_at, cart_value=40), "c-1", False)
    [nudge] = decisions_in(out)
    for signal in signals_after_nudge(nudge):
        journey, produced = core.apply(journey, signal, "c-1", False)
        out.extend(produced)
    journey, produced = core.tick(journey, cart_at + SESSION_GAP + 5 * MINUTE)
    return [d for d in decisions_in(out + produced, acted_only=False) if d["trigger"] == "session_closed"]


# -- quiet hours ---------------------------------------------------------------------------------
def test_an_answer_stamped_utc_does_not_move_the_customer_into_utc_quiet_hours():
    [reminder] = reminders_after_a_cart(lambda nudge: [an_answer(nudge, NEW_YORK_EVENING + MINUTE)], NEW_YORK_EVENING)

    assert reminder["action"] == "abandoned_cart_reminder" and reminder["acted"]


def test_an_answer_stamped_utc_does_not_wake_a_customer_at_night_in_new_york():
    [reminder] = reminders_after_a_cart(lambda nudge: [an_answer(nudge, NEW_YORK_NIGHT + MINUTE)], NEW_YORK_NIGHT)

    assert not reminder["acted"]
    assert "quiet_hours" in reminder["candidates"][0]["suppressed_by"]


def test_a_signal_from_the_customers_mail_system_does_not_set_their_zone():
    def mail_in_utc(nudge):
        return [a_signal("email_open", NEW_YORK_NIGHT + MINUTE, channel="email")]

    [reminder] = reminders_after_a_cart(mail_in_utc, NEW_YORK_NIGHT)

    assert not reminder["acted"]


def test_the_profiles_zone_counts_until_a_device_reports_one_and_then_the_device_wins():
    tokyo = StaticProfiles([{"customer_id": "c-1", "consent_email": True, "tenure_days": 400, "timezone": "Asia/Tokyo"}])
    core = a_core(tokyo)
    cart_in_the_tokyo_night = parse_instant("2026-03-02T16:00:00Z")  # 01:00 in Tokyo, 16:00 in UTC
    no_zone = a_signal("add_to_cart", cart_in_the_tokyo_night, cart_value=40) | {"timezone": None}

    journey, out = core.apply(None, no_zone, "c-1", False)
    journey, closed = core.tick(journey, cart_in_the_tokyo_night + SESSION_GAP)
    [in_tokyo] = [d for d in decisions_in(closed, acted_only=False) if d["trigger"] == "session_closed"]
    from_berlin = a_signal("add_to_cart", cart_in_the_tokyo_night + DAY, cart_value=40) | {"timezone": "Europe/Berlin"}
    journey, out = core.apply(journey, from_berlin, "c-1", False)
    journey, closed = core.tick(journey, cart_in_the_tokyo_night + DAY + SESSION_GAP)
    [in_berlin] = [d for d in decisions_in(closed, acted_only=False) if d["trigger"] == "session_closed"]

    assert not in_tokyo["acted"] and "quiet_hours" in in_tokyo["candidates"][0]["suppressed_by"]
    assert in_berlin["acted"]  # 17:30 in Berlin


# -- consent withdrawn by a signal ---------------------------------------------------------------
CONSENTING_PROFILE = {"customer_id": "c-1", "consent_email": True, "consent_sms": True, "consent_push": True,
                      "tenure_days": 400, "timezone": "UTC"}
CART = parse_instant("2026-03-02T10:00:00Z")


def reminder_after(withdrawal: dict, profile_written_at: int) -> dict:
    core = a_core(StaticProfiles([CONSENTING_PROFILE | {"event_timestamp": profile_written_at}]))
    journey, _ = core.apply(None, withdrawal, "c-1", False)
    journey, _ = core.apply(journey, a_signal("add_to_cart", CART, cart_value=40), "c-1", False)
    journey, closed = core.tick(journey, CART + SESSION_GAP)
    [reminder] = [d for d in decisions_in(closed, acted_only=False) if d["trigger"] == "session_closed"]
    return reminder


def test_an_unsubscribe_withdraws_e_mail_at_once_over_a_profile_that_still_consents():
    reminder = reminder_after(a_signal("unsubscribe", CART - HOUR, channel="email"), profile_written_at=CART - DAY)

    assert not reminder["acted"]
    assert reminder["candidates"][0]["suppressed_by"] == ["consent_withdrawn:email"]


def test_a_profile_written_after_the_unsubscribe_gives_the_channel_back():
    reminder = reminder_after(a_signal("unsubscribe", CART - HOUR, channel="email"), profile_written_at=CART - MINUTE)

    assert reminder["acted"] and reminder["channel"] == "email"


def test_an_opt_out_withdraws_the_channel_it_names():
    reminder = reminder_after(a_signal("opt_out", CART - HOUR, channel="web", channel_name="x") |
                              {"attributes": {"channel": "email"}}, profile_written_at=CART - DAY)

    assert reminder["candidates"][0]["suppressed_by"] == ["consent_withdrawn:email"]


def test_a_complaint_that_asks_for_no_contact_withdraws_every_consented_channel_but_a_plain_one_does_not():
    core = a_core()
    journey, _ = core.apply(None, a_signal("complaint", CART, channel="call_center", no_contact="true"), "c-1", False)
    plain, _ = a_core().apply(None, a_signal("complaint", CART, channel="call_center"), "c-2", False)

    assert journey.withdrawn == {"*": CART}
    assert plain.withdrawn == {}


def test_an_unsubscribe_too_late_to_apply_still_withdraws_consent():
    profiles = StaticProfiles([CONSENTING_PROFILE | {"event_timestamp": CART - DAY}])
    run = ReferenceRun(packaged_ontology(), packaged_settings(), now_ms=NOW, profiles=profiles, end_clock=CART + DAY)
    cart = a_signal("add_to_cart", CART, cart_value=40)
    later = a_signal("page_view", CART + 10 * MINUTE)
    unsubscribe = a_signal("unsubscribe", CART + MINUTE, channel="email")  # arrives 9 minutes behind the journey
    run.feed(line(s) for s in (cart, later, unsubscribe)).finish()

    assert [r["event_id"] for r in run.journey_records if r["kind"] == "late"] == [unsubscribe["event_id"]]
    assert not [d for d in run.decision_log if d["acted"] and d["channel"] == "email"]
    assert any("consent_withdrawn:email" in c["suppressed_by"] for d in run.decision_log for c in d["candidates"])


# -- one arm per person --------------------------------------------------------------------------
assert POLICY.in_control_group("v-2") and not POLICY.in_control_group("c-1")
assert POLICY.in_control_group("c-2") and not POLICY.in_control_group("v-1")


def arms_of(run: ReferenceRun) -> set[bool]:
    return {d["control"] for d in run.decision_log}


@pytest.mark.parametrize("visitor, customer", [("v-2", "c-1"), ("v-1", "c-2")])
def test_a_visitor_who_logs_in_keeps_the_arm_they_were_in_while_anonymous(visitor, customer):
    signals = [a_signal("page_view", CART, visitor=visitor), a_login(visitor, customer, CART + MINUTE, event_id="in"),
               a_signal("add_to_cart", CART + 2 * MINUTE, customer=customer, visitor=visitor, cart_value=40),
               a_signal("purchase", CART + DAY, customer=customer)]
    run = ReferenceRun(packaged_ontology(), packaged_settings(), now_ms=NOW, profiles=EveryoneConsents())
    run.feed(line(s) for s in signals).finish()

    assert {d["journey"] for d in run.decision_log} == {visitor, customer}
    assert arms_of(run) == {POLICY.in_control_group(visitor)}


def test_a_customer_seen_before_their_visitor_keeps_the_customers_arm():
    signals = [a_signal("email_open", CART, customer="c-2", channel="email"), a_signal("page_view", CART + HOUR, visitor="v-1"),
               a_login("v-1", "c-2", CART + HOUR + MINUTE), a_signal("add_to_cart", CART + 2 * HOUR, customer="c-2",
                                                                      visitor="v-1", cart_value=40)]
    run = ReferenceRun(packaged_ontology(), packaged_settings(), now_ms=NOW, profiles=EveryoneConsents())
    run.feed(line(s) for s in signals).finish()

    stitched = [d for d in run.decision_log if d["journey"] == "c-2"]
    assert stitched and {d["control"] for d in stitched} == {True}


# -- a planned follow-up and the purchase --------------------------------------------------------
CART_SIGNALS = (
    a_signal("add_to_cart", CART, cart_value=40, event_id="cart"),
    a_signal("page_view", CART + 10 * HOUR, event_id="browse-later"),  # moves the journey's clock well past the purchase
    a_signal("purchase", CART + 5 * HOUR, event_id="purchase"),        # before the follow-up is due, a day after the reminder
)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))), ids=lambda o: "-".join(map(str, o)))
def test_a_purchase_before_the_follow_up_is_due_cancels_it_whatever_order_the_signals_arrive_in(order):
    past_the_follow_ups_due_time = CART + 3 * DAY
    run = ReferenceRun(packaged_ontology(), packaged_settings(), now_ms=NOW, profiles=EveryoneConsents(),
                       end_clock=past_the_follow_ups_due_time)
    run.feed(line(CART_SIGNALS[i]) for i in order).finish()

    assert "free_shipping_offer" not in [d["action"] for d in run.decision_log if d["acted"]]


def test_a_purchase_too_late_to_apply_still_cancels_the_follow_up_the_cart_reminder_planned():
    cart, browse_later, purchase = CART_SIGNALS
    run = ReferenceRun(packaged_ontology(), packaged_settings(), now_ms=NOW, profiles=EveryoneConsents(),
                       end_clock=CART + 3 * DAY)
    run.feed(line(s) for s in (cart, browse_later, purchase)).finish()

    assert [r["event_id"] for r in run.journey_records if r["kind"] == "late"] == ["purchase"]
    assert [r["action"] for r in run.journey_records if r["kind"] == "plan_cancelled"] == ["free_shipping_offer"]


def test_the_hour_names_in_these_tests_are_right():
    def local_hour(at, zone):
        from zoneinfo import ZoneInfo
        return datetime.fromtimestamp(at / 1000, tz=timezone.utc).astimezone(ZoneInfo(zone)).hour

    assert local_hour(NEW_YORK_EVENING, "America/New_York") == 18
    assert local_hour(NEW_YORK_NIGHT, "America/New_York") == 3


def test_no_one_is_in_both_arms_when_their_identities_are_tied_before_both_have_decided():
    from pipelines.reports.audit import audit

    signals = []
    for n in range(40):
        visitor, customer, start = f"v-{n}", f"c-{n}", CART + n * DAY
        if n % 2:  # the visitor first, then the login
            signals += [a_signal("page_view", start, visitor=visitor), a_login(visitor, customer, start + MINUTE)]
        else:      # the customer first (an e-mail), then a new device that logs in on its first visit
            signals += [a_signal("email_open", start, customer=customer, channel="email"),
                        a_login(visitor, customer, start + HOUR + MINUTE)]
        signals += [a_signal("add_to_cart", start + 2 * HOUR, customer=customer, visitor=visitor, cart_value=40),
                    a_signal("purchase", start + 3 * HOUR, customer=customer)]
    run = ReferenceRun(packaged_ontology(), packaged_settings(), now_ms=NOW, profiles=EveryoneConsents())
    run.feed(line(s) for s in signals).finish()

    found = audit(signals, run.decision_log, POLICY, packaged_ontology())
    assert found.people == 40 and found.people_in_both_arms == []
    assert {d["control"] for d in run.decision_log} == {True, False}  # both arms are there to be mixed up


def test_stitching_keeps_the_arm_already_decided_in_over_the_arm_of_an_identity_seen_first_that_had_not():
    core = a_core(EveryoneConsents())
    customer, _ = core.apply(None, a_signal("page_view", CART, customer="c-1"), "c-1", False)
    customer.arm[0] = None  # seen first, but no decision point of its own yet (none proposed anything)
    visitor, out = core.apply(None, a_signal("page_view", CART + HOUR, visitor="v-2"), "v-2", True)
    [visitors_decision] = decisions_in(out, acted_only=False)

    merged, _ = core.merge(customer, visitor, a_login("v-2", "c-1", CART + HOUR + MINUTE), "c-1")
    merged, out = core.apply(merged, a_signal("add_to_cart", CART + 2 * HOUR, customer="c-1", cart_value=40), "c-1", False)

    assert merged.arm == [CART + HOUR, CART + HOUR, "v-2"]
    assert [d["control"] for d in decisions_in(out, acted_only=False)] == [visitors_decision["control"]] == [True]


def test_a_purchase_too_late_to_apply_that_happened_in_the_session_stops_the_cart_reminder():
    cart = a_signal("add_to_cart", CART, cart_value=40, event_id="cart")
    checkout = a_signal("checkout_start", CART + 5 * MINUTE, event_id="checkout")  # moves the journey's clock on
    purchase = a_signal("purchase", CART + MINUTE, event_id="purchase")          # 4 minutes behind it: late
    run = ReferenceRun(packaged_ontology(), packaged_settings(), now_ms=NOW, profiles=EveryoneConsents(),
                       end_clock=CART + DAY)
    run.feed(line(s) for s in (cart, checkout, purchase)).finish()

    assert [r["event_id"] for r in run.journey_records if r["kind"] == "late"] == ["purchase"]
    assert "abandoned_cart_reminder" not in [d["action"] for d in run.decision_log]
