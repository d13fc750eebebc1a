"""The Feast feature repository and the job's use of it, for real: `feast apply` and
`feast materialize-incremental` on a temporary copy of features/, sqlite and Redis online stores."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from jobs.journey_job import main as run_job
from journeys.features import PROFILE_DEFAULTS, StaticProfiles
from journeys.ontology import packaged_ontology
from journeys.settings import packaged_settings
from pipelines.cli.main import main as journeys_cli
from pipelines.reference import ReferenceRun
from pipelines.reports.summary import read_records
from pipelines.tools.files import read_lines
from pipelines.tools.simulate import SimulationSpec, read_profiles, write_simulation
from scripts.local_redis import LocalRedis
from tests.harness import ROOT, canonical, job_arguments

pytestmark = pytest.mark.feast
FEAST = str(Path(sys.executable).parent / "feast")


def feast(repo: Path, *command: str, store_yaml: Path | None = None, env: dict | None = None) -> str:
    arguments = [FEAST, "-c", str(repo), *(["-f", str(store_yaml)] if store_yaml else []), *command]
    completed = subprocess.run(arguments, capture_output=True, text=True, env=env or os.environ.copy())
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    return completed.stdout


def applied_repo(base: Path, profiles_from: Path, store_yaml: str | None = None, env: dict | None = None) -> Path:
    """A copy of features/ with the simulation's profiles, applied and materialized as the README says."""
    repo = base / "features"
    shutil.copytree(ROOT / "features", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    (repo / "data").mkdir()
    shutil.copy(profiles_from, repo / "data" / "customer_profiles.parquet")
    assert journeys_cli(["features", "init", "--repo", str(repo)]) == 0
    yaml = repo / store_yaml if store_yaml else None
    feast(repo, "apply", store_yaml=yaml, env=env)
    feast(repo, "materialize-incremental", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), store_yaml=yaml, env=env)
    return repo


@pytest.fixture(scope="module")
def simulation(tmp_path_factory):
    base = tmp_path_factory.mktemp("feast-sim")
    signals, profiles = base / "signals.jsonl", base / "profiles.parquet"
    write_simulation(SimulationSpec(customers=160, days=10, seed=51, late_rate=0.0), signals, profiles)
    return signals, profiles


@pytest.fixture(scope="module")
def sqlite_repo(simulation, tmp_path_factory):
    return applied_repo(tmp_path_factory.mktemp("sqlite-repo"), simulation[1])


def online_profiles(repo: Path, customers: list[str], store_yaml: Path | None = None) -> dict:
    from pipelines.feast.store import FeatureSettings, open_store

    store = open_store(FeatureSettings(str(repo), str(store_yaml) if store_yaml else None))
    result = store.get_online_features(features=[f"customer_profile:{name}" for name in PROFILE_DEFAULTS],
                                       entity_rows=[{"customer_id": c} for c in customers]).to_dict()
    return {customer: {name: result[name][i] for name in PROFILE_DEFAULTS} for i, customer in enumerate(customers)}


def test_feast_plan_lists_the_objects_of_the_repository(sqlite_repo):
    output = feast(sqlite_repo, "plan")
    assert "customer_profile" in output or "No changes" in output or "journey_agent_v1" in output


def test_materialized_profiles_are_served_online_as_they_are_in_the_parquet(simulation, sqlite_repo):
    rows = read_profiles(simulation[1])
    served = online_profiles(sqlite_repo, [row["customer_id"] for row in rows])
    for row in rows:
        expected = {name: row[name] for name in PROFILE_DEFAULTS}
        assert served[row["customer_id"]] == pytest.approx(expected), row["customer_id"]


