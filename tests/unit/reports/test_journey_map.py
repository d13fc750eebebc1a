"""The journey map's figures from a run's logs, worked by hand on three customers, and the page:
one self-contained file (plotly inlined, no network) that carries those figures."""
from __future__ import annotations

import re

import orjson

from pipelines.cli.main import main as journeys
from pipelines.reports.journey_map import build_map
from pipelines.reports.map_page import render
from tests.harness import BEGINNING, STAGES, three_customers


def test_the_map_counts_transitions_by_channel_the_funnel_and_the_paths():
    run = three_customers()

    built = build_map(run.journey_records, run.decision_log, STAGES)

    assert built.transitions["all"][("discovery", "consideration")] == 2  # c-1, and v-1 before login
    assert built.transitions["app"] == {("discovery", "intent"): 1}      # c-3's cart
    assert built.transitions["web"][("intent", "conversion")] == 1
    funnel = {stage: count for stage, count, _ in built.funnel}
    assert funnel == {"discovery": 3, "consideration": 2, "intent": 2, "conversion": 1, "retention": 0}
    assert dict(built.paths)["discovery > consideration > intent > conversion"] == 1
    assert set(built.timelines) == {"c-1", "c-3", "c-4"}  # the visitor's timeline is c-4's
    c4 = built.timelines["c-4"]
    assert [e["kind"] for e in c4][:2] == ["signal", "decision"] and c4[0]["event_type"] == "product_view"


def test_stage_populations_are_counted_at_the_end_of_each_day():
    run = three_customers()

    built = build_map(run.journey_records, run.decision_log, STAGES)

    first_day = {stage: built.populations[stage][0] for stage in STAGES}
    assert first_day["conversion"] == 1 and first_day["intent"] == 1 and first_day["consideration"] == 1
    assert sum(first_day.values()) == 3  # the visitor counts once, as c-4


def test_the_page_is_one_file_with_plotly_inside_and_the_runs_figures(tmp_path):
    run = three_customers()
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "part-0.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in run.journey_records))
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "part-0.jsonl").write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in run.decision_log))

    assert journeys(["map", "--journeys", str(tmp_path / "journeys"), "--decisions", str(tmp_path / "log"),
                     "--out", str(tmp_path / "map.html")]) == 0

    page = (tmp_path / "map.html").read_text()
    assert not re.search(r"<script[^>]+src=", page) and not re.search(r"<link[^>]+href=", page)  # nothing fetched
    assert "Plotly.newPlot" in page and len(page) > 3_000_000  # plotly.js is inlined
    data = orjson.loads(re.search(r'<script id="map-data" type="application/json">(.*?)</script>', page, re.S).group(1)
                        .replace("<\\/", "</"))
    funnel = data["figures"]["funnel"]["data"][0]
    assert funnel["x"] == [3, 2, 2, 1, 0]
    assert any("DECISION" in entry[1] for entry in data["timelines"]["c-1"])


def test_render_escapes_what_could_close_the_data_script():
    built = build_map([], [{"decision_id": "d-1", "journey": "c-1", "decided_at": BEGINNING, "stage": "intent",
                            "action": "nudge", "channel": "web", "acted": True,
                            "justification": "</script><script>alert(1)</script>"}], STAGES)

    page = render(built)

    assert "</script><script>alert(1)" not in page


def test_serve_rebuilds_the_page_when_the_job_writes_more_in_progress_files_included(tmp_path):
    import threading
    import urllib.request

    from pipelines.reports.map_server import MapServer

    run = three_customers()
    journeys_dir, log_dir = tmp_path / "journeys", tmp_path / "log"
    journeys_dir.mkdir()
    log_dir.mkdir()
    first = [r for r in run.journey_records if r["journey"] != "c-3"]
    (journeys_dir / "part-0.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in first))
    (log_dir / "part-0.jsonl").write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in run.decision_log
                                                   if d["journey"] != "c-3"))
    server = MapServer(journeys_dir, log_dir, STAGES, port=0, refresh_s=2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"

    def get(path: str = "") -> str:
        return urllib.request.urlopen(url + path, timeout=30).read().decode()

    try:
        before, version_before = get(), get("version")
        # The running job's sink: a hidden in-progress part, its last line still being written.
        later = [r for r in run.journey_records if r["journey"] == "c-3"]
        (journeys_dir / ".part-1.jsonl.inprogress").write_bytes(
            b"".join(orjson.dumps(r) + b"\n" for r in later) + b'{"kind": "sig')
        version_after = get("version")
        after, again = get(), get()
    finally:
        server.shutdown()
        server.server_close()

    assert '"c-3"' not in before and '"c-3"' in after and server.builds == 2  # rebuilt once, on the change
    assert again == after
    # The page checks the outputs' version every 2 s and reloads when it is not its own.
    assert version_after != version_before
    assert f'const PAGE_VERSION = "{version_before}";' in before and f'const PAGE_VERSION = "{version_after}";' in after
    assert "}, 2000);" in after
