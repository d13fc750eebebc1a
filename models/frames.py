"""Step 1: training frames from a training set (journeys replay --emit training-set).

The input columns come from journeys.scoring, the definition the job uses when it scores a
decision, so training and serving see the same row. Customers are split into train and held-back
evaluation sets by a hash of their id: the split is the same for every run on any data, so two
model versions can be compared on the same customers, and no customer's rows leak across it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from journeys.scoring import CATEGORICAL_INPUTS, MODEL_INPUTS, NUMERIC_INPUTS, UNKNOWN, model_input


def read_training_set(path: str | Path) -> pd.DataFrame:
    """A parquet file or a directory of parquet parts, in a stable row order."""
    frame = pq.read_table(str(path)).to_pandas()
    if frame.empty:
        raise ValueError(f"{path}: the training set has no rows")
    missing = [name for name in ("customer_id", "stage", "trigger") if name not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a training set, it lacks {', '.join(missing)}")
    return frame.sort_values(["customer_id", "event_timestamp", "decision_id"], kind="stable").reset_index(drop=True)


def input_frame(rows: pd.DataFrame | list[dict]) -> pd.DataFrame:
    """The models' input columns, filled as in serving."""
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows
    frame = pd.DataFrame([model_input(_no_nan(record)) for record in records], columns=list(MODEL_INPUTS))
    return frame.astype({name: "float64" for name in NUMERIC_INPUTS} | {name: "object" for name in CATEGORICAL_INPUTS})


def _no_nan(record: dict) -> dict:
    return {key: None if isinstance(value, float) and value != value else value for key, value in record.items()}


def held_back(customer_id: str, share: float) -> bool:
    digest = hashlib.blake2b(customer_id.encode(), digest_size=8, person=b"eval-split").digest()
    return int.from_bytes(digest, "big") / 2 ** 64 < share


def split_by_customer(frame: pd.DataFrame, share: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, held back) with every customer wholly on one side."""
    if not 0 < share < 1:
        raise ValueError(f"the held-back share must be between 0 and 1, not {share}")
    mask = frame["customer_id"].map(lambda customer: held_back(customer, share))
    return frame[~mask].reset_index(drop=True), frame[mask].reset_index(drop=True)


def true_stages(frame: pd.DataFrame, truth: dict[str, str]) -> pd.Series:
    """The real stage at each decision point: the ground truth of the last signal seen
    (pipelines.reports.summary.read_truth gives the simulator's); None where there is none."""
    if "last_event_id" not in frame.columns:
        raise ValueError("the training set has no last_event_id column; replay it again with this version")
    return frame["last_event_id"].map(lambda event_id: truth.get(event_id) if isinstance(event_id, str) else None)


def conversion_labels(frame: pd.DataFrame) -> pd.Series:
    """Converted within the horizon, where the horizon lies wholly inside the data; None elsewhere
    (a negative there only means the data ended)."""
    complete = frame["label_complete"].astype(bool)
    return frame["converted"].astype(bool).where(complete, None)


__all__ = ["read_training_set", "input_frame", "split_by_customer", "held_back", "true_stages", "conversion_labels",
           "UNKNOWN"]
