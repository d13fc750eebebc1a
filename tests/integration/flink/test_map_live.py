"""`journeys serve` beside a running journey job: signals produced while the job runs reach the
served map within seconds, before any checkpoint commits the job's output files."""
from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from journeys.ontology import packaged_ontology
from pipelines.kafka.tools import create_topics, produce_signals
from pipelines.reports.map_server import MapServer
from tests.harness import (A_DAY_LATER, AN_HOUR_LATER, BEGINNING, ONE_MINUTE_LATER, TWO_HOURS_LATER, a_signal, line,
                           start_driver)

pytestmark = pytest.mark.flink

HALF_AN_HOUR_LATER = BEGINNING + (AN_HOUR_LATER - BEGINNING) // 2


def passing_by(at: int, name: str) -> list[dict]:
    """A customer's and a visitor's page views: they move the watermarks of both paths (customers
    and visitors) to their time, so the signals before them are applied."""
    return [a_signal("page_view", at, customer=f"c-{name}"), a_signal("page_view", at, visitor=f"anon-{name}")]


def first_visitors() -> list[bytes]:
    return [line(s) for s in (a_signal("product_view", BEGINNING, customer="c-early"),
                              a_signal("add_to_cart", ONE_MINUTE_LATER, customer="c-early", cart_value=40),
                              *passing_by(HALF_AN_HOUR_LATER, "passer-by"))]


def later_visitors() -> list[bytes]:
    return [line(s) for s in (a_signal("product_view", TWO_HOURS_LATER, customer="c-later"),
                              *passing_by(A_DAY_LATER, "clock"))]


def wait_until_served(url: str, text: str, job, timeout: float = 120) -> float:
    """Seconds until the served page shows the text."""
    started = time.time()
    while text not in urllib.request.urlopen(url, timeout=60).read().decode():
        assert job.poll() is None, job.stdout.read()[-3000:]
        assert time.time() - started < timeout, f"{text} not on the served map after {timeout} s"
        time.sleep(0.5)
    return time.time() - started


def test_the_served_map_follows_the_running_job_between_checkpoints(kafka_broker, tmp_path: Path):
    bootstrap, topic = kafka_broker.bootstrap_servers, f"live-map-{time.time_ns()}"
    create_topics(bootstrap, {topic: 1})
    out = tmp_path / "out"
    # Checkpoints an hour apart: every line the map shows comes from in-progress part files.
    job = start_driver(["--signals", f"kafka://{bootstrap}/{topic}", "--decisions", (out / "decisions").as_uri(),
                         "--decision-log", (out / "decision-log").as_uri(), "--journeys", (out / "journeys").as_uri(),
                         "--dead-letter", (out / "dead-letter").as_uri(), "--checkpoints", str(tmp_path / "checkpoints"),
                         "-D", "execution.checkpointing.interval=1h"])
    for directory in ("journeys", "decision-log"):
        (out / directory).mkdir(parents=True, exist_ok=True)
    server = MapServer(out / "journeys", out / "decision-log", packaged_ontology().stage_ids, port=0, refresh_s=1)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        produce_signals(bootstrap, topic, first_visitors())
        wait_until_served(url, '"c-early"', job, timeout=180)  # the job's start-up is in this one
        version = urllib.request.urlopen(url + "version", timeout=30).read()

        produce_signals(bootstrap, topic, later_visitors())
        seconds = wait_until_served(url, '"c-later"', job)
        changed = urllib.request.urlopen(url + "version", timeout=30).read()
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
        server.shutdown()
        server.server_close()

    assert changed != version  # what makes an open page reload
    assert not list((out / "journeys").rglob("part-*")), "a checkpoint committed files: the test proves less"
    print(f"a signal produced to Kafka was on the served map {seconds:.1f} s later")
