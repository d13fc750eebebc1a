"""Personal data planted in every field of signals, among simulated ones, Kafka to Kafka on a real
broker: it reaches nothing the job writes but the dead letters. Not the message keys or values of
any topic, not the features it pushes to Feast, not the run summary, not the Flink log, and not
the job's state: a live run is killed after a checkpoint, and every file of the checkpoint is
read, RocksDB's keys and all."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import orjson
import pytest

from journeys.contract import Rejection, SignalDecoder
from journeys.outputs import LogKind
from journeys.privacy import Masker
from journeys.settings import packaged_settings
from pipelines.cli.main import main as journeys_cli
from pipelines.kafka.tools import TopicWatch, create_topics, produce_signals, read_topic
from pipelines.tools.hostile import PERSONAL_DATA
from pipelines.tools.simulate import SimulationSpec, simulate, write_simulation
from tests.harness import ROOT, a_login, a_signal, kafka_arguments, line, start_driver

pytestmark = pytest.mark.flink

EXTRA_OUTPUTS = ("decision-log", "feature-rows")
# Every form in which a planted value could be read back: as planted, as the scan reads it (NFKC,
# %40 as @), and its digits alone where they are ten or more.
FORMS = {form for value in PERSONAL_DATA for form in (value, unicodedata.normalize("NFKC", value), value.replace("%40", "@"))}
FORMS |= {"".join(ch for ch in form if ch.isdigit()) for form in FORMS if sum(ch.isdigit() for ch in form) >= 10}


def planted_signals(at: int) -> list[dict]:
    """Each value as a customer id, a visitor id, a session hint, an event id, an event type, a time
    zone and inside attributes. The personal visitor logs in as the personal customer, and so does a
    visitor with a plain id, so that journeys stitch across every kind of key; a guest never does."""
    planted = []
    for n, value in enumerate(PERSONAL_DATA):
        start = at + n * 60_000
        planted += [a_signal("add_to_cart", start, customer=value, note=f"mail me: {value}"),
                    a_signal("page_view", start + 1, visitor=value, page=f"/p?contact={value}"),
                    a_login(value, value, start + 2, session_hint=value),
                    a_signal("page_view", start + 3, visitor=f"plain-visitor-{n}"),
                    a_login(f"plain-visitor-{n}", value, start + 4),
                    a_signal("purchase", start + 5, customer=value),
                    a_signal("page_view", start + 6, customer=f"c-pii-{n}", event_id=value),
                    a_signal(value, start + 7, customer=f"c-pii-{n}"),
                    a_signal("page_view", start + 8, customer=f"c-pii-{n}") | {"timezone": value},
                    a_signal("page_view", start + 9, visitor=guest(value))]
    return planted


def guest(value: str) -> str:
    return f"guest {value}"


def found_in(texts: dict[str, bytes]) -> list[tuple[str, str]]:
    return [(where, form) for where, text in texts.items() for form in FORMS if form.encode() in text]


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def topics_written(bootstrap: str, topics: dict[str, str]) -> dict[str, bytes]:
    """The key and value of every message on every topic the job wrote, but the dead letters."""
    texts = {}
    for name, topic in topics.items():
        if name not in ("signals", "dead-letter"):
            for number, (key, value) in enumerate(read_topic(bootstrap, topic)):
                texts[f"{name} #{number}"] = (key or b"") + b"\n" + value
    return texts


def accepted_ids(lines: list[bytes]) -> set[str]:
    """The event ids, as intake makes them, of the lines intake takes."""
    settings = packaged_settings()
    decoder = SignalDecoder(settings.intake, Masker(settings.privacy))
    decoded = (decoder.decode_json(raw, time.time_ns() // 1_000_000) for raw in lines)
    return {signal["event_id"] for signal in decoded if not isinstance(signal, Rejection)}


@pytest.fixture
def topics(kafka_broker, fresh_topics):
    extra = {name: f"{fresh_topics['signals']}-{name}" for name in EXTRA_OUTPUTS}
    create_topics(kafka_broker.bootstrap_servers, {topic: 2 for topic in extra.values()})
    return fresh_topics | extra


@pytest.fixture
def flink_log(tmp_path, monkeypatch) -> Path:
    """The Flink log folder of the driver this test starts."""
    folder = tmp_path / "flink-log"
    folder.mkdir()
    monkeypatch.setenv("FLINK_LOG_DIR", str(folder))
    return folder


def feature_repo(base: Path) -> Path:
    """A copy of features/, with simulated profiles, applied to a sqlite online store."""
    repo = base / "features"
    shutil.copytree(ROOT / "features", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    (repo / "data").mkdir()
    write_simulation(SimulationSpec(customers=20, days=2, seed=5), base / "unused.jsonl", repo / "data" / "customer_profiles.parquet")
    assert journeys_cli(["features", "init", "--repo", str(repo)]) == 0
    applied = subprocess.run([str(Path(sys.executable).parent / "feast"), "-c", str(repo), "apply"], capture_output=True, text=True)
    assert applied.returncode == 0, applied.stderr[-3000:]
    return repo


def test_a_bounded_run_writes_no_planted_value_to_kafka_feast_the_summary_or_the_flink_log(kafka_broker, topics, flink_log,
                                                                                          tmp_path):
    bootstrap = kafka_broker.bootstrap_servers
    planted = [line(s) for s in planted_signals(time.time_ns() // 1_000_000 - 3_600_000)]
    lines = list(simulate(SimulationSpec(customers=40, days=4, seed=8, late_rate=0.0))) + planted
    report = produce_signals(bootstrap, topics["signals"], lines)
    repo = feature_repo(tmp_path)
    summary = tmp_path / "summary.json"
    address = lambda name: f"kafka://{bootstrap}/{topics[name]}"  # noqa: E731
    driver = start_driver(kafka_arguments(bootstrap, topics, report.stop_offsets(), summary,
                                          "--decision-log", address("decision-log"), "--feature-rows", address("feature-rows"),
                                          "--feature-repo", str(repo), "--checkpoints", str(tmp_path / "checkpoints")))
    said, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, said[-3000:]

    texts = topics_written(bootstrap, topics) | files_under(repo / "data") | files_under(flink_log)
    texts |= {"the summary": summary.read_bytes(), "the driver's output": said.encode()}
    assert found_in(texts) == []
    assert json.loads(summary.read_text())["balanced"] is True
    assert {"decisions #0", "decision-log #0", "feature-rows #0", "journeys #0"} <= set(texts)
    assert any(path.endswith(".log") for path in files_under(flink_log))
    dead = [orjson.loads(value) for _, value in read_topic(bootstrap, topics["dead-letter"])]
    assert len(dead) >= 2 * len(PERSONAL_DATA)  # event types and time zones
    # The customers whose ids are personal data are there, under their pseudonyms.
    masker = Masker(packaged_settings().privacy)
    pseudonyms = {masker.pseudonym(value) for value in PERSONAL_DATA}
    assert pseudonyms <= {orjson.loads(texts[where].split(b"\n", 1)[1])["customer_id"]
                          for where in texts if where.startswith("feature-rows")}
    online = (repo / "data" / "online.db").read_bytes()
    assert all(pseudonym.encode() in online for pseudonym in pseudonyms)


def wait_for_a_checkpoint_begun_after_now(checkpoints: Path, driver, timeout: float = 120) -> None:
    def latest() -> int:
        return max((int(done.parent.name.split("-")[1]) for done in checkpoints.glob("*/chk-*/_metadata")), default=0)

    wanted, deadline = latest() + 2, time.time() + timeout  # the next one may have begun already
    while latest() < wanted:
        assert driver.poll() is None, driver.stdout.read()[-3000:]
        assert time.time() < deadline, f"no checkpoint {wanted} in {timeout} s"
        time.sleep(0.1)


def test_a_live_run_keeps_no_planted_value_in_its_state_keys_or_values(kafka_broker, topics, flink_log, tmp_path):
    bootstrap = kafka_broker.bootstrap_servers
    conf = tmp_path / "journeys.yaml"  # sessions end after 3 s of silence, so that the guests' timers fire
    conf.write_text((ROOT / "journeys" / "conf" / "journeys.yaml").read_text().replace("gap: 30m", "gap: 3s"))
    address = lambda name: f"kafka://{bootstrap}/{topics[name]}"  # noqa: E731
    checkpoints = tmp_path / "checkpoints"
    driver = start_driver(["--signals", address("signals"), "--decisions", address("decisions"),
                           "--journeys", address("journeys"), "--late", address("late"),
                           "--dead-letter", address("dead-letter"), "--decision-log", address("decision-log"),
                           "--delivery-guarantee", "at-least-once", "--transactional-id-prefix", topics["signals"],
                           "--conf", str(conf), "--checkpoints", str(checkpoints), "-D", "execution.checkpointing.interval=1s"])
    watch = TopicWatch(bootstrap, [topics["journeys"]])
    masker = Masker(packaged_settings().privacy)
    guests = {masker.pseudonym(guest(value)) for value in PERSONAL_DATA}

    def applied_and_guests_gone(seen) -> bool:
        closed = {r["journey"] for _, _, r in seen if r.get("kind") == LogKind.SESSION and not r["open"]}
        return expected <= {r.get("event_id") for _, _, r in seen} and guests <= closed

    try:
        lines = list(simulate(SimulationSpec(customers=10, days=2, seed=9, late_rate=0.0))) + \
            [line(s) for s in planted_signals(time.time_ns() // 1_000_000 - 15 * 60_000)]
        expected = accepted_ids(lines)
        produce_signals(bootstrap, topics["signals"], lines)
        deadline = time.time() + 240
        while not applied_and_guests_gone(list(watch.seen)):
            assert driver.poll() is None, driver.stdout.read()[-3000:]
            assert time.time() < deadline, "not every signal applied, or not every guest's session closed, in 240 s"
            time.sleep(0.2)
        wait_for_a_checkpoint_begun_after_now(checkpoints, driver)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        watch.close()

    state = files_under(checkpoints)
    assert found_in(state | files_under(flink_log) | topics_written(bootstrap, topics)) == []
    # The scan reads the state where it holds what it keeps of those journeys: their pseudonyms.
    assert any(masker.pseudonym(PERSONAL_DATA[0]).encode() in content for content in state.values())
