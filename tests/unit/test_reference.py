"""The in-process runs (pipelines.reference): the replay key by key gives the stream semantics'
journeys and decisions, and the training rows it labels look only ahead of each decision."""
from __future__ import annotations

import orjson

from journeys.ontology import packaged_ontology
from journeys.outputs import LogKind
from journeys.settings import packaged_settings
from journeys.timeutil import DAY
from pipelines.beam.rows import Labels, training_rows
from pipelines.reference import ReferenceRun, replay_lines
from pipelines.tools.files import read_lines
from tests.harness import (A_DAY_LATER, AN_HOUR_LATER, BEGINNING, FOUR_DAYS_LATER, NOW, TEN_MINUTES_LATER, a_login,
                           a_signal, canonical, line, profiles_of)


def test_replaying_key_by_key_gives_the_journeys_and_decisions_of_the_stream_semantics(archive):
    ontology, settings = packaged_ontology(), packaged_settings()
    lines = list(read_lines(archive))
    replayed = replay_lines(ontology, settings, lines, now_ms=NOW)
    streamed = ReferenceRun(ontology, settings, end_clock=replayed.end_clock, now_ms=NOW).feed(lines).finish()
    assert replayed.decisions and replayed.dead_letters
    assert canonical(replayed.journey_records) == canonical(streamed.journey_records)
    assert canonical(replayed.decisions) == canonical(streamed.decisions)
    assert canonical(replayed.dead_letters) == canonical(streamed.dead_letters)


def test_with_customer_profiles_the_replay_decides_as_the_stream_job_does_with_its_feature_store(archive):
    from journeys.features import StaticProfiles
    from pipelines.tools.simulate import read_profiles

    ontology, settings = packaged_ontology(), packaged_settings()
    profiles = StaticProfiles(read_profiles(profiles_of(archive)))
    lines = list(read_lines(archive))
    replayed = replay_lines(ontology, settings, lines, now_ms=NOW, profiles=profiles)
    streamed = ReferenceRun(ontology, settings, end_clock=replayed.end_clock, now_ms=NOW, profiles=profiles)
    assert canonical(replayed.decisions) == canonical(streamed.feed(lines).finish().decisions)
    assert {d["feature_source"] for d in replayed.decisions if d["customer_id"]} == {"online"}


def test_a_signal_beyond_the_lateness_bound_is_late_in_the_replay_as_in_the_stream():
    on_time = [a_signal("page_view", BEGINNING, customer="c-9"), a_signal("page_view", AN_HOUR_LATER, customer="c-9")]
    straggler = a_signal("add_to_cart", TEN_MINUTES_LATER, customer="c-9", event_id="the-straggler")
    lines = [line(s) for s in (*on_time, straggler)]
    streamed = ReferenceRun(packaged_ontology(), packaged_settings(), now_ms=NOW).feed(lines).finish()
    replayed = replay_lines(packaged_ontology(), packaged_settings(), lines, now_ms=NOW)
    for run in (streamed, replayed):
        assert [r["event_id"] for r in run.journey_records if r["kind"] == LogKind.LATE] == ["the-straggler"]
        assert "the-straggler" not in {r.get("event_id") for r in run.journey_records if r["kind"] == LogKind.SIGNAL}


