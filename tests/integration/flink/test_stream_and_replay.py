"""The stream job and the replay agree record for record, by id, whatever order the input is in:
both apply each key's signals in the order of the input."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from journeys.ontology import packaged_ontology
from journeys.outputs import LogKind
from journeys.settings import packaged_settings
from pipelines.reference import replay_lines
from pipelines.tools.files import read_lines
from pipelines.tools.simulate import SimulationSpec, simulate


def time_sorted(lines: list[bytes]) -> list[bytes]:
    return lines  # the simulator writes signals in time order, a few late ones aside


def grouped_by_customer(lines: list[bytes]) -> list[bytes]:
    """Each customer's (or visitor's) signals together, in time order, as exports usually come."""
    return sorted(lines, key=lambda raw: (_owner(raw), _event_time(raw)))


def mildly_shuffled(lines: list[bytes]) -> list[bytes]:
    rng = random.Random(11)
    within = packaged_settings().max_out_of_orderness_ms // 2
    return sorted(lines, key=lambda raw: _event_time(raw) + rng.randint(0, within))


@pytest.mark.flink
@pytest.mark.parametrize("order", [time_sorted, grouped_by_customer, mildly_shuffled], ids=lambda order: order.__name__)
def test_the_replay_equals_the_flink_job_at_parallelism_2_record_for_record(order, tmp_path):
    from jobs.journey_job import main as run_job
    from pipelines.beam.rows import session_row, stage_history_row
    from pipelines.beam.storage import decision_row
    from pipelines.reports.summary import read_records
    from tests.harness import job_arguments

    signals = tmp_path / "signals.jsonl"
    signals.write_bytes(b"\n".join(order(list(simulate(SimulationSpec(customers=80, days=6, seed=62, late_rate=0.01)))))
                        + b"\n")
    assert run_job(job_arguments(signals, tmp_path / "stream", "--parallelism", "2")) == 0
    stream_log = list(read_records(tmp_path / "stream" / "journeys"))
    stream_decisions = list(read_records(tmp_path / "stream" / "decisions"))
    end_clock = json.loads((tmp_path / "stream" / "summary.json").read_text())["end_clock"]
    # In its own process, as a data engineer runs it: see tests/conftest.py.
    replay_command = [str(Path(sys.executable).parent / "journeys"), "replay", "--input", str(signals),
                      "--output", str(tmp_path / "replay"), "--end-clock", str(end_clock)]
    completed = subprocess.run(replay_command, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "counts add up: yes" in completed.stdout
    replay = {name: pq.read_table(tmp_path / "replay" / name).to_pylist() for name in ("decisions", "sessions", "stage_history")}
    for session in replay["sessions"]:
        session["event_types"] = dict(session["event_types"])  # a parquet map reads back as pairs

    def rows(records):
        return sorted(json.dumps(row, sort_keys=True) for row in records)

    assert rows(replay["sessions"]) == rows(row for r in stream_log if (row := session_row(r)))
    assert rows(replay["stage_history"]) == rows(row for r in stream_log if (row := stage_history_row(r)))
    acted = [row for row in replay["decisions"] if row["acted"]]  # the replay's table is the decision log
    assert len(acted) > 100
    assert rows(acted) == rows(decision_row(d) for d in stream_decisions)
    late_in_stream = sorted(r["event_id"] for r in stream_log if r["kind"] == LogKind.LATE)
    replayed = replay_lines(packaged_ontology(), packaged_settings(), read_lines(signals), end_clock=end_clock)
    assert late_in_stream == sorted(r["event_id"] for r in replayed.journey_records if r["kind"] == LogKind.LATE)


def _owner(raw: bytes) -> str:
    try:
        signal = orjson.loads(raw)
        return str(signal.get("customer_id") or signal.get("anonymous_id") or "")
    except (orjson.JSONDecodeError, AttributeError):
        return ""


def _event_time(raw: bytes) -> int:
    try:
        value = orjson.loads(raw).get("event_time")
    except (orjson.JSONDecodeError, AttributeError):
        return 0
    return value if isinstance(value, int) else 0


def clickstream_grouped_by_user(users: int = 40, sessions: int = 4, clicks: int = 6) -> str:
    """A clickstream export the way they usually come: each user's rows together, in time order;
    every user has `sessions` bursts of `clicks` a minute apart, three hours apart."""
    from tests.harness import BEGINNING, HOUR, MINUTE

    rows = ["user_id,item_id,category_id,behavior,ts,session_id"]
    for user in range(1, users + 1):
        for burst in range(sessions):
            for click in range(clicks):
                at = BEGINNING + user * MINUTE + burst * 3 * HOUR + click * MINUTE
                behavior = "cart" if click == clicks - 1 else "pv"
                visit = f"v{user}-{burst}" if user % 2 else ""  # half of them browse with a visitor id
                rows.append(f"{user},{100 + click},7,{behavior},{at // 1000},{visit}")
    return "\n".join(rows) + "\n"


@pytest.mark.flink
def test_an_export_grouped_by_user_through_import_and_the_job_gives_the_replays_sessions(tmp_path):
    """Each user's rows together, in time order: imported as they are, and run at parallelism 1,
    where the visitor operator reads the lines itself."""
    from jobs.journey_job import main as run_job
    from pipelines.beam.rows import session_row
    from pipelines.reports.summary import read_records
    from tests.harness import job_arguments, run_import

    users, sessions = 40, 4
    imported, rejected = run_import(tmp_path, clickstream_grouped_by_user(users, sessions))
    assert len(imported) == users * sessions * 6 and not rejected
    signals = tmp_path / "signals.jsonl"
    assert run_job(job_arguments(signals, tmp_path / "stream")) == 0
    stream_sessions = [row for r in read_records(tmp_path / "stream" / "journeys") if (row := session_row(r))]
    assert not [r for r in read_records(tmp_path / "stream" / "journeys") if r["kind"] == LogKind.LATE]
    end_clock = json.loads((tmp_path / "stream" / "summary.json").read_text())["end_clock"]
    completed = subprocess.run([str(Path(sys.executable).parent / "journeys"), "replay", "--input", str(signals),
                                "--output", str(tmp_path / "replay"), "--end-clock", str(end_clock)],
                               capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    replayed = pq.read_table(tmp_path / "replay" / "sessions").to_pylist()
    for session in replayed:
        session["event_types"] = dict(session["event_types"])
    assert len(stream_sessions) == users * sessions  # every burst is a session: none lost to lateness
    assert sorted(json.dumps(r, sort_keys=True) for r in stream_sessions) == \
        sorted(json.dumps(r, sort_keys=True) for r in replayed)
