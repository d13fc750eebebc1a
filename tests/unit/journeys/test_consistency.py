"""Cross-channel consistency, worked by hand: a decision is stale when a signal that happened
before it, on any channel, arrives after it and moves the journey to a stage that does not offer
its action. 09:00 is the shop's morning in UTC, so quiet hours stay out of the way."""
from __future__ import annotations

from journeys.ontology import packaged_ontology
from journeys.settings import packaged_settings
from pipelines.reference import ReferenceRun
from pipelines.reports.summary import summarize
from tests.harness import (A_DAY_LATER, BEGINNING, MINUTE, NOW, ONE_MINUTE_LATER, EveryoneConsents, a_signal,
                           line)

CART_AT = BEGINNING
SESSION_CLOSED = BEGINNING + 30 * MINUTE          # the abandoned-cart reminder goes out by e-mail then
A_MINUTE_BEFORE_THE_CART = BEGINNING - MINUTE
TEN_MINUTES_BEFORE_THE_REMINDER = SESSION_CLOSED - 10 * MINUTE
LONG_AFTER = BEGINNING + 45 * MINUTE


def run(*signals: dict) -> ReferenceRun:
    played = ReferenceRun(packaged_ontology(), packaged_settings(), now_ms=NOW, profiles=EveryoneConsents(),
                          end_clock=A_DAY_LATER)
    return played.feed(line(s) for s in signals).finish()


def stale_in(played: ReferenceRun) -> list[tuple[str, str, str]]:
    return [(r["action"], r["signal_channel"], r["channel"]) for r in played.journey_records if r["kind"] == "stale_decision"]


def in_store(event_type: str, at: int) -> dict:
    return a_signal(event_type, at, channel="store", event_id=f"{event_type}-in-store")


def test_an_on_site_nudge_is_stale_when_a_store_purchase_from_a_minute_before_arrives_after_it():
    played = run(a_signal("add_to_cart", CART_AT, cart_value=40), in_store("purchase", A_MINUTE_BEFORE_THE_CART))

    assert stale_in(played) == [("onsite_cart_nudge", "store", "web")]


def test_an_e_mailed_cart_reminder_is_stale_when_a_purchase_made_before_it_arrives_too_late_to_apply():
    played = run(a_signal("add_to_cart", CART_AT, cart_value=40), a_signal("page_view", LONG_AFTER),
                 in_store("purchase", TEN_MINUTES_BEFORE_THE_REMINDER))

    assert [r["event_id"] for r in played.journey_records if r["kind"] == "late"] == ["purchase-in-store"]
    assert stale_in(played) == [("abandoned_cart_reminder", "store", "email")]


def test_a_purchase_after_the_decisions_makes_none_of_them_stale():
    played = run(a_signal("add_to_cart", CART_AT, cart_value=40), in_store("purchase", ONE_MINUTE_LATER))

    assert stale_in(played) == []


def test_the_runs_consistency_is_the_share_of_acted_decisions_not_stale_with_stale_ones_by_channel_pair():
    played = run(a_signal("add_to_cart", CART_AT, cart_value=40), a_signal("page_view", LONG_AFTER),
                 in_store("purchase", TEN_MINUTES_BEFORE_THE_REMINDER))
    acted = [d["action"] for d in played.decision_log if d["acted"]]

    figures = summarize(3, played.journey_records, played.decision_log, [])["consistency"]

    assert acted == ["onsite_cart_nudge", "abandoned_cart_reminder"]  # the purchase came before no other decision
    assert figures == {"acted": 2, "stale": 1, "share": 0.5, "stale_by_channel_pair": {"store -> email": 1}}


def test_the_journey_map_shows_the_same_consistency_with_its_stale_channel_pairs():
    from pipelines.reports.journey_map import build_map
    from pipelines.reports.map_page import render

    played = run(a_signal("add_to_cart", CART_AT, cart_value=40), a_signal("page_view", LONG_AFTER),
                 in_store("purchase", TEN_MINUTES_BEFORE_THE_REMINDER))

    built = build_map(played.journey_records, played.decision_log, packaged_ontology().stage_ids)

    assert built.consistency == {"acted": 2, "stale": 1, "share": 0.5, "stale_by_channel_pair": {"store -> email": 1}}
    assert "Cross-channel consistency: 50.00% of 2 acted decisions" in render(built)
