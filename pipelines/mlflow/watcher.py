"""Reading the MLflow registry for the job's tasks: where the aliases point, and each version's
model read out as plain arrays (models.linear).

A task never runs MLflow itself. MLflow's sqlite store registers Python functions with sqlite,
and a C callback that takes the GIL through PyGILState hangs in PyFlink's thread mode (as
pyarrow's conversions do, see pipelines.feast.store). So each task starts this module as a
small process of its own, which asks the registry every poll interval and writes what it found
to a state file; the task reads the file when it changes. The process ends with its task (its
standard input closes) or when the task asks it to.

    python -m pipelines.mlflow.watcher --settings JSON --state FILE
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

from journeys.scoring import CANARY, CANARY_SHARE_TAG, CHALLENGER, CHAMPION, KIND_TAG
from pipelines.mlflow.settings import ModelServingSettings, canary_share_of, short_error
from pipelines.quiet import hush_third_party_warnings


class RegistryReader:
    """One snapshot of the registry per read(), with running counts. Versions are loaded once."""

    def __init__(self, settings: ModelServingSettings):
        self.settings = settings
        self.polls = 0
        self.poll_failures = 0
        self._client = None
        self._weights: dict[tuple[str, str], dict] = {}

    def read(self) -> dict:
        self.polls += 1
        try:
            entries = self._entries()
            error = None
        except Exception as failure:  # whatever the client raises: the task keeps what it has, and retries
            self.poll_failures += 1
            entries, error = {}, f"model registry unreachable ({short_error(failure)})"
        return {"polls": self.polls, "poll_failures": self.poll_failures, "error": error, "entries": entries,
                "read_at": time.time()}

    def _registry(self):
        if self._client is None:
            uri = self.settings.registry_uri
            if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
                raise FileNotFoundError(f"no registry database at {uri.removeprefix('sqlite:///')}")
            # Fail fast and retry at the next poll, rather than MLflow's default retries with backoff.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(max(1, self.settings.request_timeout_s))))
            import mlflow
            from mlflow import MlflowClient

            mlflow.set_tracking_uri(uri)  # models:/ URIs resolve through these
            mlflow.set_registry_uri(uri)
            self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        return self._client

    def _entries(self) -> dict:
        from mlflow.exceptions import MlflowException

        client = self._registry()
        aliases = ((CHAMPION, CHALLENGER) if self.settings.shadow_challengers else (CHAMPION,)) + (CANARY,)
        entries = {}
        for kind, name in self.settings.registered:
            try:
                model = client.get_registered_model(name)
            except MlflowException as error:
                if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                entries[name] = {"registered": False}
                continue
            pointing = model.aliases  # alias -> version
            entry = {"registered": True}
            for alias in aliases:
                version = pointing.get(alias)
                if version is not None:
                    entry[alias] = self._version(kind, name, str(version))
            if CANARY in entry and "error" not in entry[CANARY]:
                entry[CANARY] = entry[CANARY] | self._canary_share(name, entry[CANARY]["version"])
            entries[name] = entry
        return entries

    def _canary_share(self, name: str, version: str) -> dict:
        """The share the canary scores for: its version's journeys.canary_share tag, read at every
        poll so that it can change at run time, else the configuration's models.canary_share."""
        tag = self._registry().get_model_version(name, version).tags.get(CANARY_SHARE_TAG)
        if tag is None:
            return {"share": self.settings.canary_share}
        try:
            return {"share": canary_share_of(tag, f"{name} version {version}'s {CANARY_SHARE_TAG} tag")}
        except ValueError as error:
            return {"share": 0.0, "share_error": str(error)}

    def _version(self, kind: str, name: str, version: str) -> dict:
        key = (name, version)
        if key not in self._weights:
            try:
                self._weights[key] = {"version": version} | self._load(kind, name, version)
            except Exception as error:  # a broken version is reported; the task keeps the one it uses
                return {"version": version, "error": short_error(error)}
        return self._weights[key]

    def _load(self, kind: str, name: str, version: str) -> dict:
        """The version's weights, and the drift profile of its training data where it was logged with one."""
        import mlflow.pyfunc

        found = self._registry().get_model_version(name, version)
        logged_kind = found.tags.get(KIND_TAG)
        if logged_kind != kind:
            raise ValueError(f"it is a {logged_kind or 'non-journeys'} model, configured as {kind}")
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model()
        linear = getattr(model, "linear", None)
        if linear is None:
            raise ValueError("its pipeline is not the journeys linear shape (scaler, one-hot, logistic regression)")
        return {"weights": linear.to_dict(), "drift_profile": getattr(model, "drift_profile", None)}


def write_state(path: Path, snapshot: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(snapshot))
    os.replace(partial, path)  # readers see a whole snapshot or the previous one


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="registry_watcher", description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", required=True, help="ModelServingSettings as JSON")
    parser.add_argument("--state", required=True, help="the state file to write")
    parser.add_argument("--once", action="store_true", help="read the registry once and exit")
    args = parser.parse_args(argv)
    hush_third_party_warnings()
    settings = ModelServingSettings.from_json(args.settings)
    state = Path(args.state)
    reader = RegistryReader(settings)
    stop = threading.Event()
    if not args.once:
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()  # EOF: the task is gone
    while True:
        write_state(state, reader.read())
        if args.once or stop.wait(settings.poll_interval_s):
            return 0


if __name__ == "__main__":
    sys.exit(main())
