"""The batch replay: the same core as the stream job, key by key (journeys.replay), and the Beam
pipeline around it (pipelines.beam.pipeline), with its parquet tables."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import orjson
import pyarrow.parquet as pq
import pytest
from apache_beam.testing import test_pipeline as beam_testing
from apache_beam.testing.util import assert_that, equal_to

from pipelines.tools.files import read_lines
from journeys.ontology import packaged_ontology
from pipelines.reference import ReferenceRun
from pipelines.beam.rows import Labels, training_rows
from pipelines.reference import replay_lines
from journeys.settings import packaged_settings
from pipelines.tools.simulate import SimulationSpec, write_simulation
from journeys.timeutil import DAY
from pipelines.cli.main import main as journeys_cli
from pipelines.beam.pipeline import ReplayJourneys, ReplayOptions
from tests.builders import (A_DAY_LATER, AN_HOUR_LATER, BEGINNING, FOUR_DAYS_LATER, NOW, TEN_MINUTES_LATER, a_login,
                            a_signal, canonical, line)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Simulated signals with nothing beyond the lateness bound: the stream job applies them all."""
    path = tmp_path_factory.mktemp("archive") / "signals.jsonl"
    write_simulation(SimulationSpec(customers=120, days=12, seed=61, late_rate=0.0), path, profiles_of(path))
    return path


def profiles_of(archive):
    return archive.with_name("profiles.parquet")


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


def test_a_signal_beyond_the_lateness_bound_is_applied_by_the_replay_and_reported_late_by_the_stream():
    on_time = [a_signal("page_view", BEGINNING, customer="c-9"), a_signal("page_view", AN_HOUR_LATER, customer="c-9")]
    straggler = a_signal("add_to_cart", TEN_MINUTES_LATER, customer="c-9", event_id="the-straggler")
    lines = [line(s) for s in (*on_time, straggler)]
    streamed = ReferenceRun(packaged_ontology(), packaged_settings(), now_ms=NOW).feed(lines).finish()
    replayed = replay_lines(packaged_ontology(), packaged_settings(), lines, now_ms=NOW)
    assert [r["event_id"] for r in streamed.journey_records if r["kind"] == "late"] == ["the-straggler"]
    assert "the-straggler" in {r.get("event_id") for r in replayed.journey_records if r["kind"] == "signal"}
    assert not [r for r in replayed.journey_records if r["kind"] == "late"]


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


@pytest.mark.beam
def test_the_beam_pipeline_emits_what_the_pure_replay_does(archive):
    ontology, settings = packaged_ontology(), packaged_settings()
    lines = list(read_lines(archive))
    expected = replay_lines(ontology, settings, lines, now_ms=NOW)
    with beam_testing.TestPipeline() as pipeline:
        tables = (pipeline | beam.Create(lines)
                  | ReplayJourneys(ontology, settings, ReplayOptions(now_ms=NOW, progress_every=0)))
        assert_that(tables["decisions"] | "DecisionIds" >> beam.Map(lambda d: d["decision_id"]),
                    equal_to([d["decision_id"] for d in expected.decision_log]), label="decisions")
        assert_that(tables["journey_log"] | "Canonical" >> beam.Map(lambda r: canonical([r])[0]),
                    equal_to(canonical(expected.journey_records)), label="journey log")
        assert_that(tables["dead_letters"] | "Reasons" >> beam.Map(lambda r: (r["reason"], r["original"])),
                    equal_to([(r["reason"], __import__("base64").b64decode(r["original"])) for r in expected.dead_letters]),
                    label="dead letters")


@pytest.mark.beam
def test_journeys_replay_writes_parquet_tables_and_a_summary_that_adds_up(archive, tmp_path):
    out = tmp_path / "replay"
    assert journeys_cli(["replay", "--input", str(archive), "--output", str(out), "--profiles", str(profiles_of(archive)),
                         "--feature-history", str(tmp_path / "journey_activity.parquet")]) == 0
    summary = json.loads((out / "_replay_summary.json").read_text())
    assert summary["balanced"] and summary["records_in"] == len(list(read_lines(archive)))
    decisions = pq.read_table(out / "decisions").to_pylist()
    assert len(decisions) == summary["decisions"] > 0
    from journeys.features import StaticProfiles
    from pipelines.tools.simulate import read_profiles

    expected = replay_lines(packaged_ontology(), packaged_settings(), read_lines(archive),
                            profiles=StaticProfiles(read_profiles(profiles_of(archive))))
    assert {d["feature_source"] for d in decisions if d["customer_id"]} == {"online"}
    assert sorted(d["decision_id"] for d in decisions) == sorted(d["decision_id"] for d in expected.decision_log)
    sessions = pq.read_table(out / "sessions").to_pylist()
    assert sorted(s["session_id"] for s in sessions) == sorted(r["session_id"] for r in expected.journey_records
                                                               if r["kind"] == "session")
    dead = pq.read_table(out / "dead_letters").to_pylist()
    assert len(dead) == summary["rejected"] and all(row["original"] is not None for row in dead)
    history = pq.read_table(tmp_path / "journey_activity.parquet")
    assert history.schema.field("event_timestamp").type.tz == "UTC" and history.num_rows > 0


