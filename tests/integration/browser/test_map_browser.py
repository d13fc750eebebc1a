"""The journey map page in a real browser: headless Chromium (Debian's package, which `make test`
installs) opens the file offline, runs its scripts, and the drawn Sankey, funnel and timeline carry
the run's numbers. A screenshot is kept under var/test-artifacts/."""
from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from pipelines.cli.main import main as journeys
from pipelines.reports.journey_map import build_map
from tests.harness import ROOT, STAGES, three_customers

pytestmark = pytest.mark.browser
ARTIFACTS = ROOT / "var" / "test-artifacts"


def chromium(*arguments: str) -> str:
    binary = shutil.which("chromium")
    assert binary, "no chromium on PATH: `make test` installs Debian's chromium (python -m scripts.debian chromium)"
    # No network at all: the page must draw from what it carries.
    completed = subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                                "--virtual-time-budget=15000", *arguments],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def inside(dom: str, element_id: str) -> str:
    """The markup of one figure's div, as the browser left it after the scripts ran."""
    start = dom.index(f'id="{element_id}"')
    following = [dom.find(f'id="{other}"', start) for other in ("populations", "funnel", "paths", "decisions", "timeline")]
    end = min((at for at in following if at > start), default=len(dom))
    return dom[start:end]


def texts(markup: str, css_class: str) -> list[list[str]]:
    """The words of each SVG text element of a class."""
    found = re.findall(rf'<text[^>]*class="{css_class}[^"]*"[^>]*>(.*?)</text>', markup, re.S)
    return [html.unescape(re.sub(r"<[^>]+>", " ", text)).split() for text in found]


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    run = three_customers()
    base = tmp_path_factory.mktemp("map")
    for name, records in (("journeys", run.journey_records), ("log", run.decision_log)):
        (base / name).mkdir()
        (base / name / "part-0.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    assert journeys(["map", "--journeys", str(base / "journeys"), "--decisions", str(base / "log"),
                     "--out", str(base / "map.html")]) == 0
    return base / "map.html"


def test_the_browser_draws_the_sankey_funnel_and_timeline_with_the_runs_numbers(page):
    run = three_customers()
    expected = build_map(run.journey_records, run.decision_log, STAGES)

    dom = chromium("--dump-dom", page.as_uri())

    sankey = inside(dom, "sankey")
    linked = {stage for pair in expected.transitions["all"] for stage in pair}
    assert [label for [label] in texts(sankey, "node-label")] == [s for s in STAGES if s in linked]
    assert len(re.findall(r'class="sankey-link"', sankey)) == len(expected.transitions["all"])
    funnel = texts(inside(dom, "funnel"), "bartext")
    # discovery 3, consideration 2, intent 2, conversion 1 (retention, reached by none, has no bar),
    # each with its share of the stage before.
    assert [(int(count), share) for count, share in funnel] == [(3, "100%"), (2, "67%"), (2, "100%"), (1, "50%")]
    shown = _default_journey(dom)
    timeline = html.unescape(inside(dom, "timeline"))
    assert "DECISION" in timeline
    assert len(re.findall(r"<li ", timeline)) == len(expected.timelines[shown])


def test_the_search_box_picks_the_customer_whose_timeline_is_shown(page):
    dom = chromium("--dump-dom", page.as_uri() + "#c-1")

    timeline = html.unescape(inside(dom, "timeline"))
    assert "intent -> conversion on purchase" in timeline
    assert re.search(r'<div class="why">[^<]*\w', timeline)  # a decision's justification is shown beneath it


def test_a_screenshot_of_the_page_is_kept_as_a_test_artifact(page):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "journey-map.png"
    shot.unlink(missing_ok=True)

    chromium("--window-size=1400,3000", f"--screenshot={shot}", page.as_uri())

    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


def _default_journey(dom: str) -> str:
    return html.unescape(re.search(r'<input id="search"[^>]*value="([^"]*)"', dom).group(1))
