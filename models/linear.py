"""The fitted stage-model pipeline (scaler, one-hot encoder, logistic regression) read out as
plain arrays, so the job scores the few rows of one timer call without pandas or scikit-learn's
column machinery, which cost about a millisecond a call whatever the row count.

The arithmetic is scikit-learn's own: standardised numbers and one-hot categories (unknown
categories get no column, as with handle_unknown="ignore") times the coefficients, plus the
intercept; a logistic for two classes and a softmax for more. Tests hold it to predict_proba.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from journeys.scoring import CATEGORICAL_INPUTS, NUMERIC_INPUTS, PROPENSITY_MODEL


def answers(kind: str, classes, probabilities: np.ndarray) -> list[tuple[str, float]]:
    """(prediction, score) per row of class probabilities: the predicted stage and its
    probability, or converts / does_not_convert and the probability of converting."""
    classes = list(classes)
    if kind == PROPENSITY_MODEL:
        positive = probabilities[:, classes.index(True)] if True in classes else np.zeros(len(probabilities))
        return [("converts" if p >= 0.5 else "does_not_convert", float(p)) for p in positive]
    best = probabilities.argmax(axis=1)
    return [(str(classes[i]), float(probabilities[row, i])) for row, i in enumerate(best)]


@dataclass(frozen=True)
class LinearScorer:
    classes: tuple
    mean: np.ndarray
    scale: np.ndarray
    numeric_weights: np.ndarray        # (numeric inputs, outputs)
    category_weights: tuple            # per categorical input: {category: weight row (outputs,)}
    intercept: np.ndarray              # (outputs,)

    @classmethod
    def from_pipeline(cls, pipeline) -> "LinearScorer | None":
        """None when the pipeline is not the shape this reads (then the caller uses predict_proba)."""
        try:
            columns, model = pipeline.named_steps["columns"], pipeline.named_steps["model"]
            scaler, encoder = columns.named_transformers_["numeric"], columns.named_transformers_["categories"]
            coef = np.asarray(model.coef_, dtype=float).T  # (features, outputs)
        except (AttributeError, KeyError):
            return None
        if (list(columns.transformers_[0][2]) != list(NUMERIC_INPUTS)
                or list(columns.transformers_[1][2]) != list(CATEGORICAL_INPUTS)
                or getattr(encoder, "drop_idx_", None) is not None or getattr(encoder, "handle_unknown", "") != "ignore"):
            return None
        numeric = len(NUMERIC_INPUTS)
        weights, offset = [], numeric
        for categories in encoder.categories_:
            weights.append({str(c): coef[offset + i] for i, c in enumerate(categories)})
            offset += len(categories)
        if offset != coef.shape[0]:
            return None
        mean = scaler.mean_ if scaler.with_mean else np.zeros(numeric)
        scale = scaler.scale_ if scaler.with_std else np.ones(numeric)
        return cls(tuple(model.classes_), np.asarray(mean, float), np.asarray(scale, float), coef[:numeric],
                   tuple(weights), np.asarray(model.intercept_, dtype=float))

    def probabilities(self, rows: list[dict]) -> np.ndarray:
        """(rows, classes), as predict_proba gives them, for model input rows (journeys.scoring.model_input)."""
        numbers = np.array([[row[name] for name in NUMERIC_INPUTS] for row in rows], dtype=float)
        logits = ((numbers - self.mean) / self.scale) @ self.numeric_weights + self.intercept
        for index, row in enumerate(rows):
            for name, weights in zip(CATEGORICAL_INPUTS, self.category_weights):
                weight = weights.get(row[name])
                if weight is not None:
                    logits[index] += weight
        if len(self.classes) == 2:
            positive = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            return np.column_stack([1.0 - positive, positive])
        logits -= logits.max(axis=1, keepdims=True)
        exponentials = np.exp(logits)
        return exponentials / exponentials.sum(axis=1, keepdims=True)

    def answers(self, kind: str, rows: list[dict]) -> list[tuple[str, float]]:
        return answers(kind, self.classes, self.probabilities(rows))

    def to_dict(self) -> dict:
        """Plain JSON values: what a registry watcher process hands to the job's tasks."""
        return {"classes": [c.item() if hasattr(c, "item") else c for c in self.classes],
                "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "numeric_weights": self.numeric_weights.tolist(),
                "category_weights": [{c: w.tolist() for c, w in weights.items()} for weights in self.category_weights],
                "intercept": self.intercept.tolist()}

    @classmethod
    def from_dict(cls, doc: dict) -> "LinearScorer":
        return cls(tuple(doc["classes"]), np.asarray(doc["mean"], float), np.asarray(doc["scale"], float),
                   np.asarray(doc["numeric_weights"], float),
                   tuple({c: np.asarray(w, float) for c, w in weights.items()} for weights in doc["category_weights"]),
                   np.asarray(doc["intercept"], float))
