"""The MLflow workflow of the stage models: train and log, register, promote by alias (gated),
roll back. Aliases only (`champion`, `challenger`); MLflow's deprecated stages are never used.

The tracking and registry URI is the one given, else $MLFLOW_TRACKING_URI, else a sqlite file
under var/mlflow. A shared registry is an `mlflow server` URL in either place.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from journeys.drift import DRIFT_PROFILE_FILE
from journeys.scoring import (ALIASES, CANARY, CANARY_SHARE_TAG, CHAMPION, KIND_TAG, MODEL_INPUTS, MODEL_KINDS,
                              STAGE_MODEL)
from models.evaluate import PRIMARY_METRIC, better_or_equal, evaluate
from models.frames import conversion_labels, input_frame, read_training_set, split_by_customer, true_stages
from models.train import train_propensity, train_stage_classifier

DEFAULT_HOME = Path("var/mlflow")
EXPERIMENT = "journey-agents"
HISTORY_TAG = "journeys.champion_history"  # the versions that were champion, oldest first
HELD_BACK_ARTIFACT = "evaluation/held_back.parquet"
# The form of the drift profile a model carries (2: model inputs, the score and the signal mix); a
# version logged with another form is trained again rather than reused.
DRIFT_PROFILE_TAG, DRIFT_PROFILE_FORM = "journeys.drift_profile", "2"
LABEL = "label"


def tracking_uri(given: str | None = None) -> str:
    if given:
        return given
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    DEFAULT_HOME.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(DEFAULT_HOME / 'registry.db').resolve()}"


def client_for(uri: str):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment_id(client, uri: str, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    artifacts = None
    if uri.startswith("sqlite:///"):  # artifacts beside the database, not in the working directory
        artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return client.create_experiment(name, artifact_location=artifacts)


# -- train ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trained:
    run_id: str
    model_uri: str
    kind: str
    metrics: dict


def labels_for(kind: str, frame: pd.DataFrame, truth_path: str | None) -> pd.Series:
    if kind == STAGE_MODEL:
        if not truth_path:
            raise ValueError("the journey_stage model learns the real stage: give --truth, signals with ground truth "
                             "(the simulator writes it)")
        from pipelines.reports.summary import read_truth

        truth = read_truth(truth_path)
        if not truth:
            raise ValueError(f"{truth_path} has no ground truth (no simulator_truth fields)")
        return true_stages(frame, truth)
    return conversion_labels(frame)


def train_and_log(kind: str, training_set: str, truth: str | None = None, *, uri: str, experiment: str = EXPERIMENT,
                  held_back_share: float = 0.2, regularization: float = 1.0) -> Trained:
    """Fit on the customers outside the held-back share, evaluate on the rest, and log the model
    (pyfunc, with signature and input example), its metrics, the held-back set for promotion
    gates, and the training data's lineage."""
    import joblib
    import mlflow
    from mlflow.models import infer_signature

    from models.pyfunc import DRIFT_ARTIFACT, PIPELINE_ARTIFACT, StageModel

    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; one of {', '.join(MODEL_KINDS)}")
    frame = read_training_set(training_set)
    frame[LABEL] = labels_for(kind, frame, truth)
    train, held_back = split_by_customer(frame, held_back_share)
    fit = train_stage_classifier if kind == STAGE_MODEL else train_propensity
    pipeline = fit(input_frame(train), train[LABEL], regularization)
    metrics = evaluate(kind, pipeline, input_frame(held_back), held_back[LABEL])

    client = client_for(uri)
    python_model = StageModel(kind, pipeline)
    example = input_frame(train.head(5))
    with mlflow.start_run(experiment_id=_experiment_id(client, uri, experiment), run_name=f"{kind}-train") as run:
        mlflow.log_params({"kind": kind, "held_back_share": held_back_share, "regularization": regularization,
                           "train_rows": int(train[LABEL].notna().sum()), "inputs": ",".join(MODEL_INPUTS)})
        mlflow.log_metrics({name: value for name, value in metrics.items() if value == value})
        mlflow.set_tags(lineage(training_set, truth) | {KIND_TAG: kind, DRIFT_PROFILE_TAG: DRIFT_PROFILE_FORM})
        mlflow.log_input(mlflow.data.from_pandas(frame.drop(columns=[LABEL]), source=str(Path(training_set).resolve()),
                                                 name="training_set"), context="training")
        with tempfile.TemporaryDirectory() as scratch:
            held = input_frame(held_back).assign(customer_id=held_back["customer_id"].to_numpy(), **{LABEL: held_back[LABEL].to_numpy()})
            path = Path(scratch) / Path(HELD_BACK_ARTIFACT).name
            held.to_parquet(path, index=False)
            mlflow.log_artifact(str(path), artifact_path=str(Path(HELD_BACK_ARTIFACT).parent))
            pipeline_file = Path(scratch) / "pipeline.joblib"
            joblib.dump(pipeline, pipeline_file)
            profile_file = Path(scratch) / DRIFT_PROFILE_FILE
            profile_file.write_text(json.dumps(python_model.profile(input_frame(train), signal_mix_beside(training_set))))
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(Path(__file__).with_name("logged_model.py")),
                artifacts={PIPELINE_ARTIFACT: str(pipeline_file), DRIFT_ARTIFACT: str(profile_file)},
                model_config={"kind": kind},
                input_example=example, signature=infer_signature(example, python_model.predict(None, example)))
        mlflow.set_tag("journeys.model_uri", info.model_uri)
    return Trained(run.info.run_id, info.model_uri, kind, metrics)


