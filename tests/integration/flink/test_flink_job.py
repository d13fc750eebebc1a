"""The journey job on a real Flink MiniCluster: parallelism 2, out-of-order input, dead letters,
and a kill-and-restore from a retained checkpoint."""
from __future__ import annotations

import base64
import json
import os
import signal
from pathlib import Path

import pytest

from jobs.journey_job import main as run_job
from journeys.outputs import LogKind
from pipelines.reports.summary import read_records
from pipelines.tools.simulate import SimulationSpec, write_simulation
from tests.harness import (BEGINNING, a_signal, canonical, job_arguments, job_output, line, reference_output,
                           start_driver, wait_for_checkpoints)

pytestmark = pytest.mark.flink


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "signals.jsonl"
    write_simulation(SimulationSpec(customers=150, days=12, seed=21, late_rate=0.01), path)
    return path


@pytest.fixture(scope="module")
def parallel_run(simulated, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("parallel")
    assert run_job(job_arguments(simulated, out, "--parallelism", "2")) == 0
    return out


def test_the_job_at_parallelism_2_on_out_of_order_input_gives_exactly_the_reference_result(simulated, parallel_run):
    summary = json.loads((parallel_run / "summary.json").read_text())
    produced = job_output(parallel_run)
    expected = reference_output(simulated, summary["end_clock"])
    assert summary["runtime"]["parallelism"] == 2
    assert summary["late"] > 0 and summary["duplicates"] > 0 and summary["rejected"] > 0
    assert canonical(produced["journeys"]) == canonical(expected.journey_records)
    assert canonical(produced["decisions"]) == canonical(expected.decisions)
    assert canonical(produced["dead-letter"]) == canonical(expected.dead_letters)


def test_the_summary_adds_up_and_has_every_key_a_run_report_needs(parallel_run):
    summary = json.loads((parallel_run / "summary.json").read_text())
    for key in ("events_in", "accepted", "rejected", "duplicates", "late", "customers", "sessions", "decisions",
                "stage_accuracy", "stage_distribution", "top_transitions", "decisions_by_action", "rejected_by_reason"):
        assert key in summary, key
    assert summary["events_in"] == summary["accepted"] + summary["rejected"] + summary["duplicates"]
    assert summary["balanced"] is True
    assert 0.8 < summary["stage_accuracy"] <= 1.0


def test_every_decision_has_an_id_a_trigger_a_stage_and_a_reason(parallel_run):
    decisions = job_output(parallel_run)["decisions"]
    assert len({d["decision_id"] for d in decisions}) == len(decisions)
    assert all(d["stage"] and d["justification"] and d["action"] for d in decisions)
    assert all(d["event_id"] for d in decisions if d["trigger"] != "session_closed" and not d["rule"].startswith(
        ("post_purchase", "intent_cools", "customer_goes_quiet", "at_risk_lapses")))
    assert all(d["latency_ms"] >= 0 for d in decisions if d["event_id"])


def test_malformed_records_reach_the_dead_letter_output_with_reason_and_exact_bytes(tmp_path):
    good = [a_signal("page_view", BEGINNING + i * 1000, customer=f"c-{i}") for i in range(20)]
    bad = [b'{"event_id": "b-1", "event_time": 1', b'{"event_id": "caf\xe9 \xff"}', b"[1]", b"",
           line(good[0] | {"event_id": "b-2", "channel": "fax"}), line(good[0] | {"event_id": "b-3", "event_time": "soon"})]
    signals = tmp_path / "signals.jsonl"
    # \r\n and lone \r end lines too, as Java's readers split them
    signals.write_bytes(b"\n".join(line(s) for s in good[:10]) + b"\r\n" + b"\n".join(bad) + b"\r"
                        + b"\n".join(line(s) for s in good[10:]) + b"\n")
    out = tmp_path / "out"
    assert run_job(job_arguments(signals, out)) == 0
    dead = job_output(out)["dead-letter"]
    assert sorted(base64.b64decode(d["original"]) for d in dead) == sorted(bad)
    assert sorted(d["reason"] for d in dead) == sorted(["invalid_json", "invalid_utf8", "not_an_object", "empty_record",
                                                        "unknown_channel", "wrong_type"])
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["events_in"], summary["accepted"], summary["rejected"]) == (26, 20, 6)


