"""The stage models each task of the journey job scores decisions with, from the MLflow registry.

A task serves `models:/<name>@champion` (acting) and `models:/<name>@challenger` (shadow-scored,
never acting). Where the aliases point is read once at start (open()) and again every
`poll_interval`: when an alias has moved, the new version is swapped in between two operator
calls, with no restart and no event held back. A decision cites the exact version that scored it.

The registry is read by pipelines.mlflow.watcher: in a process of the task's own inside the
job (MLflow cannot run in PyFlink's thread mode), or in this process for the pure core (tests,
the benchmark). Either way a read gives a snapshot: per registered name, the versions the
aliases point at, each with its model read out as arrays (models.linear), or why it failed.

When the registry cannot be reached, or a version fails to load, the task keeps the versions it
has; with none, decisions are made on rules alone and say why, and later reads retry.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from journeys.drift import DriftProfile
from journeys.scoring import CANARY, CHALLENGER, CHAMPION, ActiveModels, ModelCanary, ModelScore
from pipelines import PROJECT_ROOT
from pipelines.mlflow.settings import ModelServingSettings
from pipelines.mlflow.watcher import RegistryReader

log = logging.getLogger(__name__)



@dataclass
class ServingCounts:
    polls: int = 0
    poll_failures: int = 0
    loads: int = 0
    swaps: int = 0
    load_failures: int = 0
    champion_versions: dict = field(default_factory=dict)  # registered name -> the version scoring now


class LinearModel:
    """One registered version, scoring the rows of one call at once; drift_profile: its training
    data's distributions (journeys.drift), where the version was logged with them."""

    def __init__(self, kind: str, name: str, version: str, scorer, observe: Callable[[int, float], None] | None = None,
                 drift_profile: DriftProfile | None = None):
        self.kind, self.name, self.version = kind, name, version
        self._scorer = scorer
        self._observe = observe
        self.drift_profile = drift_profile

    def score(self, rows) -> list[ModelScore]:
        started = time.perf_counter()
        answers = self._scorer.answers(self.kind, list(rows))
        if self._observe is not None:
            self._observe(len(answers), time.perf_counter() - started)
        return [ModelScore(self.name, self.version, prediction, score, self.kind) for prediction, score in answers]


class InProcessRegistry:
    """Reads the registry in this process, at most once per poll interval."""

    def __init__(self, settings: ModelServingSettings, clock: Callable[[], float] = time.monotonic):
        self._reader = RegistryReader(settings)
        self._interval = settings.poll_interval_s
        self._clock = clock
        self._next = float("-inf")

    def start(self) -> None:
        pass

    def fetch(self) -> dict | None:
        if self._clock() < self._next:
            return None
        self._next = self._clock() + self._interval
        return self._reader.read()

    def stop(self) -> None:
        pass


