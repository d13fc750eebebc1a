"""Configuration files: the job configuration, the ontology, the decision policy and its gates, read from
disk with ${ENV} references filled from the process environment. The core (journeys) parses
their text and knows its packaged defaults; reading files is done here, at the edge."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from journeys.gates import Gates, loads_gates, packaged_gates
from journeys.ontology import DEFAULT_ONTOLOGY, Ontology, packaged_ontology, parse_ontology
from journeys.policy import Policy, loads_policy, packaged_policy_text
from journeys.policy_updates import PolicyInForce, update_record
from journeys.settings import JourneySettings, packaged_settings, parse_settings
from journeys.yamlconf import ConfigError, loads_yaml


def read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None


def read_yaml(path: str | Path) -> Any:
    return loads_yaml(read_text(path), str(path), os.environ)


def read_settings(path: str | Path | None = None) -> JourneySettings:
    """The job configuration in a file; without one, the packaged journeys/conf/journeys.yaml."""
    if path is None:
        return packaged_settings(os.environ)
    return parse_settings(read_yaml(path), str(path))


def read_ontology(path: str | Path | None = None) -> Ontology:
    """The ontology in a file; without one, the packaged retail ontology."""
    return packaged_ontology() if path is None else parse_ontology(read_yaml(path))


def read_policy(path: str | Path) -> Policy:
    return loads_policy(read_text(path), str(path), os.environ)


def settings_ontology(settings: JourneySettings) -> Ontology:
    """The ontology the settings name: the packaged one by its name, or a file relative to the settings file."""
    ref = settings.ontology_ref
    return packaged_ontology() if ref == DEFAULT_ONTOLOGY else read_ontology(_beside_settings(settings, ref))


def settings_policy_text(settings: JourneySettings) -> tuple[str, str]:
    """(text, source) of the decision policy the settings name: a packaged one by name, or a file
    relative to the settings file."""
    ref = settings.policy_ref
    if "/" not in ref and not ref.endswith((".yaml", ".yml")):
        return packaged_policy_text(ref)
    path = _beside_settings(settings, ref)
    try:
        return path.read_text(), str(path)
    except OSError as error:
        raise ConfigError(f"{settings.source}: decisions.policy {ref}: {error.strerror}") from None


def settings_policy(settings: JourneySettings) -> Policy:
    return loads_policy(*settings_policy_text(settings), os.environ)


def start_policy_text(policy_file: str | None, settings: JourneySettings) -> tuple[str, str]:
    """(text, source) of the policy in force at start: a given file, or the settings' policy;
    parsed here, so that a bad file stops the driver with its line, not a task on a cluster."""
    if policy_file:
        if not Path(policy_file).is_file():
            raise ConfigError(f"--policy {policy_file}: no such file")
        text, source = Path(policy_file).read_text(), policy_file
    else:
        text, source = settings_policy_text(settings)
    loads_policy(text, source, os.environ)
    return text, source


def start_canary(canary_file: str | None, share: float | None, policy: tuple[str, str]) -> tuple[str, str, float] | None:
    """(text, source, share) of a canary policy in force from the start beside `policy` (its text,
    source); checked here as the journey operators will apply it, so that a bad one stops the driver."""
    if canary_file is None:
        if share is not None:
            raise ConfigError("--canary-share is the share of a canary: give --canary-policy FILE too")
        return None
    if not Path(canary_file).is_file():
        raise ConfigError(f"--canary-policy {canary_file}: no such file")
    canary = (Path(canary_file).read_text(), canary_file, 0.1 if share is None else share)
    in_force = PolicyInForce(loads_policy(*policy, os.environ), os.environ)
    result = in_force.apply_record(update_record(*canary))
    if not result.accepted or in_force.canary is None:
        raise ConfigError(f"--canary-policy {canary_file}: {result.reason}")
    return canary


def start_gates(gates_file: str | None, settings: JourneySettings) -> Gates | None:
    """The rollout gates a job judges its canaries by: a given file, else the settings'
    decisions.gates (a packaged name, or a file beside the settings); None when that is "none"."""
    ref = gates_file or settings.gates_ref
    if ref == NO_GATES:
        return None
    if gates_file is None and "/" not in ref and not ref.endswith((".yaml", ".yml")):
        return packaged_gates(ref)
    path = Path(ref) if gates_file else _beside_settings(settings, ref)
    if not path.is_file():
        raise ConfigError(f"{'--gates' if gates_file else settings.source + ': decisions.gates'} {ref}: no such file")
    return loads_gates(path.read_text(), str(path), os.environ)


NO_GATES = "none"


def _beside_settings(settings: JourneySettings, ref: str) -> Path:
    path = Path(ref)
    if not path.is_absolute() and settings.source and Path(settings.source).parent.exists():
        candidate = Path(settings.source).parent / path
        if candidate.exists():
            return candidate
    return path
