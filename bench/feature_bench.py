"""The feature-store part of make bench: online lookup latency through the Feast SDK, on sqlite and
on Redis, for one entity (what a decision asks) and for a batch of 100.

Each store is a copy of features/ set up with the Feast CLI as the README says: `journeys features
init`, `feast apply`, `feast materialize`, with the benchmark simulation's profiles.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FEAST = str(Path(sys.executable).parent / "feast")
JOURNEYS = str(Path(sys.executable).parent / "journeys")
BATCH = 100


def feature_repo(work: Path, profiles: Path, name: str, store_yaml: str | None = None, env: dict | None = None) -> Path:
    """A fresh copy of features/ with these profiles, applied and materialized."""
    repo = work / name
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(ROOT / "features", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    (repo / "data").mkdir()
    shutil.copy(profiles, repo / "data" / "customer_profiles.parquet")
    yaml = ["-f", str(repo / store_yaml)] if store_yaml else []
    env = env or os.environ.copy()
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    for command in ([JOURNEYS, "features", "init", "--repo", str(repo)], [FEAST, "-c", str(repo), *yaml, "apply"],
                    [FEAST, "-c", str(repo), *yaml, "materialize", "2000-01-01T00:00:00", now]):
        completed = subprocess.run(command, capture_output=True, text=True, env=env)
        if completed.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}")
    return repo


def lookup_latencies(repo: Path, customers: list[str], store_yaml: str | None = None, singles: int = 2000,
                     batches: int = 200, seed: int = 5) -> dict:
    """Milliseconds per get_online_features call for the profile features the job reads."""
    from journeys.features import PROFILE_DEFAULTS
    from pipelines.feast.store import PROFILE_VIEW, FeatureSettings, open_store

    store = open_store(FeatureSettings.from_config(str(repo), str(repo / store_yaml) if store_yaml else None, {}))
    features = [f"{PROFILE_VIEW}:{name}" for name in PROFILE_DEFAULTS]
    pick = random.Random(seed)

    def timed(rows: list[dict]) -> float:
        started = time.perf_counter()
        result = store.get_online_features(features=features, entity_rows=rows).to_dict()
        elapsed = (time.perf_counter() - started) * 1000
        if result["segment"][0] is None:
            raise SystemExit(f"{repo}: the online store has no profile for {rows[0]['customer_id']}: not materialized?")
        return elapsed

    for _ in range(50):  # registry load, connections, first-call caches
        timed([{"customer_id": pick.choice(customers)}])
    one = sorted(timed([{"customer_id": pick.choice(customers)}]) for _ in range(singles))
    hundred = sorted(timed([{"customer_id": c} for c in pick.sample(customers, BATCH)]) for _ in range(batches))
    return {"one_entity_p50_ms": percentile(one, 50), "one_entity_p99_ms": percentile(one, 99),
            f"batch_{BATCH}_p50_ms": percentile(hundred, 50), f"batch_{BATCH}_p99_ms": percentile(hundred, 99),
            "one_entity_calls": singles, f"batch_{BATCH}_calls": batches}


def percentile(ordered: list[float], p: int) -> float:
    return round(ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))], 3)


def measure_lookups(work: Path, profiles: Path) -> tuple[dict, Path]:
    """Lookup latencies on sqlite and on a local Redis; and the sqlite repository, for the job runs."""
    import pyarrow.parquet as pq

    from scripts.local_redis import LocalRedis

    customers = pq.read_table(profiles, columns=["customer_id"]).column(0).to_pylist()
    sqlite_repo = feature_repo(work, profiles, "feature-repo-sqlite")
    results = {"sqlite": lookup_latencies(sqlite_repo, customers)}
    redis = LocalRedis(work / "redis").start()
    try:
        os.environ["JOURNEYS_REDIS"] = redis.connection_string
        redis_repo = feature_repo(work, profiles, "feature-repo-redis", "feature_store.redis.yaml", os.environ.copy())
        results["redis"] = lookup_latencies(redis_repo, customers, "feature_store.redis.yaml")
    finally:
        redis.stop()
    return results, sqlite_repo