def test_a_training_set_takes_features_as_of_each_row_and_nothing_later(simulation, sqlite_repo, tmp_path):
    rows = read_profiles(simulation[1])[:3]
    before = rows[0]["event_timestamp"].timestamp() - 3600
    after = rows[0]["event_timestamp"].timestamp() + 3600
    entities = pd.DataFrame({"customer_id": [r["customer_id"] for r in rows for _ in (0, 1)],
                             "event_timestamp": pd.to_datetime([t for _ in rows for t in (before, after)], unit="s", utc=True)})
    entities_path, out = tmp_path / "entities.parquet", tmp_path / "training.parquet"
    entities.to_parquet(entities_path)
    assert journeys_cli(["features", "training-set", "--repo", str(sqlite_repo), "--entities", str(entities_path),
                         "--out", str(out)]) == 0
    frame = pd.read_parquet(out)
    frame["at"] = frame["event_timestamp"].map(lambda t: t.timestamp())
    for row in rows:
        mine = frame[frame["customer_id"] == row["customer_id"]]
        assert mine[mine["at"] == before]["lifetime_value"].isna().all()  # the profile did not exist yet
        assert mine[mine["at"] == after]["lifetime_value"].tolist() == [pytest.approx(row["lifetime_value"])]


def run_with_features(signals: Path, repo: Path, out: Path, *extra: str) -> dict:
    assert run_job(job_arguments(signals, out, "--feature-repo", str(repo), *extra)) == 0
    return json.loads((out / "summary.json").read_text())


def reference_with_profiles(signals: Path, profiles: Path, end_clock: int) -> ReferenceRun:
    return ReferenceRun(packaged_ontology(), packaged_settings(), end_clock=end_clock,
                        profiles=StaticProfiles(read_profiles(profiles))).feed(read_lines(signals)).finish()


@pytest.fixture(scope="module")
def sqlite_job(simulation, sqlite_repo, tmp_path_factory) -> tuple[dict, Path]:
    """One job run on the sqlite repository, with its feature rows written too."""
    out = tmp_path_factory.mktemp("sqlite-job")
    return run_with_features(simulation[0], sqlite_repo, out, "--feature-rows", (out / "feature-rows").as_uri()), out


@pytest.mark.flink
def test_the_job_decides_with_feast_profiles_and_feast_serves_what_the_job_pushed(simulation, sqlite_repo, sqlite_job):
    signals, profiles = simulation
    summary, out = sqlite_job
    expected = reference_with_profiles(signals, profiles, summary["end_clock"])
    decisions = list(read_records(out / "decisions"))
    assert canonical(decisions) == canonical(expected.decisions)
    assert summary["feature_lookups"]["hit"] > 0 and summary["feature_lookups"]["fell_back"] == 0

    from pipelines.feast.store import FeatureSettings, open_store

    store = open_store(FeatureSettings(str(sqlite_repo)))
    customers = sorted(expected.feature_rows)
    served = store.get_online_features(features=[f"journey_activity:{n}" for n in
                                                 ("events_last_day", "cart_value", "last_channel", "support_contacts_7d")],
                                       entity_rows=[{"customer_id": c} for c in customers]).to_dict()
    for i, customer in enumerate(customers):
        row = expected.feature_rows[customer]
        assert (served["cart_value"][i], served["last_channel"][i], served["support_contacts_7d"][i]) == \
            (row["cart_value"], row["last_channel"], row["support_contacts_7d"]), customer


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = LocalRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_repo(simulation, redis_server, tmp_path_factory):
    env = os.environ | {"JOURNEYS_REDIS": redis_server.connection_string}
    return applied_repo(tmp_path_factory.mktemp("redis-repo"), simulation[1], "feature_store.redis.yaml", env)


