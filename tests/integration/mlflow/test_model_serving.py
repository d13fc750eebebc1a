"""The job's side of the registry, without Flink: a task's models come from a real MLflow
registry (sqlite), follow the aliases when they move, shadow-score the challenger, and fall
back to rules alone, saying so, while the registry cannot be reached."""
from __future__ import annotations

import shutil
import socket
import time

import pytest

from journeys.scoring import PROPENSITY_MODEL, STAGE_MODEL
from models.registry import promote, register
from pipelines.mlflow.serving import InProcessRegistry, ModelServingSettings, RegistryModels, WatchedRegistry
from pipelines.cli.main import main as journeys
from tests.harness import BEGINNING, FIVE_MINUTES_LATER, ONE_MINUTE_LATER, a_signal, play

pytestmark = pytest.mark.mlflow
POLL = 10.0


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def passes(self, seconds: float) -> None:
        self.now += seconds


def served(uri: str, clock: Clock, **options) -> RegistryModels:
    settings = ModelServingSettings(uri, poll_interval_s=POLL, **options)
    return RegistryModels(settings, InProcessRegistry(settings, clock))


def a_cart_then_a_complaint(customer: str = "c-1") -> list[dict]:
    return [a_signal("page_view", BEGINNING, customer=customer),
            a_signal("add_to_cart", ONE_MINUTE_LATER, customer=customer, cart_value=30),
            a_signal("complaint", FIVE_MINUTES_LATER, customer=customer, channel="call_center")]


def cited(decision: dict, field: str = "models") -> dict:
    return {score["model"]: score["version"] for score in decision[field]}


@pytest.fixture
def registry(model_registry):
    """The registry as conftest trained it: journey_stage@champion 1, conversion_propensity@champion 1,
    no challenger. Tests that move aliases put them back."""
    client = model_registry["client"]
    yield model_registry
    client.set_registered_model_alias(STAGE_MODEL, "champion", "1")
    for name in (STAGE_MODEL, PROPENSITY_MODEL):
        if "challenger" in client.get_registered_model(name).aliases:
            client.delete_registered_model_alias(name, "challenger")


def test_decisions_cite_the_champions_that_scored_them(registry):
    models = served(registry["uri"], Clock())

    run = play(a_cart_then_a_complaint(), models=models)

    assert run.decisions and all(cited(d) == {STAGE_MODEL: "1", PROPENSITY_MODEL: "1"} for d in run.decisions)
    assert all(0.0 <= score["score"] <= 1.0 for d in run.decisions for score in d["models"])
    assert all(d["mapped_stage"] for d in run.decisions)
    assert models.counts.loads == 2 and models.counts.poll_failures == 0


def test_a_moved_champion_alias_is_swapped_in_at_the_first_poll_after_the_interval(registry):
    clock, client = Clock(), registry["client"]
    models = served(registry["uri"], clock)
    assert {m.name: m.version for m in models.active().champions}[STAGE_MODEL] == "1"

    client.set_registered_model_alias(STAGE_MODEL, "champion", "2")
    clock.passes(POLL - 1)
    assert {m.name: m.version for m in models.active().champions}[STAGE_MODEL] == "1"
    clock.passes(1)
    assert {m.name: m.version for m in models.active().champions}[STAGE_MODEL] == "2"
    assert models.counts.swaps == 1 and models.counts.polls == 2


def test_the_challenger_is_scored_in_the_shadow_and_never_acts(registry):
    client, signals = registry["client"], a_cart_then_a_complaint()
    champion_only = play(signals, models=served(registry["uri"], Clock())).decisions
    client.set_registered_model_alias(STAGE_MODEL, "challenger", "2")

    shadowed = play(signals, models=served(registry["uri"], Clock())).decisions

    assert all(cited(d, "shadow") == {STAGE_MODEL: "2"} for d in shadowed)
    acting = ("decision_id", "stage", "mapped_stage", "action", "channel", "models")
    assert [{k: d[k] for k in acting} for d in shadowed] == [{k: d[k] for k in acting} for d in champion_only]