def test_records_that_once_stopped_the_job_for_good_become_dead_letters_and_the_job_goes_on(tmp_path):
    good = [a_signal("add_to_cart", BEGINNING + i * 1000, customer=f"c-{i % 3}", cart_value="10") for i in range(12)]
    hostile = [line(good[0] | {"event_id": "h-1", "event_time": 253402300800000}),       # after year 9999
               line(good[0] | {"event_id": "h-2", "event_time": -99999999999999999}),    # before year 1
               line(good[0] | {"event_id": "h-3", "timezone": "A" * 300}),               # too long for a file name
               line(good[0] | {"event_id": "h-4", "attributes": {"cart_value": "nan"}}),  # would poison c-0's state
               line(good[0] | {"event_id": "h-5", "attributes": {"cart_value": "1e999"}})]
    signals = tmp_path / "signals.jsonl"
    signals.write_bytes(b"\n".join([line(s) for s in good[:6]] + hostile + [line(s) for s in good[6:]]) + b"\n")
    out = tmp_path / "out"
    assert run_job(job_arguments(signals, out)) == 0
    dead = job_output(out)["dead-letter"]
    assert sorted(base64.b64decode(d["original"]) for d in dead) == sorted(hostile)
    assert sorted(d["reason"] for d in dead) == ["event_time_in_future", "event_time_too_old", "invalid_number",
                                                 "invalid_number", "unknown_timezone"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["events_in"], summary["accepted"], summary["rejected"]) == (17, 12, 5)


def test_a_restore_from_a_path_that_holds_no_checkpoint_stops_before_flink_starts_and_says_why(simulated, tmp_path,
                                                                                                   capsys):
    assert run_job(job_arguments(simulated, tmp_path / "out", "--restore", str(tmp_path / "no-such-chk"))) == 2
    said = capsys.readouterr().err
    assert "--restore" in said and "not a retained checkpoint or savepoint" in said and "Exception" not in said


@pytest.mark.parametrize("registry, said", [("file:///no/such", "file:///no/such: no such directory"),
                                             ("{tmp}", "a registry in plain files is not served")])
def test_a_model_registry_in_plain_files_stops_the_driver_with_its_own_reason(simulated, tmp_path, capsys, registry,
                                                                              said):
    arguments = job_arguments(simulated, tmp_path / "out", "--model-registry", registry.format(tmp=tmp_path))
    assert run_job(arguments) == 2
    error = capsys.readouterr().err
    assert said in error and "maintenance mode and will not receive" not in error


