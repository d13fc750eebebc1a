"""Stage-model figures for make bench: a registry with both models trained on a replay of the
benchmark's signals, the inference cost per decision on the job's path (read-out linear models,
one call per model per decision point), and MLflow's pyfunc predict on one row and on 100 for scale."""
from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from journeys.ontology import packaged_ontology
from journeys.scoring import MODEL_KINDS, STAGE_MODEL
from journeys.settings import packaged_settings
from pipelines.reference import ReferenceRun


def prepare_registry(work: Path, signals: Path, profiles: Path) -> str:
    """A fresh sqlite registry with both models trained on this input, promoted to champion."""
    from models.registry import client_for, promote, register, train_and_log

    folder = work / "models"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    replayed = subprocess.run([str(Path(sys.executable).parent / "journeys"), "replay", "--input", str(signals),
                               "--output", str(folder / "replay"), "--emit", "training-set", "--profiles", str(profiles)],
                              capture_output=True, text=True)
    if replayed.returncode != 0:
        raise SystemExit(f"the replay for the training set failed:\n{replayed.stderr[-3000:]}")
    uri = f"sqlite:///{folder / 'registry.db'}"
    client = client_for(uri)
    for kind in MODEL_KINDS:
        trained = train_and_log(kind, str(folder / "replay" / "training_set"), str(signals), uri=uri)
        promote(client, kind, register(client, trained.run_id, kind), "champion")
    return uri


def measure_inference(lines: list[bytes], uri: str) -> dict:
    """Per decision point: the time both champions took to score it (one row, as the job does,
    before the agents propose); and pyfunc predict on 1 and 100 rows for comparison."""
    from pipelines.mlflow.serving import ModelServingSettings, RegistryModels

    per_decision_us: list[float] = []
    models = RegistryModels(ModelServingSettings(uri), observe=lambda rows, seconds: per_decision_us.extend(
        [seconds * 1e6 / rows] * rows)).start()
    started = time.perf_counter()
    run = ReferenceRun(packaged_ontology(), packaged_settings(), models=models).feed(lines).finish()
    core_seconds = time.perf_counter() - started
    # Each decision was scored once per champion: add the champions' shares together.
    champions = max(1, len(models.active().champions))
    costs = sorted(sum(per_decision_us[i:i + champions]) for i in range(0, len(per_decision_us), champions))
    pyfunc_one, pyfunc_batch = _pyfunc_predict(uri, run.decisions[:100])
    drift_seconds = _track_drift([m.drift_profile for m in models.active().champions if m.drift_profile],
                                 run.decision_log)
    return {"decisions": len(run.decisions), "decision_points": len(run.decision_log),
            "drift_us_per_decision_point": round(drift_seconds * 1e6 / max(1, len(run.decision_log)), 1),
            "core_with_drift_to_without_ratio": round(core_seconds / (core_seconds + drift_seconds), 3),
            "inference_p50_us_per_decision": round(_percentile(costs, 0.5), 1),
            "inference_p99_us_per_decision": round(_percentile(costs, 0.99), 1),
            "pyfunc_one_row_ms": round(pyfunc_one, 3), "pyfunc_100_rows_ms_per_row": round(pyfunc_batch, 4)}


def _track_drift(profiles: list, decisions: list[dict]) -> float:
    """Seconds the job's drift tracking takes over these decision points: counting each champion's
    inputs and score, and its figures every DriftMetrics.EVALUATE_EVERY decisions."""
    from journeys.drift import RunningDrift
    from pipelines.flink.metrics import DriftMetrics

    started = time.perf_counter()
    for profile in profiles:
        running = RunningDrift(profile)
        for decision in decisions:
            if running.add(decision) and running.seen.rows % DriftMetrics.EVALUATE_EVERY == 0:
                running.psi()
    return time.perf_counter() - started


def _pyfunc_predict(uri: str, decisions: list[dict]) -> tuple[float, float]:
    import mlflow.pyfunc

    from models.frames import input_frame
    from models.registry import client_for

    client_for(uri)
    model = mlflow.pyfunc.load_model(f"models:/{STAGE_MODEL}@champion")
    one, hundred = input_frame(decisions[:1]), input_frame((decisions * 100)[:100])
    singles, batches = [], []
    for _ in range(50):
        started = time.perf_counter()
        model.predict(one)
        singles.append((time.perf_counter() - started) * 1000)
    for _ in range(10):
        started = time.perf_counter()
        model.predict(hundred)
        batches.append((time.perf_counter() - started) * 1000 / 100)
    return statistics.median(singles), statistics.median(batches)


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(share * len(values)))]