def test_without_a_registry_at_start_the_task_decides_on_rules_alone_and_picks_the_registry_up_later(registry, tmp_path):
    missing = tmp_path / "registry.db"
    clock = Clock()
    models = served(f"sqlite:///{missing}", clock)

    degraded = play(a_cart_then_a_complaint(), models=models).decisions
    assert degraded and all(d["models"] == [] for d in degraded)
    assert all("model registry unreachable" in d["justification"] and "decided on rules alone" in d["justification"] for d in degraded)
    assert models.counts.poll_failures == 1 and not missing.exists()  # looked for, not created

    shutil.copy(registry["path"], missing)  # the registry comes up (its artifacts stay where they were logged)
    clock.passes(POLL)
    assert {m.name: m.version for m in models.active().champions} == {STAGE_MODEL: "1", PROPENSITY_MODEL: "1"}
    assert models.active().note is None


def test_an_unreachable_registry_server_costs_a_poll_not_a_stall(registry):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    # The first use of MLflow's REST client in a process loads its modules, for seconds on a slow
    # machine: a cost of the task's start, not of a poll, so it is paid before the clock starts.
    served(f"http://127.0.0.1:{port}", Clock()).active()
    models = served(f"http://127.0.0.1:{port}", Clock())

    started = time.monotonic()
    note = models.active().note
    assert time.monotonic() - started < 5
    assert note.startswith("model registry unreachable") and models.counts.poll_failures == 1


def test_a_version_that_fails_to_load_leaves_the_version_in_use_in_place(registry):
    client, clock = registry["client"], Clock()
    models = served(registry["uri"], clock)
    models.active()
    wrong_kind = register(client, registry["runs"][(PROPENSITY_MODEL, "v1")], STAGE_MODEL)  # a propensity model
    promote(client, STAGE_MODEL, wrong_kind, "champion", force=True)

    clock.passes(POLL)
    active = models.active()

    assert {m.name: m.version for m in active.champions}[STAGE_MODEL] == "1"
    assert models.counts.load_failures == 1


def test_a_watcher_process_reads_the_registry_for_a_task_and_ends_with_it(registry):
    settings = ModelServingSettings(registry["uri"], poll_interval_s=0.5)
    watched = WatchedRegistry(settings)
    models = RegistryModels(settings, watched).start()
    try:
        assert {m.name: m.version for m in models.active().champions} == {STAGE_MODEL: "1", PROPENSITY_MODEL: "1"}
        registry["client"].set_registered_model_alias(STAGE_MODEL, "champion", "2")
        deadline = time.monotonic() + 30
        while {m.name: m.version for m in models.active().champions}[STAGE_MODEL] != "2":
            assert time.monotonic() < deadline, "the watcher never reported the moved alias"
            time.sleep(0.2)
        assert models.counts.swaps == 1
    finally:
        models.stop()
    assert watched._process.poll() is not None


def test_a_watcher_that_dies_is_started_again_and_the_task_keeps_its_models_meanwhile(registry):
    settings = ModelServingSettings(registry["uri"], poll_interval_s=0.5)
    watched = WatchedRegistry(settings)
    models = RegistryModels(settings, watched).start()
    try:
        first = watched._process
        first.kill()
        first.wait()
        deadline = time.monotonic() + 30
        while watched._process is first or watched._process.poll() is not None:
            assert {m.name: m.version for m in models.active().champions}[STAGE_MODEL] == "1"
            assert time.monotonic() < deadline, "the watcher was not started again"
            time.sleep(0.2)
        registry["client"].set_registered_model_alias(STAGE_MODEL, "champion", "2")
        while {m.name: m.version for m in models.active().champions}[STAGE_MODEL] != "2":
            assert time.monotonic() < deadline, "the new watcher never reported the moved alias"
            time.sleep(0.2)
        assert models.counts.poll_failures >= 1 and models.counts.swaps == 1
    finally:
        models.stop()