@pytest.mark.flink
def test_the_replay_equals_the_flink_job_record_for_record_except_where_signals_were_late_for_the_stream(tmp_path):
    from jobs.journey_job import main as run_job
    from pipelines.reports.summary import read_records
    from tests.test_flink_job import job_arguments

    signals = tmp_path / "signals.jsonl"
    write_simulation(SimulationSpec(customers=150, days=12, seed=62, late_rate=0.01), signals)
    assert run_job(job_arguments(signals, tmp_path / "stream")) == 0
    stream_log = list(read_records(tmp_path / "stream" / "journeys"))
    stream_decisions = list(read_records(tmp_path / "stream" / "decisions"))
    end_clock = json.loads((tmp_path / "stream" / "summary.json").read_text())["end_clock"]
    # In its own process, as a data engineer runs it: see tests/conftest.py.
    replay_command = [str(Path(sys.executable).parent / "journeys"), "replay", "--input", str(signals),
                      "--output", str(tmp_path / "replay"), "--end-clock", str(end_clock)]
    completed = subprocess.run(replay_command, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    replay = {name: pq.read_table(tmp_path / "replay" / name).to_pylist()
              for name in ("decisions", "sessions", "stage_history")}
    for session in replay["sessions"]:
        session["event_types"] = dict(session["event_types"])  # a parquet map reads back as pairs

    late = [r for r in stream_log if r["kind"] == "late"]
    assert late, "the input has signals beyond the lateness bound"
    # Defined difference 1: the replay applies every signal the stream job reported late.
    applied_by_stream = {r["event_id"] for r in stream_log if r["kind"] == "signal"}
    replayed = replay_lines(packaged_ontology(), packaged_settings(), read_lines(signals), end_clock=end_clock)
    applied_by_replay = {r["event_id"] for r in replayed.journey_records if r["kind"] == "signal"}
    assert applied_by_replay == applied_by_stream | {r["event_id"] for r in late}
    # Defined difference 2: only journeys that took a late signal (and the customers such a
    # visitor was stitched into) may differ; every other journey is the same, record for record.
    touched = {r["journey"] for r in late}
    for record in replayed.journey_records + stream_log:
        if record["kind"] == "stitch" and record["anonymous_id"] in touched:
            touched.add(record["journey"])

    def untouched(rows, key="journey"):
        return sorted(json.dumps(row, sort_keys=True) for row in rows if row[key] not in touched)

    from pipelines.beam.rows import session_row, stage_history_row
    from pipelines.beam.storage import decision_row

    stream_sessions = [row for r in stream_log if (row := session_row(r))]
    stream_history = [row for r in stream_log if (row := stage_history_row(r))]
    assert untouched(replay["sessions"]) == untouched(stream_sessions)
    assert untouched(replay["stage_history"]) == untouched(stream_history)
    acted = [row for row in replay["decisions"] if row["acted"]]  # the replay's table is the decision log
    assert untouched(acted) == untouched([decision_row(d) for d in stream_decisions])
    assert len(untouched(acted)) > len(stream_decisions) / 2  # the comparison is not vacuous


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


def _event_time(raw: bytes):
    try:
        value = orjson.loads(raw).get("event_time")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, int) else None


@pytest.mark.beam
def test_an_avro_archive_and_a_parquet_export_replay_to_the_same_decisions_as_json_lines(archive, tmp_path):
    import pyarrow as pa

    from journeys.contract import SignalDecoder, write_avro_container

    decoder = SignalDecoder()
    signals = [s for raw in read_lines(archive) if isinstance(s := decoder.decode_json(raw, NOW), dict)]
    with open(tmp_path / "signals.avro", "wb") as sink:
        write_avro_container(signals, sink)
    table = pa.Table.from_pylist([s | {"attributes": list(s["attributes"].items())} for s in signals],
                                 schema=pa.schema([("event_id", pa.string()), ("event_time", pa.int64()),
                                                   ("channel", pa.string()), ("event_type", pa.string()),
                                                   ("customer_id", pa.string()), ("anonymous_id", pa.string()),
                                                   ("session_hint", pa.string()),
                                                   ("attributes", pa.map_(pa.string(), pa.string())),
                                                   ("schema_version", pa.int64()), ("timezone", pa.string())]))
    pq.write_table(table, tmp_path / "signals.parquet")
    expected = replay_lines(packaged_ontology(), packaged_settings(), [orjson.dumps(s) for s in signals])
    for name in ("signals.avro", "signals.parquet"):
        out = tmp_path / name.replace(".", "-")
        assert journeys_cli(["replay", "--input", str(tmp_path / name), "--output", str(out),
                             "--emit", "decisions"]) == 0
        replayed = pq.read_table(out / "decisions").to_pylist()
        assert sorted(d["decision_id"] for d in replayed) == sorted(d["decision_id"] for d in expected.decision_log), name


@pytest.mark.beam
def test_a_replay_runs_on_what_journeys_import_wrote_and_on_the_training_set(tmp_path):
    from tests.test_importer import CLICKS_CSV, run_import

    run_import(tmp_path, CLICKS_CSV)
    out = tmp_path / "replay"
    assert journeys_cli(["replay", "--input", str(tmp_path / "signals.jsonl"), "--output", str(out),
                         "--emit", "journeys,decisions,training-set"]) == 0
    summary = json.loads((out / "_replay_summary.json").read_text())
    assert summary["balanced"] and summary["records_in"] == 4
    journeys = pq.read_table(out / "journeys").to_pylist()
    assert {j["journey"] for j in journeys} >= {"1", "3"}
    training = pq.read_table(out / "training_set")
    assert training.num_rows == len([d for d in pq.read_table(out / "decisions").to_pylist() if d["customer_id"]])
