"""The job configuration (--conf), parsed once by the driver and handed to every operator.
Reading a configuration file is pipelines.config's part; the packaged defaults are here."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Mapping

from journeys.contract import IntakeLimits
from journeys.privacy import PrivacySettings
from journeys.timeutil import parse_duration
from journeys.yamlconf import NO_ENVIRONMENT, ConfigError, loads_yaml, where

_SECTIONS = {"ontology", "event_time", "sessions", "dedupe", "journey", "intake", "privacy", "state", "features", "models", "decisions"}


@dataclass(frozen=True)
class JourneySettings:
    max_out_of_orderness_ms: int
    idle_source_timeout_ms: int
    session_gap_ms: int
    dedupe_horizon_ms: int
    dedupe_max_ids: int
    touchpoints: int
    state_ttl_ms: int
    intake: IntakeLimits
    privacy: PrivacySettings
    ontology_ref: str
    source: str
    features: dict  # tuning of feature-store lookups and pushes (pipelines.feast.store)
    models: dict  # which registered models the job loads, and how (pipelines.mlflow.serving)
    stage_override_confidence: float  # the stage model overrides the rules' stage from this probability
    policy_ref: str = "retail"        # the decision policy at start: a packaged name or a file
    gates_ref: str = "retail"         # the rollout gates a canary is judged by: a packaged name, a file, or none
    latency_budget_ms: float = 50.0   # per decision; past it, decisions skip the models (fast path)
    outcome_window_ms: int = 7 * 24 * 3_600_000  # how long a decision waits for its outcomes
    state_cache_keys: int = 20_000    # per journey task: the keys whose last written state it keeps in memory


PACKAGED_SETTINGS = "journeys/conf/journeys.yaml"


def packaged_settings(env: Mapping[str, str] = NO_ENVIRONMENT) -> JourneySettings:
    """The packaged job configuration; env fills its ${...} references (without it, their defaults)."""
    text = resources.files("journeys.conf").joinpath("journeys.yaml").read_text()
    return parse_settings(loads_yaml(text, PACKAGED_SETTINGS, env), PACKAGED_SETTINGS)


def parse_settings(doc, source: str = "<config>") -> JourneySettings:
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: the job configuration must be a mapping")
    for key in doc:
        if key not in _SECTIONS:
            raise ConfigError(f"{where(doc, key)}: unknown section {key!r}; expected {', '.join(sorted(_SECTIONS))}")

    def section(name):
        value = doc.get(name) or {}
        if not isinstance(value, dict):
            raise ConfigError(f"{where(doc, name)}: {name} must be a mapping")
        return value

    def duration(name, key, default):
        part = section(name)
        try:
            return parse_duration(part.get(key, default))
        except ValueError as error:
            raise ConfigError(f"{where(part, key)}: {name}.{key}: {error}") from None

    privacy = section("privacy")
    try:
        privacy_settings = PrivacySettings(
            hash_key=str(privacy.get("hash_key", "")),
            attributes={str(k): str(v) for k, v in (privacy.get("attributes") or {}).items()},
            scan_values=tuple(privacy.get("scan_values", ("email", "card", "phone"))),
            scan_exempt=frozenset(privacy.get("scan_exempt") or ()),
            pseudonymize_ids=_flag(privacy, "pseudonymize_ids", True),
        )
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from None
    intake = IntakeLimits.from_config(section("intake"))  # its errors name the file, line and key
    settings = JourneySettings(
        max_out_of_orderness_ms=duration("event_time", "max_out_of_orderness", "2m"),
        idle_source_timeout_ms=duration("event_time", "idle_source_timeout", "1m"),
        session_gap_ms=duration("sessions", "gap", "30m"),
        dedupe_horizon_ms=duration("dedupe", "horizon", "1h"),
        dedupe_max_ids=_count(section("dedupe"), "max_ids", 64, "dedupe"),
        touchpoints=_count(section("journey"), "touchpoints", 10, "journey"),
        state_ttl_ms=duration("state", "ttl", "400d"),
        intake=intake,
        privacy=privacy_settings,
        ontology_ref=str(doc.get("ontology", "retail")),
        source=source,
        features=dict(section("features")),
        models=dict(section("models")),
        stage_override_confidence=_probability(section("models"), "stage_override_confidence", 0.8),
        policy_ref=str(section("decisions").get("policy", "retail")),
        gates_ref=str(section("decisions").get("gates", "retail")),
        latency_budget_ms=duration("decisions", "latency_budget", "50ms") / 1.0,
        outcome_window_ms=duration("decisions", "outcome_window", "7d"),
        state_cache_keys=_count(section("state"), "cache_keys", 20_000, "state"),
    )
    if settings.session_gap_ms <= 0:
        raise ConfigError(f"{where(section('sessions'), 'gap')}: sessions.gap must be positive")
    return settings


def _flag(part: dict, key: str, default: bool) -> bool:
    value = part.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where(part, key)}: privacy.{key} must be true or false, not {value!r}")
    return value


def _count(part: dict, key: str, default: int, section_name: str) -> int:
    value = part.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where(part, key)}: {section_name}.{key} must be a whole number, 0 or more, not {value!r}")
    return value


def _probability(part: dict, key: str, default: float) -> float:
    try:
        value = float(part.get(key, default))
    except (TypeError, ValueError):
        value = -1.0
    if not 0.5 <= value <= 1.0:
        raise ConfigError(f"{where(part, key)}: models.{key} must be a probability between 0.5 and 1, not {part.get(key)!r}")
    return value
