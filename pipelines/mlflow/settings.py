"""Which registered models a task of the journey job serves, and how it reads the registry."""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from journeys.drift import DEFAULT_THRESHOLD
from journeys.scoring import MODEL_KINDS
from journeys.timeutil import parse_duration


@dataclass(frozen=True)
class ModelServingSettings:
    registry_uri: str                               # MLflow tracking/registry URI: sqlite:///..., http://host:5000
    registered: tuple[tuple[str, str], ...] = tuple((kind, kind) for kind in MODEL_KINDS)  # (kind, registered name)
    poll_interval_s: float = 10.0
    shadow_challengers: bool = True
    request_timeout_s: float = 5.0
    startup_timeout_s: float = 60.0                 # how long open() waits for the first read
    python: str = sys.executable                    # the interpreter that runs the watcher (the driver's)
    drift_threshold: float = DEFAULT_THRESHOLD      # the PSI above which a feature's drift raises an alert
    canary_share: float = 0.1                       # a version under the alias canary scores for this share of people

    @classmethod
    def from_config(cls, registry_uri: str, section: dict) -> "ModelServingSettings":
        check_registry_uri(registry_uri)
        registered = section.get("registered", {kind: kind for kind in MODEL_KINDS})
        if not isinstance(registered, dict) or not registered:
            raise ValueError("models.registered must map model kinds to registered model names")
        unknown = [kind for kind in registered if kind not in MODEL_KINDS]
        if unknown:
            raise ValueError(f"models.registered: unknown model kind {unknown[0]!r}; the kinds are {', '.join(MODEL_KINDS)}")
        seconds = lambda key, default: parse_duration(str(section.get(key, default))) / 1000  # noqa: E731
        interval = seconds("poll_interval", "10s")
        if interval <= 0:
            raise ValueError("models.poll_interval must be positive")
        return cls(registry_uri, tuple((kind, str(name)) for kind, name in registered.items() if name), interval,
                   bool(section.get("shadow_challengers", True)), seconds("request_timeout", "5s"),
                   seconds("startup_timeout", "60s"), drift_threshold=drift_threshold_of(section),
                   canary_share=canary_share_of(section.get("canary_share", 0.1), "models.canary_share"))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ModelServingSettings":
        doc = json.loads(text)
        doc["registered"] = tuple(tuple(pair) for pair in doc["registered"])
        return cls(**doc)


def drift_threshold_of(section: dict) -> float:
    """models.drift_threshold of the job configuration."""
    threshold = section.get("drift_threshold", DEFAULT_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
        raise ValueError(f"models.drift_threshold is a PSI above 0 (0.25: a significant shift), not {threshold!r}")
    return float(threshold)


def canary_share_of(value, where: str) -> float:
    """A model canary's share of people: from the configuration, or a version's journeys.canary_share tag."""
    try:
        share = float(value)
    except (TypeError, ValueError):
        share = float("nan")
    if isinstance(value, bool) or not 0 < share < 1:
        raise ValueError(f"{where} is a share of people in (0, 1), not {value!r}")
    return share


def drift_holds_canary(section: dict) -> bool:
    """models.drift_holds_canary of the job configuration: whether a drift alert holds a canary back from a pass."""
    holds = section.get("drift_holds_canary", True)
    if not isinstance(holds, bool):
        raise ValueError(f"models.drift_holds_canary is true or false, not {holds!r}")
    return holds


def check_registry_uri(uri: str) -> None:
    """Refuse at start what no poll could ever read: a registry in plain files. MLflow 3.17's file
    store is in maintenance mode and raises a notice about that on first use, which would otherwise
    stand as the reason for a path that does not even exist."""
    scheme, separator, rest = uri.partition("://")
    if separator and scheme != "file":
        return  # sqlite:///..., http(s)://..., databricks and the like: polls say if they cannot be read
    path = Path(unquote(urlparse(uri).path) if separator else uri)
    if not path.exists():
        raise ValueError(f"--model-registry {uri}: no such directory")
    raise ValueError(f"--model-registry {uri}: a registry in plain files is not served (MLflow's file store is in "
                     f"maintenance mode); use sqlite:///PATH/mlflow.db or an http(s):// tracking server, and "
                     f"`mlflow migrate-filestore` to move this one")


def short_error(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text[:160]}" if text else type(error).__name__