def signal_mix_beside(training_set: str) -> list[dict] | None:
    """The signal mix journeys replay writes beside a training set (its signal_mix table), if it is there."""
    folder = Path(training_set).parent / "signal_mix"
    if not folder.is_dir() or not any(folder.glob("*.parquet")):
        return None
    return pq.read_table(str(folder)).to_pylist()


def lineage(training_set: str, truth: str | None) -> dict:
    tags = {"lineage.training_set": str(Path(training_set).resolve()),
            "lineage.training_set_sha256": files_digest(training_set), "lineage.code_version": code_version()}
    if truth:
        tags |= {"lineage.truth": str(Path(truth).resolve()), "lineage.truth_sha256": files_digest(truth)}
    return tags


def files_digest(path: str) -> str:
    """sha256 over a file, or over a directory's files in name order (names included)."""
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(root) if file != root else file.name).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def code_version() -> str:
    """The git commit of this code (with -dirty for uncommitted changes), else the package version."""
    here = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True,
                               text=True, check=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return "journey-agents " + version("journey-agents")
        except PackageNotFoundError:
            return "unknown"


def drift_profile_of(uri: str, name: str, version: str) -> dict | None:
    """The drift profile logged with a registered version (journeys.drift), or None for a version
    logged before profiles were."""
    import mlflow.pyfunc

    client_for(uri)
    return getattr(mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model(), "drift_profile", None)


# -- register, promote, roll back ----------------------------------------------------------------
def register(client, run_id: str, name: str) -> str:
    import mlflow

    run = client.get_run(run_id)
    model_uri = run.data.tags.get("journeys.model_uri")
    if not model_uri:
        raise ValueError(f"run {run_id} logged no journeys model")
    version = mlflow.register_model(model_uri, name, tags={KIND_TAG: run.data.tags[KIND_TAG],
                                                           "journeys.run_id": run_id})
    return str(version.version)


class PromotionRefused(ValueError):
    pass


@dataclass(frozen=True)
class Promotion:
    name: str
    version: str
    alias: str
    previous: str | None
    candidate_metrics: dict | None = None
    champion_metrics: dict | None = None
    forced: bool = False