def test_the_replay_applies_each_keys_signals_in_source_order_whatever_the_input_order(archive):
    """Time-sorted, grouped by customer, and mildly shuffled within the bound: the replay gives the
    in-process stream's journeys and decisions for each."""
    import random

    ontology, settings = packaged_ontology(), packaged_settings()
    lines = list(read_lines(archive))
    rng = random.Random(5)
    timed = [(t, raw) for raw in lines if (t := _event_time(raw)) is not None]
    grouped = [raw for _, raw in sorted(timed, key=lambda pair: (_first_id(pair[1]), pair[0]))]
    shuffled = [raw for _, raw in sorted(timed, key=lambda pair: pair[0] + rng.randint(0, settings.max_out_of_orderness_ms // 2))]
    for order in (lines, grouped, shuffled):
        replayed = replay_lines(ontology, settings, order, now_ms=NOW)
        streamed = ReferenceRun(ontology, settings, end_clock=replayed.end_clock, now_ms=NOW).feed(order).finish()
        assert replayed.decisions
        assert canonical(replayed.journey_records) == canonical(streamed.journey_records)
        assert canonical(replayed.decisions) == canonical(streamed.decisions)
    grouped_run = replay_lines(ontology, settings, grouped, now_ms=NOW)
    assert not [r for r in grouped_run.journey_records if r["kind"] == LogKind.LATE]


def test_training_labels_look_only_ahead_of_each_decision_and_say_when_the_horizon_is_cut_off():
    signals = [a_login("v-1", "c-5", BEGINNING), a_signal("add_to_cart", TEN_MINUTES_LATER, customer="c-5"),
               a_signal("purchase", A_DAY_LATER, customer="c-5"),
               a_signal("page_view", FOUR_DAYS_LATER + 30 * DAY, customer="c-5")]
    run = replay_lines(packaged_ontology(), packaged_settings(), [line(s) for s in signals], now_ms=NOW)
    mine = [d for d in run.decision_log if d["customer_id"] == "c-5"]
    log = [r for r in run.journey_records if r["journey"] == "c-5"]
    rows = training_rows("c-5", mine, log, Labels(7 * DAY), run.end_clock)
    before_purchase = [r for r in rows if r["event_timestamp"] < A_DAY_LATER]
    at_or_after_purchase = [r for r in rows if r["event_timestamp"] >= A_DAY_LATER]
    assert before_purchase and all(r["converted"] for r in before_purchase)
    assert at_or_after_purchase and not any(r["converted"] for r in at_or_after_purchase)
    assert all(r["label_complete"] == (r["event_timestamp"] + 7 * DAY <= run.end_clock) for r in rows)


def test_training_features_are_what_was_known_at_each_decision_so_cutting_off_the_future_changes_none(archive):
    """No leakage: replaying only the signals up to a cut-off gives every earlier decision point
    the same features; only labels may look past it."""
    ontology, settings = packaged_ontology(), packaged_settings()
    lines = list(read_lines(archive))
    full = replay_lines(ontology, settings, lines, now_ms=NOW)
    times = sorted(t for raw in lines if (t := _event_time(raw)) is not None)
    cut_off = times[len(times) // 2]
    early = [raw for raw in lines if _event_time(raw) is None or _event_time(raw) <= cut_off]
    truncated = replay_lines(ontology, settings, early, now_ms=NOW)
    labels = Labels(7 * DAY)
    known = ("customer_id", "event_timestamp", "decision_id", "stage", "trigger", "action", "channel",
             "events_last_hour", "events_last_day", "cart_value", "last_channel", "support_contacts_7d")

    def rows(run):
        found = {}
        for customer in {d["customer_id"] for d in run.decision_log if d["customer_id"]}:
            decisions = [d for d in run.decision_log if d["customer_id"] == customer]
            log = [r for r in run.journey_records if r["journey"] == customer]
            for row in training_rows(customer, decisions, log, labels, run.end_clock):
                found[row["decision_id"]] = {name: row[name] for name in known}
        return found

    before_cut = {k: v for k, v in rows(full).items() if v["event_timestamp"] <= truncated.end_clock}
    assert len(before_cut) > 50
    assert {k: v for k, v in rows(truncated).items() if v["event_timestamp"] <= truncated.end_clock} == before_cut


def _first_id(raw: bytes) -> str:
    signal = orjson.loads(raw)
    return signal.get("customer_id") or signal.get("anonymous_id") or ""


def _event_time(raw: bytes):
    try:
        value = orjson.loads(raw).get("event_time")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, int) else None
