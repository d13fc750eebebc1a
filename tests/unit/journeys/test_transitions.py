"""The pure journey transitions, signal by signal, with no engine."""
from journeys.outputs import LogKind
from journeys.state import Journey
from journeys.timeutil import DAY, MINUTE
from tests.harness import (A_DAY_LATER, A_MONTH_LATER, A_WEEK_LATER, AN_HOUR_LATER, BEGINNING, EIGHT_DAYS_LATER,
                           FAR_LATER, FIVE_MINUTES_LATER, FOUR_DAYS_LATER, ONE_MINUTE_LATER, TEN_MINUTES_LATER,
                           TWO_MINUTES_LATER, a_signal, decisions_in, journey_records_in)


def apply_all(transitions, signals, key="c-1", anonymous=False):
    journey, outputs = None, []
    for signal in signals:
        journey, out = transitions.apply(journey, signal, key, anonymous)
        outputs.extend(out)
    return journey, outputs


decisions = decisions_in
journey_records = journey_records_in


def test_a_new_customer_starts_in_discovery(transitions):
    journey, _ = apply_all(transitions, [a_signal("page_view")])
    assert journey.stage == "discovery"
    assert journey.evidence == ["initial", None, BEGINNING]


def test_two_product_views_in_one_session_move_discovery_to_consideration(transitions):
    journey, outputs = apply_all(transitions, [a_signal("product_view", BEGINNING), a_signal("product_view", ONE_MINUTE_LATER)])
    assert journey.stage == "consideration"
    assert journey.evidence[0] == "product_interest"
    assert [r["stage"] for r in journey_records(outputs, LogKind.SIGNAL)] == ["discovery", "consideration"]


def test_one_product_view_is_not_enough_for_consideration(transitions):
    journey, _ = apply_all(transitions, [a_signal("product_view", BEGINNING)])
    assert journey.stage == "discovery"


def test_product_views_in_different_sessions_do_not_add_up(transitions):
    journey, _ = apply_all(transitions, [a_signal("product_view", BEGINNING), a_signal("product_view", AN_HOUR_LATER)])
    assert journey.stage == "discovery"


def test_adding_to_cart_shows_intent_and_decides_the_default_action(transitions):
    journey, outputs = apply_all(transitions, [a_signal("add_to_cart", BEGINNING, sku="s-1")])
    assert journey.stage == "intent"
    [decision] = decisions(outputs)
    assert decision["action"] == "onsite_cart_nudge"
    assert decision["trigger"] == "stage_entered"
    assert decision["event_id"] == outputs[0].record["event_id"]
    assert decision["justification"].startswith("Entered intent from discovery on add_to_cart (rule cart_shows_intent)")


def test_a_purchase_converts_from_any_stage(transitions):
    journey, _ = apply_all(transitions, [a_signal("page_view", BEGINNING), a_signal("purchase", ONE_MINUTE_LATER)])
    assert journey.stage == "conversion"


def test_conversion_settles_into_retention_after_a_week(transitions):
    journey, _ = apply_all(transitions, [a_signal("purchase", BEGINNING)])
    journey, outputs = transitions.tick(journey, EIGHT_DAYS_LATER)
    assert journey.stage == "retention"
    [transition] = journey_records(outputs, LogKind.TRANSITION)
    assert transition["at"] == A_WEEK_LATER
    assert transition["rule"] == "post_purchase_settles"
    assert decisions(outputs)[0]["action"] == "loyalty_offer"


def test_time_rules_fire_at_their_due_time_when_a_later_signal_arrives(transitions):
    journey, outputs = apply_all(transitions, [a_signal("purchase", BEGINNING), a_signal("page_view", EIGHT_DAYS_LATER)])
    assert journey.stage == "retention"
    assert journey_records(outputs, LogKind.TRANSITION)[0]["at"] == A_WEEK_LATER


def test_intent_cools_to_consideration_after_three_quiet_days(transitions):
    journey, _ = apply_all(transitions, [a_signal("add_to_cart", BEGINNING)])
    journey, _ = transitions.tick(journey, FOUR_DAYS_LATER)
    assert journey.stage == "consideration"


