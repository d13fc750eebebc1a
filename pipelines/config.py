"""Configuration files: the job configuration, the ontology and the decision policy, read from
disk with ${ENV} references filled from the process environment. The core (journeys) parses
their text and knows its packaged defaults; reading files is done here, at the edge."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from journeys.ontology import DEFAULT_ONTOLOGY, Ontology, packaged_ontology, parse_ontology
from journeys.policy import Policy, loads_policy, packaged_policy_text
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


def _beside_settings(settings: JourneySettings, ref: str) -> Path:
    path = Path(ref)
    if not path.is_absolute() and settings.source and Path(settings.source).parent.exists():
        candidate = Path(settings.source).parent / path
        if candidate.exists():
            return candidate
    return path
