"""Stage models served inside the Flink job: the champion scores and is cited, the challenger is
shadow-scored and never acts, a champion promoted mid-stream takes over with no restart and no
lost signal, and a job that starts without a registry runs on rules alone and says so."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import orjson
import pytest

from jobs.journey_job import main as run_job
from journeys.contract import SignalDecoder
from journeys.ontology import packaged_ontology
from journeys.outputs import LogKind
from journeys.scoring import PROPENSITY_MODEL, STAGE_MODEL
from journeys.settings import packaged_settings
from models.registry import client_for, promote
from pipelines.kafka.tools import create_topics, produce_signals, read_topic
from pipelines.config import read_settings
from pipelines.mlflow.serving import ModelServingSettings, RegistryModels
from pipelines.reference import ReferenceRun
from pipelines.tools.files import read_lines, scan_records
from pipelines.tools.simulate import SimulationSpec, write_simulation
from pipelines.reports.summary import read_records
from tests.harness import ROOT, canonical, event_ids, job_arguments, job_output, start_driver

pytestmark = [pytest.mark.flink, pytest.mark.mlflow]


@pytest.fixture(scope="module")
def signals(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model-input") / "signals.jsonl"
    write_simulation(SimulationSpec(customers=120, days=10, seed=5, late_rate=0.0), path)
    return path


@pytest.fixture
def registry(model_registry, tmp_path):
    """This test's own copy of the registry (champions: journey_stage 1, conversion_propensity 1);
    the artifacts are shared, read-only."""
    path = tmp_path / "registry.db"
    shutil.copy(model_registry["path"], path)
    uri = f"sqlite:///{path}"
    return uri, client_for(uri)


def cited(decision: dict, field: str = "models") -> dict:
    return {score["model"]: score["version"] for score in decision[field]}


def without_latency_budget(directory: Path) -> Path:
    """The packaged job configuration with no latency budget. A decision takes the fast path (rules
    alone) when its feature lookup and model call would exceed the budget in wall-clock time, so on
    a busy machine the job and the reference could each take it for different decisions."""
    conf = directory / "journeys.yaml"
    text = (ROOT / "journeys" / "conf" / "journeys.yaml").read_text()
    conf.write_text(text.replace("latency_budget: 50ms", "latency_budget: 0ms"))
    return conf


def reference_with_models(signals: Path, end_clock: int | None, uri: str, conf: Path) -> ReferenceRun:
    models = RegistryModels(ModelServingSettings(uri))
    return ReferenceRun(packaged_ontology(), read_settings(conf), end_clock=end_clock, models=models).feed(read_lines(signals)).finish()


def test_the_champion_scores_every_decision_and_the_challenger_is_shadow_scored_without_acting(signals, registry, tmp_path):
    uri, client = registry
    client.set_registered_model_alias(STAGE_MODEL, "challenger", "2")
    conf = without_latency_budget(tmp_path)

    assert run_job(job_arguments(signals, tmp_path, "--model-registry", uri, "--conf", str(conf))) == 0

    decisions = job_output(tmp_path)["decisions"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert decisions and all(cited(d) == {STAGE_MODEL: "1", PROPENSITY_MODEL: "1"} for d in decisions)
    assert all(cited(d, "shadow") == {STAGE_MODEL: "2"} for d in decisions)
    assert summary["model_usage"]["scored_by"] == {f"{STAGE_MODEL} v1": len(decisions), f"{PROPENSITY_MODEL} v1": len(decisions)}
    assert summary["model_usage"]["rules_alone"] == 0
    # The Flink job decides exactly as the pure core does with the same champion and challenger.
    expected = reference_with_models(signals, summary["end_clock"], uri, conf).decisions
    assert canonical(decisions) == canonical(expected)


def test_a_model_canary_scores_for_its_share_in_the_job_exactly_as_in_the_core_and_is_judged(signals, registry,
                                                                                               tmp_path):
    uri, client = registry
    client.set_model_version_tag(STAGE_MODEL, "2", "journeys.canary_share", "0.4")
    client.set_registered_model_alias(STAGE_MODEL, "canary", "2")
    conf = without_latency_budget(tmp_path)

    assert run_job(job_arguments(signals, tmp_path, "--model-registry", uri, "--conf", str(conf),
                                 "--decision-log", (tmp_path / "decision-log").as_uri())) == 0

    points = list(read_records(tmp_path / "decision-log"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    canary = [p for p in points if p["model_arm"] == "canary"]
    assert canary and all(cited(p)[STAGE_MODEL] == "2" for p in canary)
    assert all(cited(p)[STAGE_MODEL] == "1" for p in points if p["model_arm"] == "champion" and p["models"])
    assert not any(p["control"] for p in canary)
    [judged] = summary["canaries"]
    assert judged["canary"] == f"model {STAGE_MODEL} v2" and judged["decision_points"]["canary"] == len(canary)
    # The Flink job decides exactly as the pure core does with the same champion and canary.
    expected = reference_with_models(signals, summary["end_clock"], uri, conf).decision_log
    assert canonical(points) == canonical(expected)


def test_a_job_that_starts_without_a_registry_decides_on_rules_alone_and_says_so(signals, tmp_path):
    missing = tmp_path / "no-registry" / "registry.db"

    assert run_job(job_arguments(signals, tmp_path, "--model-registry", f"sqlite:///{missing}")) == 0

    decisions = job_output(tmp_path)["decisions"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert decisions and all(d["models"] == [] for d in decisions)
    assert all("model registry unreachable" in d["justification"] and "decided on rules alone" in d["justification"] for d in decisions)
    assert summary["model_usage"]["rules_alone"] == len(decisions) and summary["balanced"] is True
    plain = ReferenceRun(packaged_ontology(), packaged_settings(), end_clock=summary["end_clock"]).feed(read_lines(signals)).finish()
    assert sorted((d["decision_id"], d["action"]) for d in decisions) == sorted((d["decision_id"], d["action"]) for d in plain.decisions)


def decisions_so_far(bootstrap: str, topic: str) -> list[dict]:
    return [orjson.loads(value) for _, value in read_topic(bootstrap, topic, idle_timeout=1.0)]


def test_a_champion_promoted_mid_stream_takes_over_with_no_restart_and_no_lost_signal(kafka_broker, signals, registry,
                                                                                     tmp_path):
    uri, client = registry
    bootstrap = kafka_broker.bootstrap_servers
    prefix = f"swap-{time.time_ns()}"
    topics = {name: f"{prefix}-{name}" for name in ("signals", "decisions", "journeys", "dead-letter")}
    create_topics(bootstrap, dict.fromkeys(topics.values(), 1))  # one partition: the halves stay in order
    lines = list(read_lines(signals))
    first_half, second_half = lines[:len(lines) // 2], lines[len(lines) // 2:]
    conf = tmp_path / "journeys.yaml"
    conf.write_text((ROOT / "journeys" / "conf" / "journeys.yaml").read_text().replace("poll_interval: 10s", "poll_interval: 1s"))
    settings = packaged_settings()
    end_clock = (scan_records(lines, SignalDecoder(settings.intake).decode_json).latest_event_time
                 - settings.max_out_of_orderness_ms - 1)  # where time stops at the end, as `--end-clock auto` says
    address = lambda name: f"kafka://{bootstrap}/{topics[name]}"  # noqa: E731
    job = start_driver(["--signals", address("signals"), "--stop-offsets", f"0:{len(lines)}",
                         "--decisions", address("decisions"), "--journeys", address("journeys"),
                         "--dead-letter", address("dead-letter"), "--end-clock", str(end_clock), "--parallelism", "1",
                         "--delivery-guarantee", "at-least-once", "--transactional-id-prefix", prefix,
                         "--checkpoints", str(tmp_path / "checkpoints"), "-D", "execution.checkpointing.interval=1s",
                         "--conf", str(conf), "--model-registry", uri])
    try:
        produce_signals(bootstrap, topics["signals"], first_half)
        deadline = time.time() + 180
        before = []
        while len(before) < 50:
            assert job.poll() is None, job.stdout.read()[-3000:]
            assert time.time() < deadline, "no decisions from the first half"
            time.sleep(1)
            before = decisions_so_far(bootstrap, topics["decisions"])

        promote(client, STAGE_MODEL, "2", "champion", force=True)
        time.sleep(2.5)  # past the poll interval: the next operator call asks the registry again
        produce_signals(bootstrap, topics["signals"], second_half)
        assert job.wait(timeout=300) == 0, job.stdout.read()[-3000:]
    finally:
        if job.poll() is None:
            job.kill()

    decisions = decisions_so_far(bootstrap, topics["decisions"])
    second_half_ids = event_ids(second_half)
    assert all(cited(d)[STAGE_MODEL] == "1" for d in before)
    after = [d for d in decisions if d["event_id"] in second_half_ids]
    assert after and all(cited(d)[STAGE_MODEL] == "2" for d in after)
    assert all(cited(d)[PROPENSITY_MODEL] == "1" for d in decisions)
    # No signal was lost or applied twice: the pure core's journey log on the whole input. (Which
    # decisions act depends on the models, through the propensity and the mapped stage.)
    expected = ReferenceRun(packaged_ontology(), packaged_settings(), end_clock=end_clock).feed(lines).finish()
    journey_log = [r for r in decisions_so_far(bootstrap, topics["journeys"]) if r["kind"] != LogKind.PLAN_CANCELLED]
    assert canonical(journey_log) == canonical([r for r in expected.journey_records if r["kind"] != LogKind.PLAN_CANCELLED])
    assert len({d["decision_id"] for d in decisions}) == len(decisions)  # none decided twice