def test_a_quiet_customer_becomes_at_risk_then_churns_and_the_journey_closes(transitions):
    journey, _ = apply_all(transitions, [a_signal("purchase", BEGINNING)])
    journey, outputs = transitions.tick(journey, A_MONTH_LATER)
    assert journey.stage == "at_risk"
    assert decisions(outputs)[-1]["action"] == "winback_offer"
    journey, outputs = transitions.tick(journey, FAR_LATER)
    assert journey is None
    [closed] = journey_records(outputs, LogKind.CLOSED)
    assert closed["stage"] == "churned" and closed["reason"] == "terminal_stage"


def test_a_session_closes_after_the_inactivity_gap_with_a_summary(transitions):
    journey, _ = apply_all(transitions, [a_signal("page_view", BEGINNING, channel="app"),
                                   a_signal("product_view", FIVE_MINUTES_LATER, channel="web")])
    journey, outputs = transitions.tick(journey, AN_HOUR_LATER)
    [session] = journey_records(outputs, LogKind.SESSION)
    assert session["start"] == BEGINNING and session["end"] == FIVE_MINUTES_LATER
    assert session["signals"] == 2
    assert session["channels"] == ["app", "web"]
    assert session["open"] is False
    assert journey.session is None and journey.sessions_closed == 1


def test_a_signal_after_the_gap_starts_a_new_session(transitions):
    journey, outputs = apply_all(transitions, [a_signal("page_view", BEGINNING), a_signal("page_view", AN_HOUR_LATER)])
    first, second = journey_records(outputs, LogKind.SIGNAL)
    assert first["session_id"] != second["session_id"]
    assert len(journey_records(outputs, LogKind.SESSION)) == 1


def test_sessions_span_channels(transitions):
    journey, outputs = apply_all(transitions, [a_signal("page_view", BEGINNING, channel="web"),
                                         a_signal("store_visit", TEN_MINUTES_LATER, channel="store")])
    assert len({r["session_id"] for r in journey_records(outputs, LogKind.SIGNAL)}) == 1


def test_an_abandoned_cart_is_reminded_when_the_session_ends_without_a_purchase(transitions):
    journey, _ = apply_all(transitions, [a_signal("add_to_cart", BEGINNING)])
    _, outputs = transitions.tick(journey, AN_HOUR_LATER)
    [reminder] = decisions(outputs)
    assert reminder["action"] == "abandoned_cart_reminder"
    assert reminder["trigger"] == "session_closed"
    assert reminder["decided_at"] == BEGINNING + 30 * MINUTE


def test_a_cart_bought_in_the_same_session_is_not_reminded(transitions):
    journey, _ = apply_all(transitions, [a_signal("add_to_cart", BEGINNING), a_signal("purchase", ONE_MINUTE_LATER)])
    _, outputs = transitions.tick(journey, AN_HOUR_LATER)
    assert decisions(outputs) == []


def test_a_complaint_escalates_once_per_cooldown(transitions):
    journey, outputs = apply_all(transitions, [a_signal("purchase", BEGINNING),
                                         a_signal("complaint", ONE_MINUTE_LATER, channel="call_center"),
                                         a_signal("complaint", TWO_MINUTES_LATER, channel="call_center")])
    escalations = [d for d in decisions(outputs) if d["trigger"] == "escalation"]
    assert len(escalations) == 1
    assert escalations[0]["action"] == "escalate_to_agent" and escalations[0]["channel"] == "call_center"
    assert journey.stage == "at_risk"


def test_repeated_support_contacts_escalate_only_within_the_window(transitions):
    spread_out = [a_signal("support_call", BEGINNING, channel="call_center"),
                  a_signal("support_call", BEGINNING + 8 * DAY, channel="call_center")]
    _, outputs = apply_all(transitions, spread_out)
    assert [d for d in decisions(outputs) if d["trigger"] == "escalation"] == []
    close_together = [a_signal("support_call", BEGINNING, channel="call_center"),
                      a_signal("support_chat", A_DAY_LATER, channel="web")]
    _, outputs = apply_all(transitions, close_together)
    [escalation] = [d for d in decisions(outputs) if d["trigger"] == "escalation"]
    assert "2 contacts" in escalation["justification"] and "within 7d" in escalation["justification"]