@pytest.mark.flink
def test_lookups_go_through_redis(simulation, redis_server, redis_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("JOURNEYS_REDIS", redis_server.connection_string)
    signals, profiles = simulation
    yaml = str(redis_repo / "feature_store.redis.yaml")
    rows = read_profiles(profiles)
    served = online_profiles(redis_repo, [rows[0]["customer_id"]], Path(yaml))
    assert served[rows[0]["customer_id"]]["lifetime_value"] == pytest.approx(rows[0]["lifetime_value"])
    summary = run_with_features(signals, redis_repo, tmp_path / "out", "--feature-store-yaml", yaml)
    expected = reference_with_profiles(signals, profiles, summary["end_clock"])
    assert canonical(list(read_records(tmp_path / "out" / "decisions"))) == canonical(expected.decisions)


@pytest.mark.flink
def test_with_redis_stopped_mid_run_the_job_keeps_deciding_and_counts_the_fallbacks(redis_repo, tmp_path, tmp_path_factory):
    signals = tmp_path / "signals.jsonl"
    write_simulation(SimulationSpec(customers=1500, days=30, seed=52, late_rate=0.0), signals)
    server = LocalRedis(tmp_path_factory.mktemp("redis-doomed")).start()
    env = os.environ | {"JOURNEYS_REDIS": server.connection_string}
    # The registry remembers materializing into the module's Redis, so this one is loaded in full.
    feast(redis_repo, "materialize", "2000-01-01T00:00:00", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
          store_yaml=redis_repo / "feature_store.redis.yaml", env=env)
    out = tmp_path / "out"
    job = subprocess.Popen([sys.executable, str(ROOT / "jobs" / "journey_job.py"), *job_arguments(signals, out),
                            "--feature-repo", str(redis_repo),
                            "--feature-store-yaml", str(redis_repo / "feature_store.redis.yaml")],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while server.keyspace_hits() < 20:  # the job is deciding with profiles from this Redis
        assert job.poll() is None, job.stdout.read()[-4000:]
        assert time.time() < deadline, "the job read no profiles from Redis within two minutes"
        time.sleep(0.05)
    server.stop()
    output, _ = job.communicate(timeout=300)
    assert job.returncode == 0, output[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["balanced"] is True
    lookups = summary["feature_lookups"]
    assert lookups["hit"] > 0 and lookups["fell_back"] > 0
    late_decisions = [d for d in read_records(out / "decisions") if d["feature_source"] == "fallback"]
    assert all("decided with defaults" in d["justification"] for d in late_decisions)


@pytest.mark.flink
def test_feature_rows_the_job_wrote_reach_the_offline_store_once_and_training_sets_see_them(sqlite_repo, sqlite_job,
                                                                                           tmp_path):
    rows_dir = sqlite_job[1] / "feature-rows"
    written = list(read_records(rows_dir))
    assert written
    assert journeys_cli(["features", "push-offline", "--repo", str(sqlite_repo), "--rows", str(rows_dir)]) == 0
    history = pd.read_parquet(sqlite_repo / "data" / "journey_activity.parquet")
    assert len(history) == len(written)
    assert journeys_cli(["features", "push-offline", "--repo", str(sqlite_repo), "--rows", str(rows_dir)]) == 0
    assert len(pd.read_parquet(sqlite_repo / "data" / "journey_activity.parquet")) == len(written)  # each file once

    latest = {}
    for row in written:
        if row["event_timestamp"] >= latest.get(row["customer_id"], {"event_timestamp": -1})["event_timestamp"]:
            latest[row["customer_id"]] = row
    chosen = sorted(latest.values(), key=lambda r: r["customer_id"])[:5]
    entities = pd.DataFrame({"customer_id": [r["customer_id"] for r in chosen],
                             "event_timestamp": pd.to_datetime([r["event_timestamp"] + 1 for r in chosen], unit="ms", utc=True)})
    entities.to_parquet(tmp_path / "entities.parquet")
    assert journeys_cli(["features", "training-set", "--repo", str(sqlite_repo), "--entities",
                         str(tmp_path / "entities.parquet"), "--out", str(tmp_path / "training.parquet")]) == 0
    frame = pd.read_parquet(tmp_path / "training.parquet").set_index("customer_id")
    for row in chosen:
        assert (frame.loc[row["customer_id"], "cart_value"], frame.loc[row["customer_id"], "support_contacts_7d"]) == \
            (pytest.approx(row["cart_value"]), row["support_contacts_7d"]), row["customer_id"]


@pytest.mark.beam
def test_feast_materializes_the_behavioural_history_a_replay_wrote(simulation, tmp_path):
    signals, profiles = simulation
    history = tmp_path / "journey_activity.parquet"
    assert journeys_cli(["replay", "--input", str(signals), "--output", str(tmp_path / "replay"), "--emit", "features",
                         "--feature-history", str(history)]) == 0
    rows = pd.read_parquet(history)
    latest = rows.sort_values("event_timestamp").groupby("customer_id").tail(1).set_index("customer_id")
    # The view's TTL is 7 days: materialize as of the end of the history.
    repo = tmp_path / "repo" / "features"
    shutil.copytree(ROOT / "features", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    (repo / "data").mkdir()
    shutil.copy(profiles, repo / "data" / "customer_profiles.parquet")
    shutil.copy(history, repo / "data" / "journey_activity.parquet")
    feast(repo, "apply")
    end = (rows["event_timestamp"].max() + pd.Timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
    feast(repo, "materialize", "2000-01-01T00:00:00", end)

    from pipelines.feast.store import FeatureSettings, open_store

    customers = sorted(latest.index)[:20]
    served = open_store(FeatureSettings(str(repo))).get_online_features(
        features=["journey_activity:cart_value", "journey_activity:support_contacts_7d", "journey_activity:last_channel"],
        entity_rows=[{"customer_id": c} for c in customers]).to_dict()
    for i, customer in enumerate(customers):
        assert (served["cart_value"][i], served["support_contacts_7d"][i], served["last_channel"][i]) == \
            (pytest.approx(latest.loc[customer, "cart_value"]), latest.loc[customer, "support_contacts_7d"],
             latest.loc[customer, "last_channel"]), customer


def activity_row(at_ms: int, cart: float) -> dict:
    return {"events_last_hour": 1, "events_last_day": 2, "cart_value": cart, "last_channel": "web",
            "support_contacts_7d": 0, "event_timestamp": at_ms}


def test_pushes_wait_for_a_full_batch_and_then_feast_serves_the_latest_row_per_customer(sqlite_repo):
    from pipelines.feast.store import FeastPusher, FeatureSettings, open_store

    settings = FeatureSettings(str(sqlite_repo), push_batch_rows=2, push_max_delay_s=3600)
    store = open_store(settings)
    pusher = FeastPusher(store, settings)
    now = int(time.time() * 1000)
    pusher.add("push-a", activity_row(now, 1.0))
    pusher.add("push-a", activity_row(now + 1, 2.0))  # replaces the waiting row of the same customer
    pusher.flush_if_due()
    assert pusher.counts.pushes == 0
    pusher.add("push-b", activity_row(now + 2, 3.0))
    pusher.flush_if_due()
    assert (pusher.counts.pushes, pusher.counts.rows_pushed) == (1, 2)
    served = store.get_online_features(features=["journey_activity:cart_value"],
                                       entity_rows=[{"customer_id": "push-a"}, {"customer_id": "push-b"}]).to_dict()
    assert served["cart_value"] == [2.0, 3.0]


def test_a_push_to_a_stopped_store_is_retried_a_bounded_number_of_times_then_dropped_and_counted(redis_repo,
                                                                                                  tmp_path_factory,
                                                                                                  monkeypatch):
    from pipelines.feast.store import FeastPusher, FeatureSettings, open_store

    server = LocalRedis(tmp_path_factory.mktemp("redis-stopped")).start()
    monkeypatch.setenv("JOURNEYS_REDIS", server.connection_string)
    server.stop()
    settings = FeatureSettings.from_config(str(redis_repo), str(redis_repo / "feature_store.redis.yaml"),
                                           {"push_retries": 2})
    pusher = FeastPusher(open_store(settings), settings)
    pusher.add("c-1", activity_row(int(time.time() * 1000), 1.0))
    started = time.monotonic()
    pusher.flush()
    assert time.monotonic() - started < 2.0  # the job is not held up
    assert (pusher.counts.failed_attempts, pusher.counts.rows_dropped, pusher.counts.pushes) == (3, 1, 0)
