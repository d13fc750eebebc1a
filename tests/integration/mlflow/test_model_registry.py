"""The MLflow workflow against a real registry (sqlite in a temporary directory): train and log,
register, promote by alias with the metric gate, roll back, and the `journeys models` commands."""
from __future__ import annotations

import random

import orjson
import pandas as pd
import pytest

from journeys.scoring import CHALLENGER, CHAMPION, PROPENSITY_MODEL, STAGE_MODEL
from models.frames import held_back
from models.registry import (HELD_BACK_ARTIFACT, PromotionRefused, alias_version, client_for, files_digest, promote,
                             register, rollback, train_and_log)
from pipelines.cli.main import main as journeys
from tests.harness import decision_points_with_a_pattern

pytestmark = pytest.mark.mlflow
NAME = "conversion_propensity"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A training set with a pattern; the same set with the labels of the customers it trains on
    shuffled (a corrupted extract; the held-back customers keep theirs); and ground truth."""
    folder = tmp_path_factory.mktemp("training")
    rows, truth = decision_points_with_a_pattern()
    pd.DataFrame(rows).to_parquet(folder / "training.parquet")
    trained_on = [r for r in rows if not held_back(r["customer_id"], 0.2)]
    shuffled = [r["converted"] for r in trained_on]
    random.Random(3).shuffle(shuffled)
    corrupted = {id(r): c for r, c in zip(trained_on, shuffled)}
    pd.DataFrame([r | {"converted": corrupted.get(id(r), r["converted"])} for r in rows]).to_parquet(folder / "noise.parquet")
    (folder / "signals.jsonl").write_bytes(b"".join(
        orjson.dumps({"event_id": event_id, "simulator_truth": {"stage": stage}}) + b"\n" for event_id, stage in truth.items()))
    return {name: str(folder / f"{name}.{ext}") for name, ext in
            (("training", "parquet"), ("noise", "parquet"), ("signals", "jsonl"))}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'registry.db'}"
    return uri, client_for(uri)


@pytest.fixture(scope="module")
def versions(data, registry):
    """A good propensity model and a worse one (trained on corrupted labels), registered as 1 and 2."""
    uri, client = registry
    good = train_and_log(PROPENSITY_MODEL, data["training"], uri=uri)
    worse = train_and_log(PROPENSITY_MODEL, data["noise"], uri=uri)
    return {"good": (good, register(client, good.run_id, NAME)), "worse": (worse, register(client, worse.run_id, NAME))}


def test_a_trained_model_is_logged_with_its_metrics_signature_example_and_lineage(data, registry, versions):
    import mlflow

    uri, client = registry
    trained, version = versions["good"]
    run = client.get_run(trained.run_id)

    assert run.data.metrics["roc_auc"] == pytest.approx(trained.metrics["roc_auc"]) and trained.metrics["roc_auc"] > 0.9
    assert run.data.tags["lineage.training_set_sha256"] == files_digest(data["training"])
    assert run.data.tags["lineage.training_set"].endswith("training.parquet")
    assert run.data.tags["lineage.code_version"] not in ("", "unknown")
    assert [i.dataset.name for i in run.inputs.dataset_inputs] == ["training_set"]
    info = mlflow.models.get_model_info(f"models:/{NAME}/{version}")
    assert "cart_value" in info.signature.inputs.input_names()
    assert info.signature.outputs.input_names() == ["prediction", "score"]
    assert info.saved_input_example_info is not None
    held = pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=trained.run_id, artifact_path=HELD_BACK_ARTIFACT))
    assert held.customer_id.nunique() > 0 and set(held.label.dropna()) == {True, False}


def test_a_registered_version_loads_and_scores_like_the_model_that_was_trained(data, registry, versions):
    import mlflow

    _, version = versions["good"]
    loaded = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")
    rows = pd.read_parquet(data["training"]).head(4).to_dict("records")

    framed = loaded.predict(pd.DataFrame(rows).pipe(_inputs))

    assert framed.prediction.tolist() == [p for p, _ in loaded.unwrap_python_model().score_rows(rows)]
    assert framed.score.between(0, 1).all()


def _inputs(frame):
    from models.frames import input_frame

    return input_frame(frame)


def test_promotion_is_gated_on_the_held_back_metric_and_rollback_restores_the_champion(registry, versions):
    _, client = registry
    good, worse = versions["good"][1], versions["worse"][1]

    first = promote(client, NAME, good, CHAMPION)
    assert first.previous is None and alias_version(client, NAME, CHAMPION) == good

    with pytest.raises(PromotionRefused, match="worse than champion version"):
        promote(client, NAME, worse, CHAMPION)
    assert alias_version(client, NAME, CHAMPION) == good

    forced = promote(client, NAME, worse, CHAMPION, force=True)
    assert forced.forced and forced.previous == good
    assert forced.candidate_metrics["roc_auc"] < forced.champion_metrics["roc_auc"]
    assert alias_version(client, NAME, CHAMPION) == worse

    back = rollback(client, NAME)
    assert (back.version, back.previous) == (good, worse)
    assert alias_version(client, NAME, CHAMPION) == good
    with pytest.raises(ValueError, match="no earlier champion"):
        rollback(client, NAME)


def test_a_challenger_needs_no_gate_and_leaves_the_champion_alone(registry, versions):
    _, client = registry
    good, worse = versions["good"][1], versions["worse"][1]
    promote(client, NAME, good, CHAMPION)

    promote(client, NAME, worse, CHALLENGER)

    assert alias_version(client, NAME, CHALLENGER) == worse
    assert alias_version(client, NAME, CHAMPION) == good


def test_the_stage_model_learns_from_ground_truth_and_beats_the_rules_alone(data, registry):
    uri, _ = registry

    trained = train_and_log(STAGE_MODEL, data["training"], data["signals"], uri=uri)

    assert trained.metrics["accuracy"] > trained.metrics["rules_accuracy"] + 0.3


def test_the_stage_model_without_ground_truth_is_refused_with_the_fix(data, registry):
    with pytest.raises(ValueError, match="give --truth"):
        train_and_log(STAGE_MODEL, data["training"], uri=registry[0])


def test_the_commands_train_register_promote_refuse_and_roll_back(data, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    base = ["--tracking-uri", uri]

    assert journeys(["models", "train", "--kind", PROPENSITY_MODEL, "--training-set", data["training"],
                     "--register", "propensity", *base]) == 0
    assert "registered propensity version 1" in capsys.readouterr().out
    assert journeys(["models", "train", "--kind", PROPENSITY_MODEL, "--training-set", data["noise"],
                     "--register", "propensity", *base]) == 0
    assert journeys(["models", "promote", "propensity", "1", "--alias", "champion", *base]) == 0
    assert "propensity@champion -> version 1 (first)" in capsys.readouterr().out

    assert journeys(["models", "promote", "propensity", "2", "--alias", "champion", *base]) == 1
    assert "worse than champion version 1" in capsys.readouterr().out
    assert journeys(["models", "promote", "propensity", "2", "--alias", "champion", "--force", *base]) == 0
    assert "(forced)" in capsys.readouterr().out
    assert journeys(["models", "rollback", "propensity", *base]) == 0
    assert "propensity@champion -> version 1 (rolled back from 2)" in capsys.readouterr().out
    assert journeys(["models", "promote", "propensity", "9", "--alias", "champion", *base]) == 2
    assert "has no version 9" in capsys.readouterr().err


def test_models_train_on_a_replayed_simulation_and_the_stage_model_beats_the_rules(tmp_path, capsys):
    """The whole path a data engineer takes: simulate, replay to a training set, train, register."""
    import subprocess
    import sys
    from pathlib import Path

    journeys_command = str(Path(sys.executable).parent / "journeys")
    signals, profiles = tmp_path / "signals.jsonl", tmp_path / "profiles.parquet"
    assert journeys(["simulate", "--customers", "400", "--days", "30", "--out", str(signals),
                     "--profiles-out", str(profiles)]) == 0
    replayed = subprocess.run([journeys_command, "replay", "--input", str(signals), "--output", str(tmp_path / "replay"),
                               "--emit", "training-set", "--profiles", str(profiles)], capture_output=True, text=True)
    assert replayed.returncode == 0, replayed.stderr
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    capsys.readouterr()

    assert journeys(["models", "train", "--kind", STAGE_MODEL, "--training-set", str(tmp_path / "replay" / "training_set"),
                     "--truth", str(signals), "--register", STAGE_MODEL, "--tracking-uri", uri]) == 0

    client = client_for(uri)
    version = client.get_model_version(STAGE_MODEL, "1")
    metrics = client.get_run(version.tags["journeys.run_id"]).data.metrics
    assert metrics["rows"] > 100
    assert metrics["accuracy"] > metrics["rules_accuracy"]
    assert "registered journey_stage version 1" in capsys.readouterr().out
    _the_drift_profile_carries_the_signal_mix_of_the_replays_customers(uri, signals, tmp_path / "replay" / "signal_mix")


def _the_drift_profile_carries_the_signal_mix_of_the_replays_customers(uri: str, signals, signal_mix) -> None:
    from journeys.drift import DriftProfile
    from journeys.ontology import packaged_ontology
    from journeys.settings import packaged_settings
    from models.registry import drift_profile_of
    from pipelines.reference import ReferenceRun
    from pipelines.tools.files import read_lines

    profile = DriftProfile.from_dict(drift_profile_of(uri, STAGE_MODEL, "1"))
    reference = ReferenceRun(packaged_ontology(), packaged_settings()).feed(read_lines(signals)).finish()
    customers_signals = [r for r in reference.journey_records if r["kind"] == "signal" and not r["anonymous"]]
    by_channel = {channel: sum(r["channel"] == channel for r in customers_signals) for channel in profile.bins["channel"].categories}

    assert signal_mix.is_dir()
    assert sum(profile.counts["event_type"]) == len(customers_signals) > 1000
    assert profile.counts["channel"][:-1] == list(by_channel.values())


def test_train_can_promote_and_a_rerun_on_the_same_training_set_reuses_the_version(data, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    command = ["models", "train", "--kind", PROPENSITY_MODEL, "--training-set", data["training"], "--register", NAME,
               "--promote", "champion", "--reuse", "--tracking-uri", uri]

    assert journeys(command) == 0
    assert f"{NAME}@champion -> version 1 (first)" in capsys.readouterr().out
    assert journeys(command) == 0
    assert f"reusing {NAME}@champion version 1" in capsys.readouterr().out

    challenger = ["models", "train", "--kind", PROPENSITY_MODEL, "--training-set", data["noise"], "--register", NAME,
                  "--promote", "challenger", "--reuse", "--tracking-uri", uri]
    assert journeys(challenger) == 0
    assert f"{NAME}@challenger -> version 2" in capsys.readouterr().out
    assert alias_version(client_for(uri), NAME, CHAMPION) == "1"
