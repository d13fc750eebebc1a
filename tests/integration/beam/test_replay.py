"""The Beam replay (pipelines.beam.pipeline): what the in-process replay does, as parquet tables,
on JSON lines, Avro and parquet archives, and on what `journeys import` wrote."""
from __future__ import annotations

import json

import apache_beam as beam
import orjson
import pyarrow.parquet as pq
import pytest
from apache_beam.testing import test_pipeline as beam_testing
from apache_beam.testing.util import assert_that, equal_to

from journeys.ontology import packaged_ontology
from journeys.outputs import LogKind
from journeys.settings import packaged_settings
from pipelines.beam.pipeline import ReplayJourneys, ReplayOptions
from pipelines.cli.main import main as journeys_cli
from pipelines.reference import replay_lines
from pipelines.tools.files import read_lines
from tests.harness import NOW, canonical, profiles_of


@pytest.mark.beam
def test_the_beam_pipeline_emits_what_the_pure_replay_does(archive):
    ontology, settings = packaged_ontology(), packaged_settings()
    lines = list(read_lines(archive))
    expected = replay_lines(ontology, settings, lines, now_ms=NOW)
    with beam_testing.TestPipeline() as pipeline:
        tables = (pipeline | beam.Create(list(enumerate(lines)))
                  | ReplayJourneys(ontology, settings, ReplayOptions(now_ms=NOW, progress_s=0)))
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
                                                               if r["kind"] == LogKind.SESSION)
    dead = pq.read_table(out / "dead_letters").to_pylist()
    assert len(dead) == summary["rejected"] and all(row["original"] is not None for row in dead)
    history = pq.read_table(tmp_path / "journey_activity.parquet")
    assert history.schema.field("event_timestamp").type.tz == "UTC" and history.num_rows > 0


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
    from tests.harness import CLICKS_CSV, run_import

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
