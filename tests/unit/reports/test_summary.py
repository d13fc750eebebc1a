"""Reading inputs as Flink does, and the run summary that must add up."""
import pytest

from pipelines.reports.summary import summarize
from pipelines.tools.files import read_lines, scan_signals
from tests.harness import BEGINNING, NOW, a_signal, line, play


@pytest.mark.parametrize("content, lines", [
    (b"a\nb\n", [b"a", b"b"]), (b"a\nb", [b"a", b"b"]), (b"a\r\nb\r\n", [b"a", b"b"]), (b"a\rb", [b"a", b"b"]),
    (b"a\n\nb\n", [b"a", b"", b"b"]), (b"", []), (b"\n", [b""]), (b"a\r", [b"a"]), (b"x\r\r\ny", [b"x", b"", b"y"]),
    (b"a\n\r", [b"a", b""]),
])
def test_lines_split_as_javas_buffered_reader_splits_them(tmp_path, content, lines):
    path = tmp_path / "in.jsonl"
    path.write_bytes(content)
    assert list(read_lines(path)) == lines
    assert list(read_lines(path, chunk_size=1)) == lines


def test_a_directory_is_read_file_by_file_skipping_hidden_files(tmp_path):
    (tmp_path / "b.jsonl").write_bytes(b"2\n")
    (tmp_path / "a.jsonl").write_bytes(b"1\n")
    (tmp_path / ".part-0.inprogress").write_bytes(b"x\n")
    assert list(read_lines(tmp_path)) == [b"1", b"2"]


def test_the_scan_counts_every_line_and_finds_the_latest_accepted_event_time(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join([line(a_signal(at=BEGINNING)), b"junk", line(a_signal(at=BEGINNING + 5))]))
    scan = scan_signals(path, now_ms=NOW)
    assert (scan.lines, scan.accepted, scan.latest_event_time) == (3, 2, BEGINNING + 5)


def test_the_summary_adds_up_and_scores_stages_against_the_truth():
    signal = a_signal("add_to_cart", BEGINNING, event_id="e-1")
    run = play([signal, signal, a_signal("page_view", BEGINNING + 1, event_id="e-2")])
    run.feed([b"{bad"]).finish()
    summary = summarize(run.lines_in, run.journey_records, run.decisions, run.dead_letters,
                        {"e-1": "intent", "e-2": "consideration"})
    assert (summary["events_in"], summary["accepted"], summary["rejected"], summary["duplicates"]) == (4, 2, 1, 1)
    assert summary["balanced"] is True
    assert summary["stage_accuracy"] == 0.5
    assert summary["stage_distribution"] == {"intent": 1}
    assert summary["decisions_by_action"]["onsite_cart_nudge"] == 1
    assert summary["top_transitions"] == {"discovery -> intent": 1}


def test_a_summary_with_a_lost_record_does_not_add_up():
    run = play([a_signal("page_view", BEGINNING)])
    assert summarize(run.lines_in + 1, run.journey_records, run.decisions, run.dead_letters)["balanced"] is False


def test_the_summary_counts_signals_the_ontology_does_not_map_without_naming_them():
    run = play([a_signal("wishlist_add", BEGINNING), a_signal("Call 555 0100", BEGINNING + 1),
                a_signal("wishlist_add", BEGINNING + 2)])
    summary = summarize(run.lines_in, run.journey_records, run.decisions, run.dead_letters)
    assert summary["unmapped_signals"] == {"signals": 3, "types": 2}
    assert "wishlist_add" not in str(summary) and "0100" not in str(summary)