def test_a_champion_is_served_with_its_training_datas_drift_profile_and_the_drift_report_reads_it(registry, tmp_path,
                                                                                                   capsys):
    import orjson

    from journeys.drift import SCORE
    from pipelines.cli.main import main as journeys

    models = served(registry["uri"], Clock())
    run = play(a_cart_then_a_complaint("c-1") + a_cart_then_a_complaint("c-2"), models=models)
    [propensity] = [m for m in models.active().champions if m.kind == PROPENSITY_MODEL]
    log = tmp_path / "decision-log"
    log.mkdir()
    (log / "part-0.jsonl").write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in run.decision_log))

    status = journeys(["drift", "--log", str(log), "--model", PROPENSITY_MODEL, "--tracking-uri", registry["uri"],
                       "--out", str(tmp_path / "drift.html"), "--json", str(tmp_path / "drift.json")])

    assert {"cart_value", "stage", SCORE} <= set(propensity.drift_profile.bins) and propensity.drift_profile.rows > 100
    report = orjson.loads((tmp_path / "drift.json").read_bytes())
    assert status == 0 and report["version"] == "1" and report["decisions"] == len(run.decision_log)
    assert report["features"]["cart_value"]["expected"] == [round(c / propensity.drift_profile.rows, 4)
                                                            for c in propensity.drift_profile.counts["cart_value"]]
    assert f"Drift of {PROPENSITY_MODEL} v1" in capsys.readouterr().out
    assert "Plotly.newPlot" in (tmp_path / "drift.html").read_text()


def test_a_model_canary_set_with_the_cli_scores_for_its_share_follows_its_share_tag_and_stops(registry):
    from journeys.scoring import CANARY

    uri, client, clock = registry["uri"], registry["client"], Clock()
    models = served(uri, clock)
    people = [f"c-{n}" for n in range(40)]
    signals = [s for person in people for s in a_cart_then_a_complaint(person)]
    try:
        assert journeys(["models", "canary", STAGE_MODEL, "2", "--share", "0.5", "--tracking-uri", uri]) == 0
        clock.passes(POLL)
        [canary] = models.active().canaries
        half = play(signals, models=models).decisions
        client.set_model_version_tag(STAGE_MODEL, "2", "journeys.canary_share", "0.9")  # at run time
        clock.passes(POLL)
        [wider] = models.active().canaries
        assert journeys(["models", "canary", STAGE_MODEL, "--stop", "--tracking-uri", uri]) == 0
        clock.passes(POLL)
        stopped = models.active().canaries
    finally:
        if CANARY in client.get_registered_model(STAGE_MODEL).aliases:
            client.delete_registered_model_alias(STAGE_MODEL, CANARY)

    assert (canary.scorer.name, canary.scorer.version, canary.share) == (STAGE_MODEL, "2", 0.5)
    arms = {d["journey"]: d["model_arm"] for d in half}
    assert {arms[p] for p in arms} == {"champion", "canary"}
    assert all(cited(d)[STAGE_MODEL] == ("2" if d["model_arm"] == "canary" else "1") for d in half)
    assert all(cited(d)[PROPENSITY_MODEL] == "1" for d in half)  # a canary stands in for its own model only
    assert wider.share == 0.9 and stopped == ()


def test_a_model_canary_the_jobs_gates_stopped_stays_stopped_until_the_alias_points_elsewhere(registry):
    uri, client, clock = registry["uri"], registry["client"], Clock()
    models = served(uri, clock)
    client.set_registered_model_alias(STAGE_MODEL, "canary", "2")
    try:
        clock.passes(POLL)
        assert [c.scorer.version for c in models.active().canaries] == ["2"]
        stopped = models.stop_canary(STAGE_MODEL, "2")
        clock.passes(POLL)
        after_a_poll = models.active()
    finally:
        client.delete_registered_model_alias(STAGE_MODEL, "canary")

    assert stopped and after_a_poll.canaries == ()
    assert {m.name: m.version for m in after_a_poll.champions} == {STAGE_MODEL: "1", PROPENSITY_MODEL: "1"}


def test_a_canary_share_tag_that_is_no_share_puts_the_canary_to_no_one(registry):
    uri, client = registry["uri"], registry["client"]
    client.set_model_version_tag(STAGE_MODEL, "2", "journeys.canary_share", "lots")
    client.set_registered_model_alias(STAGE_MODEL, "canary", "2")
    try:
        canaries = served(uri, Clock()).active().canaries
    finally:
        client.delete_registered_model_alias(STAGE_MODEL, "canary")
        client.delete_model_version_tag(STAGE_MODEL, "2", "journeys.canary_share")

    assert canaries == ()