class WatchedRegistry:
    """Reads the snapshots a registry_watcher process writes, when a new one is there."""

    def __init__(self, settings: ModelServingSettings, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self._clock = clock
        self._check_every = min(1.0, settings.poll_interval_s)
        self._next = float("-inf")
        self._seen = None
        self._process = None
        self._folder = None

    def launch(self) -> None:
        """Start the watcher process, without waiting for its first read."""
        if self._process is None:
            self._folder = tempfile.TemporaryDirectory(prefix="journeys-models-")
            self._state = Path(self._folder.name) / "registry.json"
            self._spawn()

    def start(self) -> None:
        """Start the watcher (unless launched already) and wait for its first read, up to the startup timeout."""
        self.launch()
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while not self._state.exists() and time.monotonic() < deadline and self._process.poll() is None:
            time.sleep(0.05)

    def _spawn(self) -> None:
        self._restart_at = self._clock() + self.settings.poll_interval_s
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), environment.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self._process = subprocess.Popen(
            [self.settings.python, "-m", "pipelines.mlflow.watcher", "--settings", self.settings.to_json(),
             "--state", str(self._state)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=str(PROJECT_ROOT), env=environment)

    def fetch(self) -> dict | None:
        if self._clock() < self._next:
            return None
        self._next = self._clock() + self._check_every
        if self._process is not None and self._process.poll() is not None:
            code = self._process.returncode
            if self._clock() >= self._restart_at:  # at most once per poll interval
                log.warning("the registry watcher exited with code %s; starting it again", code)
                self._spawn()
            return _no_answer(f"the registry watcher exited with code {code}", watcher_exited=True)
        try:
            stat = self._state.stat()
        except FileNotFoundError:
            return None if self._seen is not None else _no_answer("the model registry has not answered yet")
        if (stat.st_mtime_ns, stat.st_size) == self._seen:
            return None
        self._seen = (stat.st_mtime_ns, stat.st_size)
        return json.loads(self._state.read_text())

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        if self._folder is not None:
            self._folder.cleanup()


class RegistryModels:
    """A journeys.scoring.ModelSource: the active champions and challengers of one task."""

    def __init__(self, settings: ModelServingSettings, registry=None, observe: Callable[[int, float], None] | None = None):
        self.settings = settings
        self.counts = ServingCounts()
        self._registry = registry if registry is not None else InProcessRegistry(settings)
        self._observe = observe
        self._loaded: dict[tuple[str, str], LinearModel] = {}
        self._failed: set[tuple[str, str]] = set()
        self._active = ActiveModels(note="the model registry has not been read yet")
        self._base, self._last, self._watcher_failures = (0, 0), (0, 0), 0
        self._stopped: set[tuple[str, str]] = set()  # (name, version): canaries the job's gates stopped

    def start(self) -> "RegistryModels":
        self._registry.start()
        self.poll()
        return self

    def stop(self) -> None:
        self._registry.stop()

    def active(self) -> ActiveModels:
        self.poll()
        return self._active

    def poll(self) -> None:
        snapshot = self._registry.fetch()
        if snapshot is None:
            return
        self._count_polls(snapshot)
        if snapshot["error"]:
            log.warning("%s; the task keeps %s", snapshot["error"], "its models" if self._loaded else "to rules alone")
            if not self._loaded:
                self._active = ActiveModels(note=f"{snapshot['error']}; retrying every {self.settings.poll_interval_s:g} s")
            return
        aliases = (CHAMPION, CHALLENGER) if self.settings.shadow_challengers else (CHAMPION,)
        champions, challengers, canaries, notes = [], [], [], []
        for kind, name in self.settings.registered:
            entry = snapshot["entries"].get(name, {"registered": False})
            for alias in aliases:
                model = self._resolve(kind, name, alias, entry, notes)
                if model is not None:
                    (champions if alias == CHAMPION else challengers).append(model)
            canary = self._canary(kind, name, entry, champions, notes)
            if canary is not None:
                canaries.append(canary)
        self.counts.champion_versions = {m.name: m.version for m in champions}
        self._active = ActiveModels(tuple(champions), tuple(challengers), "; ".join(notes) or None, tuple(canaries))

    def stop_canary(self, name: str, version: str) -> bool:
        """Score with the champion for everyone, whatever the alias canary says, until it points at
        another version. Whether this canary was scoring here."""
        self._stopped.add((name, version))
        active = self._active
        kept = tuple(c for c in active.canaries if (c.scorer.name, c.scorer.version) != (name, version))
        self._active = ActiveModels(active.champions, active.challengers, active.note, kept)
        return len(kept) < len(active.canaries)

    def _canary(self, kind: str, name: str, entry: dict, champions: list, notes: list) -> ModelCanary | None:
        """The version under the alias canary, with its share; none where it is the champion's
        version, has no share, or the model has no champion to stand in for."""
        model = self._resolve(kind, name, CANARY, entry, notes)
        pointed = entry.get(CANARY) or {}
        if pointed.get("share_error") and (name, pointed["version"], "share") not in self._failed:
            self._failed.add((name, pointed["version"], "share"))
            log.warning("%s: the canary scores for no one", pointed["share_error"])
        champion = next((m for m in champions if m.name == name), None)
        if (model is None or champion is None or champion.version == model.version or not pointed.get("share")
                or (name, model.version) in self._stopped):
            return None
        return ModelCanary(model, float(pointed["share"]))

    def _count_polls(self, snapshot: dict) -> None:
        """Running totals across watcher restarts (a new watcher counts from zero again)."""
        polls, failures = snapshot["polls"], snapshot["poll_failures"]
        if polls < self._last[0]:
            self._base = (self._base[0] + self._last[0], self._base[1] + self._last[1])
        self._last = (polls, failures)
        self.counts.polls = self._base[0] + polls
        self.counts.poll_failures = self._base[1] + failures + self._watcher_failures
        if snapshot.get("watcher_exited"):
            self._watcher_failures += 1
            self.counts.poll_failures += 1

    def _resolve(self, kind: str, name: str, alias: str, entry: dict, notes: list) -> LinearModel | None:
        from models.linear import LinearScorer

        key = (name, alias)
        pointed = entry.get(alias)
        if pointed is None:
            self._loaded.pop(key, None)
            if alias == CHAMPION:
                notes.append(f"{name} has no champion alias" if entry.get("registered") else f"{name} is not registered")
            return None
        current = self._loaded.get(key)
        version = pointed["version"]
        if current is not None and current.version == version:
            return current
        if pointed.get("error"):
            if (name, version) not in self._failed:
                self._failed.add((name, version))
                self.counts.load_failures += 1
                log.warning("%s version %s (@%s) failed to load: %s", name, version, alias, pointed["error"])
            if current is None and alias == CHAMPION:
                notes.append(f"{name} version {version} failed to load ({pointed['error']})")
            return current
        profile = pointed.get("drift_profile")
        loaded = LinearModel(kind, name, version, LinearScorer.from_dict(pointed["weights"]), self._observe,
                             DriftProfile.from_dict(profile) if profile else None)
        self.counts.loads += 1
        if current is not None:
            self.counts.swaps += 1
            log.info("%s@%s moved from version %s to %s", name, alias, current.version, version)
        self._loaded[key] = loaded
        return loaded


def _no_answer(error: str, **extra) -> dict:
    """A snapshot for when no read of the registry is there to hand over."""
    return {"error": error, "entries": {}, "polls": 0, "poll_failures": 0, **extra}


class ModelsAtStart:
    """The registry's first read for the driver, which says at start which versions will score.
    The read runs in a watcher process from the moment this is made, beside the driver's other
    checks, and the driver imports no MLflow. An unreachable registry does not stop the job: it
    starts on rules alone and keeps asking."""

    def __init__(self, registry_uri: str, section: dict):
        self.settings = ModelServingSettings.from_config(registry_uri, section)
        self._registry = WatchedRegistry(self.settings)
        self._registry.launch()

    def said(self) -> str:
        models = RegistryModels(self.settings, self._registry).start()
        try:
            active = models.active()
        finally:
            models.stop()
        cited = [f"{m.name} v{m.version} (champion)" for m in active.champions]
        cited += [f"{m.name} v{m.version} (challenger, shadow)" for m in active.challengers]
        return (f"models from {self.settings.registry_uri}: {', '.join(cited) or 'none'}"
                + (f"; {active.note}" if active.note else ""))


__all__ = ["ModelServingSettings", "RegistryModels", "InProcessRegistry", "WatchedRegistry", "LinearModel",
           "ServingCounts", "ModelsAtStart"]