def test_three_thousand_hostile_lines_among_simulated_signals_leave_the_job_running_and_the_counts_adding_up(
        simulated, tmp_path):
    import random

    from pipelines.tools.hostile import hostile_lines

    lines = simulated.read_bytes().splitlines()
    rng = random.Random(11)
    for _, hostile in hostile_lines(3_000, seed=7, at=BEGINNING):
        lines.insert(rng.randint(0, len(lines)), hostile)
    signals = tmp_path / "signals.jsonl"
    signals.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    assert run_job(job_arguments(signals, out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    expected = reference_output(signals, summary["end_clock"])
    produced = job_output(out)
    assert canonical(produced["dead-letter"]) == canonical(expected.dead_letters)
    assert "internal_error" not in summary["rejected_by_reason"]
    assert canonical(produced["decisions"]) == canonical(expected.decisions)
    assert summary["events_in"] == len(lines) == summary["accepted"] + summary["rejected"] + summary["duplicates"]
    assert summary["balanced"] is True


@pytest.mark.parametrize("key, warned", [(None, True), ("a-secret-of-this-deployment", False)])
def test_the_driver_warns_at_start_while_the_public_development_hash_key_is_in_force(tmp_path, capsys, monkeypatch,
                                                                                     key, warned):
    if key is None:
        monkeypatch.delenv("JOURNEYS_HASH_KEY", raising=False)
    else:
        monkeypatch.setenv("JOURNEYS_HASH_KEY", key)
    assert run_job(job_arguments(tmp_path / "no-such-input.jsonl", tmp_path / "out")) == 2  # stops before Flink
    said = capsys.readouterr().err
    assert ("privacy.hash_key is the development key" in said) is warned
    assert ("Set JOURNEYS_HASH_KEY" in said) is warned  # and says what to do


def test_personal_data_planted_in_every_field_reaches_no_output_but_the_dead_letters(simulated, tmp_path, capsys):
    import unicodedata

    from pipelines.tools.hostile import PERSONAL_DATA

    planted = []
    for n, value in enumerate(PERSONAL_DATA):
        at = BEGINNING + n * 60_000
        planted += [a_signal("add_to_cart", at, customer=value, note=f"mail me: {value}"),
                    a_signal("page_view", at + 1, visitor=value, page=f"/p?contact={value}"),
                    a_signal("login", at + 2, visitor=value, customer=f"c-pii-{n}", session_hint=value),
                    a_signal("page_view", at + 3, customer=f"c-pii-{n}", event_id=value),
                    a_signal(value, at + 4, customer=f"c-pii-{n}"),
                    a_signal("page_view", at + 5, customer=f"c-pii-{n}") | {"timezone": value},
                    a_signal("page_view", at + 6, visitor=f"plain-{n}"),
                    a_signal("login", at + 7, visitor=f"plain-{n}", customer=value)]
    signals = tmp_path / "signals.jsonl"
    signals.write_bytes(simulated.read_bytes() + b"\n".join(line(s) for s in planted) + b"\n")
    out = tmp_path / "out"
    assert run_job(job_arguments(signals, out, "--decision-log", (out / "decision-log").as_uri())) == 0
    said = capsys.readouterr()
    # One task keys the raw lines here: lines whose first id may be personal data share keys, and
    # every journey still comes out as the reference has it.
    expected = reference_output(signals, json.loads((out / "summary.json").read_text())["end_clock"])
    assert canonical(job_output(out)["journeys"]) == canonical(expected.journey_records)
    assert canonical(job_output(out)["decisions"]) == canonical(expected.decisions)

    forms = {form for value in PERSONAL_DATA
             for form in (value, unicodedata.normalize("NFKC", value), value.replace("%40", "@"))}
    forms |= {"".join(ch for ch in form if ch.isdigit()) for form in forms if sum(ch.isdigit() for ch in form) >= 10}
    texts = {path.relative_to(out).as_posix(): path.read_text(errors="replace") for path in out.rglob("*")
             if path.is_file() and "dead-letter" not in path.parts and "checkpoints" not in path.parts}
    texts["the driver's output"] = said.out + said.err
    found = [(where, form) for where, text in texts.items() for form in forms if form in text]
    assert found == []
    assert len(job_output(out)["dead-letter"]) >= 2 * len(PERSONAL_DATA)  # event types and time zones


def test_late_signals_go_to_their_own_output_when_one_is_given(simulated, tmp_path):
    out = tmp_path / "out"
    assert run_job(job_arguments(simulated, out, "--late", (out / "late").as_uri())) == 0
    late = list(read_records(out / "late"))
    assert late and all(record["kind"] == LogKind.LATE and record["signal"]["event_id"] == record["event_id"] for record in late)
    assert not [r for r in read_records(out / "journeys") if r["kind"] == LogKind.LATE]
    assert json.loads((out / "summary.json").read_text())["late"] == len(late)


def test_a_job_killed_mid_stream_and_restored_from_its_checkpoint_ends_like_an_uninterrupted_run(tmp_path):
    # No signals beyond the watermark bound here: which of those count as late depends on where
    # the source's progress is when they arrive, and that progress starts over after a restore
    # (README, "Event time and lateness"). Out-of-order signals within the bound, duplicates and
    # malformed records are all included.
    signals = tmp_path / "signals.jsonl"
    write_simulation(SimulationSpec(customers=2000, days=30, seed=5, late_rate=0.0), signals)
    interrupted, uninterrupted = tmp_path / "interrupted", tmp_path / "uninterrupted"
    checkpointing = ["-D", "execution.checkpointing.interval=1s", "-D", "execution.checkpointing.min-pause=200ms"]

    first = start_driver(job_arguments(signals, interrupted, *checkpointing))
    checkpoint = wait_for_checkpoints(interrupted / "checkpoints", count=2, process=first)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    assert not (interrupted / "summary.json").exists(), "the job finished before it could be killed"

    restored = start_driver(job_arguments(signals, interrupted, *checkpointing, "--restore", str(checkpoint)))
    assert restored.wait(timeout=300) == 0, restored.stdout.read()
    assert run_job(job_arguments(signals, uninterrupted)) == 0

    after_restore, reference = job_output(interrupted), job_output(uninterrupted)
    assert canonical(after_restore["journeys"]) == canonical(reference["journeys"])
    assert canonical(after_restore["decisions"]) == canonical(reference["decisions"])
    assert canonical(after_restore["dead-letter"]) == canonical(reference["dead-letter"])
    assert json.loads((interrupted / "summary.json").read_text())["balanced"] is True


