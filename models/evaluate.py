"""Step 3: metrics on the held-back customers. Higher is better for each model's primary metric,
which is what a promotion to champion is gated on."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, log_loss, roc_auc_score

from journeys.scoring import PROPENSITY_MODEL, STAGE_MODEL

PRIMARY_METRIC = {STAGE_MODEL: "accuracy", PROPENSITY_MODEL: "roc_auc"}


def evaluate_stage_classifier(model, inputs: pd.DataFrame, stages: pd.Series) -> dict:
    """accuracy and macro F1 of the model, and, to beat, the accuracy of the rules' stage alone."""
    known = stages.notna().to_numpy()
    inputs, stages = inputs[known], stages[known].astype(str)
    if stages.empty:
        raise ValueError("no labelled rows to evaluate on")
    predicted = model.predict(inputs)
    return {"accuracy": float(accuracy_score(stages, predicted)),
            "macro_f1": float(f1_score(stages, predicted, average="macro", zero_division=0)),
            "rules_accuracy": float(accuracy_score(stages, inputs["stage"].astype(str))),
            "rows": int(len(stages))}


def evaluate_propensity(model, inputs: pd.DataFrame, converted: pd.Series) -> dict:
    known = converted.notna().to_numpy()
    inputs, converted = inputs[known], converted[known].astype(bool).to_numpy()
    if len(converted) == 0:
        raise ValueError("no labelled rows to evaluate on")
    probability = positive_probability(model, inputs)
    both = len(np.unique(converted)) == 2
    return {"roc_auc": float(roc_auc_score(converted, probability)) if both else float("nan"),
            "log_loss": float(log_loss(converted, probability, labels=[False, True])),
            "brier": float(brier_score_loss(converted, probability)),
            "base_rate": float(converted.mean()),
            "rows": int(len(converted))}


def positive_probability(model, inputs: pd.DataFrame) -> np.ndarray:
    classes = list(model.classes_)
    return model.predict_proba(inputs)[:, classes.index(True)] if True in classes else np.zeros(len(inputs))


def evaluate(kind: str, model, inputs: pd.DataFrame, labels: pd.Series) -> dict:
    return (evaluate_stage_classifier if kind == STAGE_MODEL else evaluate_propensity)(model, inputs, labels)


def better_or_equal(kind: str, candidate: dict, champion: dict) -> bool:
    metric = PRIMARY_METRIC[kind]
    return not candidate[metric] < champion[metric]  # NaN never blocks: there was nothing to compare
