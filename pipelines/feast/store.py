"""The journey job's link to Feast: online profile lookups for decisions, and batched pushes of
the behavioural features the job computes. Created once per task, in the operator's open()."""
from __future__ import annotations

import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from journeys.features import ACTIVITY_FEATURES, PROFILE_AS_OF, PROFILE_DEFAULTS
from journeys.timeutil import parse_duration
from pipelines.feast.guarded import GuardedProfiles
from pipelines.quiet import hush_third_party_warnings

log = logging.getLogger(__name__)

PROFILE_VIEW = "customer_profile"
ACTIVITY_VIEW = "journey_activity"


@dataclass(frozen=True)
class FeatureSettings:
    repo: str                      # the Feast repository (features/)
    store_yaml: str | None = None  # another feature_store.yaml, e.g. the Redis profile
    # Values of the ${VARIABLES} the feature_store.yaml uses, as the driver saw them: a TaskManager's
    # environment was fixed when its JVM started, or is another machine's.
    environment: tuple[tuple[str, str], ...] = ()
    cache_ttl_s: float = 60.0
    lookup_budget_ms: float = 20.0
    breaker_cooldown_s: float = 5.0
    push_batch_rows: int = 500
    push_max_delay_s: float = 1.0
    push_retries: int = 2

    @classmethod
    def from_config(cls, repo: str, store_yaml: str | None, section: dict) -> "FeatureSettings":
        seconds = lambda key, default: parse_duration(section.get(key, default)) / 1000  # noqa: E731
        store_yaml = str(Path(store_yaml).resolve()) if store_yaml else None
        yaml_text = Path(store_yaml or Path(repo) / "feature_store.yaml").read_text()
        names = sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", yaml_text)))
        missing = [name for name in names if name not in os.environ]
        if missing:
            raise ValueError(f"{store_yaml or Path(repo) / 'feature_store.yaml'} uses ${{{missing[0]}}}, which is not set")
        return cls(str(Path(repo).resolve()), store_yaml, tuple((name, os.environ[name]) for name in names),
                   cache_ttl_s=seconds("cache_ttl", "60s"), lookup_budget_ms=parse_duration(section.get("lookup_budget", "20ms")),
                   breaker_cooldown_s=seconds("breaker_cooldown", "5s"),
                   push_batch_rows=int(section.get("push_batch_rows", 500)),
                   push_max_delay_s=seconds("push_max_delay", "1s"), push_retries=int(section.get("push_retries", 2)))


def open_store(settings: FeatureSettings):
    os.environ.update(dict(settings.environment))
    # Feast imports dask, and dask.array imports scipy.fftpack when it can. scipy's FFT module is
    # built with pybind11, whose GIL handling can deadlock when it is first imported in one of
    # PyFlink's embedded (thread mode) Python threads while others run. Nothing here needs it, and
    # dask does without it.
    sys.modules.setdefault("scipy.fftpack", None)
    from feast import FeatureStore

    hush_third_party_warnings()  # again: a library Feast imports lets every deprecation through once
    return FeatureStore(repo_path=settings.repo, fs_yaml_file=Path(settings.store_yaml) if settings.store_yaml else None)


def checked_feature_settings(repo: str, store_yaml: str | None, section: dict) -> FeatureSettings:
    """The job's feature settings for a repository, after checking it is applied and reachable."""
    settings = FeatureSettings.from_config(repo, store_yaml, section)
    check_store(settings)
    return settings


def check_store(settings: FeatureSettings) -> None:
    """Fail at start, with the fix, when the repository is missing, not applied, or its online store is down."""
    if not (Path(settings.repo) / "feature_store.yaml").exists():
        raise ValueError(f"{settings.repo} is not a Feast repository (no feature_store.yaml)")
    try:
        store = open_store(settings)
        store.get_feature_view(PROFILE_VIEW)
    except Exception as error:
        raise ValueError(f"the feature store in {settings.repo} is not ready: {type(error).__name__}: {error}. "
                         f"Run `journeys features init --repo {settings.repo}` and `feast -c {settings.repo} apply`") from None
    try:
        store.get_online_features(features=[f"{PROFILE_VIEW}:segment"], entity_rows=[{"customer_id": "-"}])
    except Exception as error:
        raise ValueError(f"the online store of {settings.repo} cannot be read: {type(error).__name__}: {error}") from None


