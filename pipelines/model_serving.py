"""The journey job's link to the MLflow registry: the stage models each task scores decisions with.

A task loads `models:/<name>@champion` (and `@challenger`, scored in the shadow) once, in the
operator's open(). It asks the registry where the aliases point again every `poll_interval`,
from inside the operator's own calls: when an alias has moved, the new version is loaded and
swapped in between two calls, so no event waits for a restart and none is lost. Versions are
loaded by number (`models:/<name>/<version>`), so a decision cites exactly the version that
scored it.

When the registry cannot be reached, or a version fails to load, the task keeps the versions
it has; with none, decisions are made on rules alone and say why, and the next poll retries.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from journeys.scoring import MODEL_KINDS, ActiveModels, ModelScore
from journeys.timeutil import parse_duration

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
KIND_TAG = "journeys.kind"


@dataclass(frozen=True)
class ModelServingSettings:
    registry_uri: str                               # MLflow tracking/registry URI: sqlite:///..., http://host:5000
    registered: tuple[tuple[str, str], ...] = tuple((kind, kind) for kind in MODEL_KINDS)  # (kind, registered name)
    poll_interval_s: float = 10.0
    shadow_challengers: bool = True
    request_timeout_s: float = 5.0

    @classmethod
    def from_config(cls, registry_uri: str, section: dict) -> "ModelServingSettings":
        registered = section.get("registered", {kind: kind for kind in MODEL_KINDS})
        if not isinstance(registered, dict) or not registered:
            raise ValueError("models.registered must map model kinds to registered model names")
        unknown = [kind for kind in registered if kind not in MODEL_KINDS]
        if unknown:
            raise ValueError(f"models.registered: unknown model kind {unknown[0]!r}; the kinds are {', '.join(MODEL_KINDS)}")
        interval = parse_duration(str(section.get("poll_interval", "10s"))) / 1000
        if interval <= 0:
            raise ValueError("models.poll_interval must be positive")
        timeout = parse_duration(str(section.get("request_timeout", "5s"))) / 1000
        return cls(registry_uri, tuple((kind, str(name)) for kind, name in registered.items() if name),
                   interval, bool(section.get("shadow_challengers", True)), timeout)


@dataclass
class ServingCounts:
    polls: int = 0
    poll_failures: int = 0
    loads: int = 0
    swaps: int = 0
    load_failures: int = 0
    champion_versions: dict = field(default_factory=dict)  # registered name -> the version scoring now


class LoadedModel:
    """One registered version, scoring the rows of one call at once (models.pyfunc's fast path)."""

    def __init__(self, kind: str, name: str, version: str, model, observe: Callable[[int, float], None] | None = None):
        self.kind, self.name, self.version = kind, name, version
        self._model = model
        self._observe = observe

    def score(self, rows) -> list[ModelScore]:
        started = time.perf_counter()
        answers = self._model.score_rows(list(rows))
        if self._observe is not None:
            self._observe(len(answers), time.perf_counter() - started)
        return [ModelScore(self.name, self.version, prediction, score, self.kind) for prediction, score in answers]


class RegistryModels:
    """A journeys.scoring.ModelSource over the MLflow registry, for one task."""

    def __init__(self, settings: ModelServingSettings, clock: Callable[[], float] = time.monotonic,
                 observe: Callable[[int, float], None] | None = None):
        self.settings = settings
        self.counts = ServingCounts()
        self._clock = clock
        self._observe = observe
        self._loaded: dict[tuple[str, str], LoadedModel] = {}
        self._active = ActiveModels(note="the model registry has not been asked yet")
        self._next_poll = float("-inf")
        self._client = None

    def active(self) -> ActiveModels:
        if self._clock() >= self._next_poll:
            self.poll()
        return self._active

    def poll(self) -> None:
        """Ask where the aliases point, load what moved, and make that the active set."""
        self._next_poll = self._clock() + self.settings.poll_interval_s
        self.counts.polls += 1
        try:
            pointing = self._aliases()
        except Exception as error:  # any failure of the registry's client: keep serving, retry next poll
            self.counts.poll_failures += 1
            reason = f"model registry unreachable ({_short(error)})"
            log.warning("%s; retrying in %.0f s", reason, self.settings.poll_interval_s)
            if not self._loaded:
                self._active = ActiveModels(note=f"{reason}; retrying every {self.settings.poll_interval_s:g} s")
            return
        aliases = (CHAMPION, CHALLENGER) if self.settings.shadow_challengers else (CHAMPION,)
        champions, challengers, notes = [], [], []
        for kind, name in self.settings.registered:
            for alias in aliases:
                model = self._resolve(kind, name, alias, pointing.get(name), notes)
                if model is not None:
                    (champions if alias == CHAMPION else challengers).append(model)
        self.counts.champion_versions = {m.name: m.version for m in champions}
        self._active = ActiveModels(tuple(champions), tuple(challengers), "; ".join(notes) or None)

    def _resolve(self, kind: str, name: str, alias: str, versions: dict | None, notes: list) -> LoadedModel | None:
        key = (name, alias)
        version = None if versions is None else versions.get(alias)
        if version is None:
            self._loaded.pop(key, None)
            if alias == CHAMPION:
                notes.append(f"{name} is not registered" if versions is None else f"{name} has no champion alias")
            return None
        current = self._loaded.get(key)
        if current is not None and current.version == version:
            return current
        try:
            loaded = self._load(kind, name, version)
        except Exception as error:  # a broken version must not stop the job: keep the one in use
            self.counts.load_failures += 1
            log.warning("%s version %s (@%s) failed to load: %s", name, version, alias, _short(error))
            if current is None and alias == CHAMPION:
                notes.append(f"{name} version {version} failed to load ({_short(error)})")
            return current
        self.counts.loads += 1
        if current is not None:
            self.counts.swaps += 1
            log.info("%s@%s moved from version %s to %s", name, alias, current.version, version)
        self._loaded[key] = loaded
        return loaded

    # -- the registry ------------------------------------------------------------------------------
    def _registry(self):
        if self._client is None:
            uri = self.settings.registry_uri
            if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
                raise FileNotFoundError(f"no registry database at {uri.removeprefix('sqlite:///')}")
            # A poll runs inside an operator call: fail fast and retry at the next poll, rather than
            # hold the stream for MLflow's default retries with backoff.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(max(1, self.settings.request_timeout_s))))
            import mlflow
            from mlflow import MlflowClient

            mlflow.set_tracking_uri(uri)  # models:/ URIs resolve through these: one registry per job
            mlflow.set_registry_uri(uri)
            self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        return self._client

    def _aliases(self) -> dict[str, dict[str, str] | None]:
        """Registered name -> {alias: version}, or None for a name that is not registered."""
        from mlflow.exceptions import MlflowException

        client = self._registry()
        pointing = {}
        for _, name in self.settings.registered:
            try:
                model = client.get_registered_model(name)
            except MlflowException as error:
                if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                pointing[name] = None
                continue
            pointing[name] = {alias: str(version) for alias, version in _alias_items(model.aliases)}
        return pointing

    def _load(self, kind: str, name: str, version: str) -> LoadedModel:
        import mlflow.pyfunc

        found = self._registry().get_model_version(name, version)
        logged_kind = found.tags.get(KIND_TAG)
        if logged_kind != kind:
            raise ValueError(f"it is a {logged_kind or 'non-journeys'} model, configured as {kind}")
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model()
        if not hasattr(model, "score_rows"):
            raise ValueError("its pyfunc has no score_rows (not a journeys stage model)")
        return LoadedModel(kind, name, version, model, self._observe)


def _alias_items(aliases):
    """MLflow gives a registered model's aliases as a dict, or as alias objects in some stores."""
    if isinstance(aliases, dict):
        return aliases.items()
    return [(a.alias, a.version) for a in aliases or ()]


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text[:160]}" if text else type(error).__name__


__all__ = ["ModelServingSettings", "RegistryModels", "LoadedModel", "ServingCounts", "CHAMPION", "CHALLENGER"]
