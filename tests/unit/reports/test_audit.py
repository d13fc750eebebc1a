"""`journeys audit` finds broken guardrails from a run's input, without the job's reading of it:
contacts in the customer's quiet hours, contacts after consent was withdrawn, and people who were
in both arms under two of their identities."""
from __future__ import annotations

import orjson

from journeys.ontology import packaged_ontology
from journeys.policy import packaged_policy
from journeys.timeutil import DAY, HOUR, MINUTE, parse_instant
from pipelines.cli.main import main as journeys
from pipelines.reports.audit import audit, decode_signals, format_audit
from tests.harness import a_login, a_signal, line

THREE_AM_IN_NEW_YORK = parse_instant("2026-03-03T08:00:00Z")
NOON_IN_NEW_YORK = parse_instant("2026-03-03T17:00:00Z")
POLICY, ONTOLOGY = packaged_policy(), packaged_ontology()


def a_decision(decision_id: str, at: int, *, journey: str = "c-1", channel: str = "email", acted: bool = True,
               control: bool = False, customer: str | None = "c-1") -> dict:
    return {"decision_id": decision_id, "journey": journey, "customer_id": customer, "decided_at": at,
            "channel": channel, "action": "abandoned_cart_reminder", "acted": acted, "control": control}


def in_new_york(event_type: str, at: int, **kwargs) -> dict:
    return a_signal(event_type, at, **kwargs) | {"timezone": "America/New_York"}


def test_an_e_mail_at_three_in_the_morning_in_the_customers_zone_is_found_and_one_at_noon_is_not():
    signals = [in_new_york("page_view", THREE_AM_IN_NEW_YORK - HOUR)]
    decisions = [a_decision("d-night", THREE_AM_IN_NEW_YORK), a_decision("d-noon", NOON_IN_NEW_YORK),
                 a_decision("d-web", THREE_AM_IN_NEW_YORK, channel="web")]

    found = audit(signals, decisions, POLICY, ONTOLOGY)

    assert found.quiet_hour_contacts == ["d-night"] and not found.clean


def test_the_zone_is_the_one_the_customer_said_last_before_the_decision_or_else_the_profiles():
    moved_to_tokyo = [in_new_york("page_view", THREE_AM_IN_NEW_YORK - DAY),
                      a_signal("page_view", THREE_AM_IN_NEW_YORK - HOUR) | {"timezone": "Asia/Tokyo"}]  # 16:00 there
    silent = [a_signal("page_view", THREE_AM_IN_NEW_YORK - HOUR, customer="c-2") | {"timezone": ""}]
    decisions = [a_decision("d-tokyo", THREE_AM_IN_NEW_YORK),
                 a_decision("d-profile", THREE_AM_IN_NEW_YORK, journey="c-2", customer="c-2")]

    found = audit(moved_to_tokyo + silent, decisions, POLICY, ONTOLOGY,
                  profiles=[{"customer_id": "c-2", "timezone": "America/New_York"}])

    assert found.quiet_hour_contacts == ["d-profile"]


def test_an_e_mail_after_an_unsubscribe_is_found_unless_a_later_profile_gave_consent_back():
    signals = [a_signal("unsubscribe", NOON_IN_NEW_YORK - HOUR, channel="email"),
               a_signal("unsubscribe", NOON_IN_NEW_YORK - HOUR, channel="email", customer="c-2")]
    decisions = [a_decision("d-before", NOON_IN_NEW_YORK - 2 * HOUR), a_decision("d-after", NOON_IN_NEW_YORK),
                 a_decision("d-sms", NOON_IN_NEW_YORK, channel="sms"),
                 a_decision("d-resubscribed", NOON_IN_NEW_YORK, journey="c-2", customer="c-2")]

    found = audit(signals, decisions, POLICY, ONTOLOGY,
                  profiles=[{"customer_id": "c-2", "event_timestamp": NOON_IN_NEW_YORK - MINUTE}])

    assert found.contacts_after_withdrawal == ["d-after"]