def test_anonymous_visitors_get_no_actions_that_need_an_identity(transitions):
    journey, outputs = apply_all(transitions, [a_signal("add_to_cart", BEGINNING, visitor="v-1")], key="v-1", anonymous=True)
    assert [d["channel"] for d in decisions(outputs)] == ["web"]
    _, outputs = transitions.tick(journey, AN_HOUR_LATER)
    assert decisions(outputs) == []  # the abandoned-cart e-mail needs an identity


def test_an_anonymous_journey_expires_after_its_silence_limit(transitions):
    journey, _ = apply_all(transitions, [a_signal("page_view", BEGINNING, visitor="v-1")], key="v-1", anonymous=True)
    journey, outputs = transitions.tick(journey, A_MONTH_LATER)
    assert journey is None
    assert journey_records(outputs, LogKind.CLOSED)[0]["reason"] == "anonymous_expired"


def test_signals_the_ontology_does_not_know_are_kept_but_move_no_one(transitions):
    journey, outputs = apply_all(transitions, [a_signal("wishlist_add", BEGINNING)])
    [record] = journey_records(outputs, LogKind.SIGNAL)
    assert record["unmapped"] is True
    assert journey.stage == "discovery" and journey.counts == {"wishlist_add": 1}


def test_text_for_people_names_no_signal_the_ontology_does_not_know(transitions):
    _, outputs = apply_all(transitions, [a_signal("Call 555 123 4567", BEGINNING)])
    [decision] = decisions_in(outputs, acted_only=False)
    assert "555" not in decision["justification"] and "does not map" in decision["justification"]


def test_state_stays_bounded_however_many_signals_arrive(transitions):
    signals = [a_signal("page_view", BEGINNING + i * MINUTE) for i in range(500)]
    journey, _ = apply_all(transitions, signals)
    assert len(journey.touchpoints) == 10
    assert len(journey.session.hints) <= 4
    assert all(len(times) <= 2 for times in journey.recent.values())


def test_decision_ids_are_the_same_for_the_same_journey_trigger_and_action(transitions):
    signal = a_signal("add_to_cart", BEGINNING, event_id="e-42")
    _, first = apply_all(transitions, [signal])
    _, second = apply_all(transitions, [signal])
    assert decisions(first)[0]["decision_id"] == decisions(second)[0]["decision_id"]
    _, other = apply_all(transitions, [signal], key="c-3")
    assert decisions(other)[0]["decision_id"] != decisions(first)[0]["decision_id"]


def test_a_visitor_journey_merges_into_a_fresh_customer_with_its_stage_and_session(transitions):
    visitor, _ = apply_all(transitions, [a_signal("product_view", BEGINNING, visitor="v-1"),
                                   a_signal("add_to_cart", ONE_MINUTE_LATER, visitor="v-1")], key="v-1", anonymous=True)
    login = a_signal("login", TWO_MINUTES_LATER, visitor="v-1", customer="c-9")
    journey, outputs = transitions.merge(None, visitor, login, "c-9")
    assert journey.key == "c-9" and journey.anonymous is False
    assert journey.stage == "intent"
    assert journey.session.signals == 3
    assert journey.aliases == ["v-1"]
    [stitch] = journey_records(outputs, LogKind.STITCH)
    assert stitch["anonymous_id"] == "v-1" and stitch["event_id"] == login["event_id"]


def test_a_merge_keeps_the_stage_with_the_latest_evidence(transitions):
    customer, _ = apply_all(transitions, [a_signal("purchase", BEGINNING, customer="c-9")], key="c-9")
    visitor, _ = apply_all(transitions, [a_signal("add_to_cart", A_DAY_LATER, visitor="v-1")], key="v-1", anonymous=True)
    journey, _ = transitions.merge(customer, visitor, a_signal("login", A_DAY_LATER + MINUTE, visitor="v-1", customer="c-9"), "c-9")
    assert journey.stage == "intent"
    assert journey.counts["purchase"] == 1 and journey.counts["add_to_cart"] == 1


def test_journey_wire_form_round_trips():
    journey = Journey("c-1", False, "intent", BEGINNING, ["cart_shows_intent", "e-1", BEGINNING], BEGINNING,
                      BEGINNING, {"add_to_cart": 1}, {}, [[BEGINNING, "web", "add_to_cart"]])
    assert Journey.from_wire(journey.to_wire()) == journey
