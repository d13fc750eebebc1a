"""Step 2: fit a model on a training frame.

Both models are a scaler and a one-hot encoder in front of a logistic regression: small, fast
to score (a decision waits for it), deterministic for the same data, and easy to explain.
"""
from __future__ import annotations

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from journeys.scoring import CATEGORICAL_INPUTS, NUMERIC_INPUTS


def _pipeline(regularization: float) -> Pipeline:
    columns = ColumnTransformer([
        ("numeric", StandardScaler(), list(NUMERIC_INPUTS)),
        ("categories", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL_INPUTS)),
    ])
    return Pipeline([("columns", columns), ("model", LogisticRegression(C=regularization, max_iter=2000))])


def _labelled(inputs: pd.DataFrame, labels: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
    known = labels.notna().to_numpy()
    if known.sum() == 0:
        raise ValueError("no labelled rows to train on")
    return inputs[known].reset_index(drop=True), labels[known].reset_index(drop=True)


def train_stage_classifier(inputs: pd.DataFrame, stages: pd.Series, regularization: float = 1.0) -> Pipeline:
    """Which stage a customer is really in, from the rules' stage and the features."""
    inputs, stages = _labelled(inputs, stages)
    if stages.nunique() < 2:
        raise ValueError("the stage labels have a single class; a classifier needs at least two")
    return _pipeline(regularization).fit(inputs, stages.astype(str))


def train_propensity(inputs: pd.DataFrame, converted: pd.Series, regularization: float = 1.0) -> Pipeline:
    """The probability of converting within the label horizon."""
    inputs, converted = _labelled(inputs, converted)
    if converted.nunique() < 2:
        raise ValueError("the conversion labels are all the same; a propensity model needs both outcomes")
    return _pipeline(regularization).fit(inputs, converted.astype(bool))