def alias_version(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def promote(client, name: str, version: str, alias: str, force: bool = False) -> Promotion:
    """Point `alias` at `version`. Champion promotions are gated: both the candidate and the
    current champion are scored on the candidate's held-back customers, and a candidate whose
    primary metric is worse is refused unless forced."""
    if alias not in ALIASES:
        raise ValueError(f"alias must be one of {', '.join(ALIASES)}, not {alias!r}")
    candidate = _version(client, name, version)
    previous = alias_version(client, name, alias)
    checked = None
    if alias == CHAMPION and previous not in (None, version):
        checked = compare_on_held_back(client, name, candidate, previous)
        kind = candidate.tags[KIND_TAG]
        if not force and not better_or_equal(kind, checked[0], checked[1]):
            metric = PRIMARY_METRIC[kind]
            raise PromotionRefused(
                f"{name} version {version} has {metric} {checked[0][metric]:.4f} on its held-back customers, worse than "
                f"champion version {previous} with {checked[1][metric]:.4f}; not promoted (--force to promote anyway)")
    client.set_registered_model_alias(name, alias, version)
    if alias == CHAMPION and previous != version:
        history = champion_history(client, name)
        if previous is not None and (not history or history[-1] != previous):
            history.append(previous)  # set by hand, outside this workflow
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps((history + [version])[-50:]))
    return Promotion(name, version, alias, previous, *(checked or (None, None)), forced=force and checked is not None)


def rollback(client, name: str) -> Promotion:
    """Move `champion` back to the version that held it before the current one."""
    current = alias_version(client, name, CHAMPION)
    if current is None:
        raise ValueError(f"{name} has no champion to roll back")
    history = champion_history(client, name)
    while history and history[-1] == current:
        history.pop()
    if not history:
        raise ValueError(f"{name} has no earlier champion than version {current}")
    previous = history[-1]
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    return Promotion(name, previous, CHAMPION, current)


def start_canary(client, name: str, version: str, share: float | None = None) -> str | None:
    """Point the alias canary at `version`: a running job's tasks then score with it, in its
    champion's place, for a share of people: `share` (the version's journeys.canary_share tag), else
    the job's models.canary_share. The version the alias pointed at before, if any."""
    if share is not None and not 0 < share < 1:
        raise ValueError(f"a canary's share is in (0, 1), not {share}")
    _version(client, name, version)
    previous = alias_version(client, name, CANARY)
    if share is not None:
        client.set_model_version_tag(name, str(version), CANARY_SHARE_TAG, str(share))
    client.set_registered_model_alias(name, CANARY, str(version))
    return previous


def stop_canary(client, name: str, version: str | None = None) -> str | None:
    """Take the alias canary away (only where it still points at `version`, when given): the
    champion scores for everyone again. The version it pointed at, if it was taken away."""
    previous = alias_version(client, name, CANARY)
    if previous is None or (version is not None and previous != str(version)):
        return None
    client.delete_registered_model_alias(name, CANARY)
    return previous


def champion_history(client, name: str) -> list[str]:
    model = client.get_registered_model(name)
    return list(json.loads(model.tags.get(HISTORY_TAG, "[]")))


def _version(client, name: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version(name, str(version))
    except MlflowException:
        raise ValueError(f"{name} has no version {version}") from None
    if KIND_TAG not in found.tags:
        raise ValueError(f"{name} version {version} is not a journeys model (no journeys.kind tag)")
    return found


def compare_on_held_back(client, name: str, candidate, champion_version: str) -> tuple[dict, dict]:
    """(candidate metrics, champion metrics) on the candidate's held-back customers."""
    import mlflow

    kind = candidate.tags[KIND_TAG]
    with tempfile.TemporaryDirectory() as scratch:
        path = mlflow.artifacts.download_artifacts(run_id=candidate.tags["journeys.run_id"],
                                                   artifact_path=HELD_BACK_ARTIFACT, dst_path=scratch)
        held = pd.read_parquet(path)
    inputs, labels = input_frame(held), held[LABEL]
    results = []
    for version in (candidate.version, champion_version):
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model()
        results.append(evaluate(kind, model.pipeline, inputs, labels))
    return results[0], results[1]


def alias_trained_on(client, name: str, alias: str, training_set: str, kind: str) -> str | None:
    """The version `alias` points at when it is a `kind` model trained on exactly this training
    set (same sha256) and logged with everything a version now carries (its drift profile), else
    None: a rerun on the same data can reuse it instead of training again."""
    version = alias_version(client, name, alias)
    if version is None:
        return None
    found = client.get_model_version(name, version)
    if found.tags.get(KIND_TAG) != kind:
        return None
    run = client.get_run(found.tags["journeys.run_id"])
    if run.data.tags.get(DRIFT_PROFILE_TAG) != DRIFT_PROFILE_FORM:
        return None
    return version if run.data.tags.get("lineage.training_set_sha256") == files_digest(training_set) else None
