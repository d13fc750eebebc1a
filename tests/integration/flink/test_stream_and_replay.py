"""The stream job and the replay agree record for record, except where signals were late for the stream."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from journeys.ontology import packaged_ontology
from journeys.outputs import LogKind
from journeys.settings import packaged_settings
from pipelines.reference import replay_lines
from pipelines.tools.files import read_lines
from pipelines.tools.simulate import SimulationSpec, write_simulation


@pytest.mark.flink
def test_the_replay_equals_the_flink_job_record_for_record_except_where_signals_were_late_for_the_stream(tmp_path):
    from jobs.journey_job import main as run_job
    from pipelines.reports.summary import read_records
    from tests.harness import job_arguments

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

    late = [r for r in stream_log if r["kind"] == LogKind.LATE]
    assert late, "the input has signals beyond the lateness bound"
    # Defined difference 1: the replay applies every signal the stream job reported late.
    applied_by_stream = {r["event_id"] for r in stream_log if r["kind"] == LogKind.SIGNAL}
    replayed = replay_lines(packaged_ontology(), packaged_settings(), read_lines(signals), end_clock=end_clock)
    applied_by_replay = {r["event_id"] for r in replayed.journey_records if r["kind"] == LogKind.SIGNAL}
    assert applied_by_replay == applied_by_stream | {r["event_id"] for r in late}
    # Defined difference 2: only journeys that took a late signal (and the customers such a
    # visitor was stitched into) may differ; every other journey is the same, record for record.
    touched = {r["journey"] for r in late}
    for record in replayed.journey_records + stream_log:
        if record["kind"] == LogKind.STITCH and record["anonymous_id"] in touched:
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
