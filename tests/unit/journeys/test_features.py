"""Features: guarded profile lookups (the Feast wing's resilience), behavioural features and
consent in decisions (the pure core)."""

from journeys.features import (MISSING, ONLINE, PROFILE_DEFAULTS, Activity, StaticProfiles, activity_features,
                               record_activity)
from journeys.timeutil import DAY, HOUR, MINUTE
from tests.harness import (A_DAY_LATER, AN_HOUR_LATER, BEGINNING, ONE_MINUTE_LATER, TEN_MINUTES_LATER, a_core, a_signal,
                           decisions_in)

PROFILE = dict(PROFILE_DEFAULTS, lifetime_value=420.0, segment="loyal", consent_email=True)


def test_activity_counts_the_last_hour_and_day_the_cart_and_support_contacts():
    activity = Activity()
    for at, kind, attributes in [(BEGINNING, "page_view", {}), (BEGINNING + 5 * MINUTE, "add_to_cart", {"cart_value": "40"}),
                                 (BEGINNING + 6 * MINUTE, "add_to_cart", {"cart_value": "15.5"}),
                                 (BEGINNING + 2 * HOUR, "support_call", {}), (BEGINNING + 3 * HOUR, "page_view", {})]:
        category = {"add_to_cart": "cart", "support_call": "service"}.get(kind, "browse")
        record_activity(activity, at, "web", kind, category, attributes)
    features = activity_features(activity, BEGINNING + 3 * HOUR)
    assert features == {"events_last_hour": 1, "events_last_day": 5, "cart_value": 55.5, "last_channel": "web",
                        "support_contacts_7d": 1}
    record_activity(activity, BEGINNING + 4 * HOUR, "app", "purchase", "purchase", {})
    later = activity_features(activity, BEGINNING + 2 * DAY)
    assert later["cart_value"] == 0.0 and later["events_last_day"] == 0 and later["last_channel"] == "app"
    assert activity_features(activity, BEGINNING + 9 * DAY)["support_contacts_7d"] == 0


def test_activity_stays_bounded_to_a_day_of_hours():
    activity = Activity()
    for hour in range(100):
        record_activity(activity, BEGINNING + hour * HOUR, "web", "page_view", "browse", {})
    assert len(activity.hours) == 25


def model_with(ontology, settings, profiles):
    return a_core(StaticProfiles(profiles), ontology=ontology, settings=settings)


def decisions_for(model, signals, key="c-1"):
    journey, out = None, []
    for signal in signals:
        journey, produced = model.apply(journey, signal, key, False)
        out.extend(produced)
    journey, ticked = model.tick(journey, A_DAY_LATER)
    return decisions_in(out + ticked)


def test_decisions_record_the_profile_and_behavioural_features_they_used(ontology, settings):
    model = model_with(ontology, settings, [dict(PROFILE, customer_id="c-1")])
    [decision] = decisions_for(model, [a_signal("purchase", BEGINNING)])
    assert decision["feature_source"] == ONLINE
    assert decision["features"]["segment"] == "loyal" and decision["features"]["cart_value"] == 0.0
    assert decision["action"] == "order_follow_up" and decision["channel"] == "email"


def test_without_email_consent_an_email_action_goes_on_site_or_not_at_all(ontology, settings):
    model = model_with(ontology, settings, [dict(PROFILE, customer_id="c-1", consent_email=False)])
    decisions = decisions_for(model, [a_signal("product_view", BEGINNING), a_signal("add_to_cart", ONE_MINUTE_LATER)])
    # A welcome on site, the cart nudge, and no e-mail reminder when the session ends.
    assert [d["action"] for d in decisions] == ["welcome_content", "onsite_cart_nudge"]
    after_purchase = decisions_for(model, [a_signal("page_view", BEGINNING), a_signal("purchase", TEN_MINUTES_LATER)])
    # The order follow-up goes by e-mail only: without consent, nothing after the purchase.
    assert [d["action"] for d in after_purchase] == ["welcome_content"]


def test_a_customer_without_a_profile_is_decided_for_with_defaults_and_the_reason_says_so(ontology, settings):
    model = model_with(ontology, settings, [])
    [decision] = decisions_for(model, [a_signal("add_to_cart", BEGINNING)])
    assert decision["feature_source"] == MISSING
    assert "decided with defaults" in decision["justification"]


def test_anonymous_visitors_have_no_profile_lookup(ontology, settings):
    model = model_with(ontology, settings, [])
    journey, out = model.apply(None, a_signal("add_to_cart", BEGINNING, visitor="v-1"), "v-1", True)
    [decision] = decisions_in(out, acted_only=False)
    assert decision["feature_source"] == "none" and "segment" not in decision["features"]


def test_without_a_feature_store_no_consent_is_known_so_no_email_goes_out(ontology, settings):
    journey, out = a_core(ontology=ontology, settings=settings).apply(None, a_signal("purchase", BEGINNING), "c-1", False)
    [decision] = decisions_in(out, acted_only=False)
    assert decision["acted"] is False and decision["feature_source"] == "disabled"
    assert decision["suppressions"] == {"consent:email": 1}


def test_behavioural_feature_rows_are_produced_for_customers_when_asked(ontology, settings):
    core = a_core(push_features=True, ontology=ontology, settings=settings)
    journey, _ = core.apply(None, a_signal("add_to_cart", AN_HOUR_LATER, cart_value="30"), "c-1", False)
    customer, row = core.feature_row(journey)
    assert customer == "c-1" and row["cart_value"] == 30.0 and row["event_timestamp"] == AN_HOUR_LATER
    assert a_core(ontology=ontology, settings=settings).feature_row(journey) is None