def test_a_person_is_in_both_arms_when_their_visitor_and_their_customer_id_were_decided_in_different_arms():
    signals = [a_signal("page_view", NOON_IN_NEW_YORK, visitor="v-1"), a_login("v-1", "c-1", NOON_IN_NEW_YORK + MINUTE),
               a_signal("page_view", NOON_IN_NEW_YORK, visitor="v-2"), a_login("v-2", "c-2", NOON_IN_NEW_YORK + MINUTE)]
    decisions = [a_decision("d-1", NOON_IN_NEW_YORK, journey="v-1", customer=None, channel="web", control=True),
                 a_decision("d-2", NOON_IN_NEW_YORK + HOUR, channel="web"),
                 a_decision("d-3", NOON_IN_NEW_YORK, journey="v-2", customer=None, channel="web"),
                 a_decision("d-4", NOON_IN_NEW_YORK + HOUR, journey="c-2", customer="c-2", channel="web")]

    found = audit(signals, decisions, POLICY, ONTOLOGY)

    assert found.people == 2 and found.people_in_both_arms == ["c-1"]
    assert "people in both arms                                1  control and treated (e.g. c-1)" in format_audit(found)


def test_a_cart_reminder_after_the_purchase_is_found_unless_a_new_cart_came_between():
    signals = [a_signal("add_to_cart", NOON_IN_NEW_YORK - 3 * HOUR), a_signal("purchase", NOON_IN_NEW_YORK - 2 * HOUR),
               a_signal("add_to_cart", NOON_IN_NEW_YORK - 3 * HOUR, customer="c-2"),
               a_signal("purchase", NOON_IN_NEW_YORK - 2 * HOUR, customer="c-2"),
               a_signal("add_to_cart", NOON_IN_NEW_YORK - HOUR, customer="c-2")]
    decisions = [a_decision("d-after-purchase", NOON_IN_NEW_YORK),
                 a_decision("d-before-purchase", NOON_IN_NEW_YORK - 2 * HOUR - MINUTE),
                 a_decision("d-new-cart", NOON_IN_NEW_YORK, journey="c-2", customer="c-2")]

    found = audit(signals, decisions, POLICY, ONTOLOGY)
    heard_of_later = audit(signals, decisions, POLICY, ONTOLOGY, stale=frozenset({"d-after-purchase"}))

    assert found.cart_actions_after_purchase == ["d-after-purchase"] and not found.clean
    assert heard_of_later.purchase_arrived_after == ["d-after-purchase"] and heard_of_later.clean


def test_the_command_reads_a_run_and_fails_when_a_guardrail_broke(tmp_path, capsys):
    signals = tmp_path / "signals.jsonl"
    signals.write_bytes(b"\n".join([line(in_new_york("page_view", THREE_AM_IN_NEW_YORK - HOUR)), b"not json"]))
    log = tmp_path / "decision-log"
    log.mkdir()
    (log / "part-0.jsonl").write_bytes(orjson.dumps(a_decision("d-night", THREE_AM_IN_NEW_YORK)) + b"\n")

    status = journeys(["audit", "--signals", str(signals), "--decision-log", str(log), "--out", str(tmp_path / "a.json")])

    assert status == 1 and "GUARDRAILS BROKEN" in capsys.readouterr().out
    assert orjson.loads((tmp_path / "a.json").read_bytes())["quiet_hour_contacts"] == 1
    assert [s["event_type"] for s in decode_signals(signals.read_bytes().split(b"\n"))] == ["page_view"]


def test_a_person_is_named_by_their_customer_id_whatever_the_ids_look_like():
    signals = [a_signal("page_view", NOON_IN_NEW_YORK, visitor="device-7"),
               a_login("device-7", "anon-corp-17", NOON_IN_NEW_YORK + MINUTE)]
    decisions = [a_decision("d-1", NOON_IN_NEW_YORK, journey="device-7", customer=None, channel="web", control=True),
                 a_decision("d-2", NOON_IN_NEW_YORK + HOUR, journey="anon-corp-17", customer="anon-corp-17", channel="web")]

    assert audit(signals, decisions, POLICY, ONTOLOGY).people_in_both_arms == ["anon-corp-17"]