class FeastProfiles(GuardedProfiles):
    """Profile features read online through the Feast SDK, behind a cache, a budget and a breaker."""

    def __init__(self, store, settings: FeatureSettings):
        references = [f"{PROFILE_VIEW}:{name}" for name in PROFILE_DEFAULTS]

        def fetch(customer_id: str) -> dict | None:
            result = store.get_online_features(features=references, entity_rows=[{"customer_id": customer_id}]
                                               ).to_dict(include_event_timestamps=True)
            values = {name: result[name][0] for name in PROFILE_DEFAULTS}
            if all(value is None for value in values.values()):
                return None
            written = [result[f"{name}__ts"][0] for name in PROFILE_DEFAULTS if values[name] is not None]
            return {name: PROFILE_DEFAULTS[name] if value is None else value for name, value in values.items()} | {
                PROFILE_AS_OF: max(written) * 1000}  # Feast gives seconds

        super().__init__(fetch, cache_ttl_s=settings.cache_ttl_s, budget_ms=settings.lookup_budget_ms,
                         cooldown_s=settings.breaker_cooldown_s)
        try:  # the first lookup loads the registry and connects: do it now, not in a decision's budget
            fetch("warm-up")
        except Exception as error:
            log.warning("the first feature lookup failed (%s); decisions fall back to defaults until it works", error)


@dataclass
class PushCounts:
    rows_pushed: int = 0
    pushes: int = 0
    failed_attempts: int = 0
    rows_dropped: int = 0


class FeastPusher:
    """Behavioural feature rows to the journey_activity view, batched: the latest row per customer
    waits until a batch is full or old enough. A failed write is retried a bounded number of
    times and then dropped and counted: the next write overwrites the row anyway, and the job must
    not wait on the store.

    Rows go in through the online store's own write API as Feast protos, the path that Feast's
    push() ends in. push() itself first converts a DataFrame with pyarrow, whose buffers take the
    GIL through PyGILState_Ensure and hang PyFlink's embedded (thread mode) Python; so the job
    writes online only, and the offline history comes from batch replays."""

    def __init__(self, store, settings: FeatureSettings, clock=time.monotonic):
        self._store = store
        self._settings = settings
        self._view = store.get_feature_view(ACTIVITY_VIEW)
        self._provider = store._get_provider()  # Feast's own write path, without the DataFrame detour
        self._clock = clock
        self._pending: dict[str, dict] = {}
        self._oldest: float | None = None
        self.counts = PushCounts()

    def add(self, customer_id: str, row: dict) -> None:
        if not self._pending:
            self._oldest = self._clock()
        self._pending[customer_id] = row

    def flush_if_due(self) -> None:
        if self._pending and (len(self._pending) >= self._settings.push_batch_rows
                              or self._clock() - self._oldest >= self._settings.push_max_delay_s):
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        rows = [_proto_row(customer_id, row) for customer_id, row in self._pending.items()]
        self._pending = {}
        for attempt in range(self._settings.push_retries + 1):
            try:
                self._provider.online_write_batch(self._store.config, self._view, rows, None)
                self.counts.pushes += 1
                self.counts.rows_pushed += len(rows)
                return
            except Exception as error:  # the store is down or failing: retry, then drop and count
                self.counts.failed_attempts += 1
                if attempt == self._settings.push_retries:
                    self.counts.rows_dropped += len(rows)
                    log.warning("dropped %d feature rows after %d failed writes: %s", len(rows), attempt + 1, error)


def _proto_row(customer_id: str, row: dict):
    from datetime import datetime, timezone

    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    values = {}
    for name in ACTIVITY_FEATURES:
        value = row.get(name)
        if value is None:
            values[name] = Value()
        elif isinstance(value, str):
            values[name] = Value(string_val=value)
        elif isinstance(value, float):
            values[name] = Value(double_val=value)
        else:
            values[name] = Value(int64_val=int(value))
    at = datetime.fromtimestamp(row["event_timestamp"] / 1000, tz=timezone.utc)
    key = EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=customer_id)])
    return key, values, at, None


# -- the repository's data, and training frames ---------------------------------------------------
ACTIVITY_HISTORY = "data/journey_activity.parquet"
FEATURE_SERVICE = "journey_agent_v1"


def init_repo_data(repo: str | Path) -> list[Path]:
    """Create what `feast materialize` reads before any data arrived: the push source's offline
    table (empty, with its schema). Existing files are left alone."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    created = []
    history = Path(repo) / ACTIVITY_HISTORY
    if not history.exists():
        history.parent.mkdir(parents=True, exist_ok=True)
        schema = pa.schema([("customer_id", pa.string()), ("events_last_hour", pa.int64()), ("events_last_day", pa.int64()),
                            ("cart_value", pa.float64()), ("last_channel", pa.string()),
                            ("support_contacts_7d", pa.int64()), ("event_timestamp", pa.timestamp("ms", tz="UTC"))])
        pq.write_table(schema.empty_table(), history)
        created.append(history)
    return created


def training_set(repo: str | Path, entities_path: str | Path, out_path: str | Path, service: str = FEATURE_SERVICE,
                 store_yaml: str | None = None) -> int:
    """Point-in-time features for each (customer_id, event_timestamp) row of an entity file
    (parquet or CSV): each row gets the feature values as they were at its timestamp, never later."""
    import pandas as pd
    from feast import FeatureStore

    entities_path = Path(entities_path)
    if entities_path.suffix == ".csv":
        entities = pd.read_csv(entities_path)
    else:
        entities = pd.read_parquet(entities_path)
    missing = {"customer_id", "event_timestamp"} - set(entities.columns)
    if missing:
        raise ValueError(f"{entities_path}: the entity file needs the columns customer_id and event_timestamp "
                         f"(missing: {', '.join(sorted(missing))})")
    entities["event_timestamp"] = pd.to_datetime(entities["event_timestamp"], utc=True)
    store = FeatureStore(repo_path=str(repo), fs_yaml_file=Path(store_yaml) if store_yaml else None)
    frame = store.get_historical_features(entity_df=entities, features=store.get_feature_service(service)).to_df()
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out_path, index=False)
    return len(frame)


PUSH_SOURCE = "journey_activity_push"
ACTIVITY_COLUMNS = ("customer_id", *ACTIVITY_FEATURES, "event_timestamp")
PUSHED_MANIFEST = "_pushed_to_feast.txt"


@dataclass(frozen=True)
class OfflinePush:
    files: int
    rows: int


def push_offline(repo: str | Path, rows_dir: str | Path, store_yaml: str | None = None) -> OfflinePush:
    """Push the feature rows a job wrote (--feature-rows) to the offline store, through the push
    source, so training sets and `feast materialize` see the history the job computed.

    Only committed part files are read, and each only once: the names of pushed files are kept in
    _pushed_to_feast.txt beside them, so the command can run after every job run or on a schedule."""
    import pandas as pd
    from feast import FeatureStore
    from feast.data_source import PushMode

    from pipelines.tools.files import input_files
    from pipelines.reports.summary import read_records

    rows_dir = Path(rows_dir)
    if not rows_dir.is_dir():
        raise ValueError(f"{rows_dir}: no such directory (the job's --feature-rows output)")
    manifest = rows_dir / PUSHED_MANIFEST
    pushed = set(manifest.read_text().split()) if manifest.exists() else set()
    files = [f for f in input_files(rows_dir) if str(f.relative_to(rows_dir)) not in pushed]
    records = [record for file in files for record in read_records(file)]
    if records:
        frame = pd.DataFrame.from_records(records, columns=list(ACTIVITY_COLUMNS))
        frame = frame.astype({"events_last_hour": "int64", "events_last_day": "int64", "cart_value": "float64",
                              "support_contacts_7d": "int64"})
        frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], unit="ms", utc=True)
        store = FeatureStore(repo_path=str(repo), fs_yaml_file=Path(store_yaml) if store_yaml else None)
        store.push(PUSH_SOURCE, frame, to=PushMode.OFFLINE)
    with manifest.open("a") as out:
        out.writelines(f"{f.relative_to(rows_dir)}\n" for f in files)
    return OfflinePush(len(files), len(records))
