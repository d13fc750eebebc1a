"""Kafka client settings of the journey job: pass-through client properties (security, SASL, SSL),
delivery guarantee, transactions, and bounded reading of the signals topic."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from journeys.yamlconf import ConfigError, expand_env

class KafkaUnreachable(RuntimeError):
    """A broker or topic the job needs is not there, or a client cannot get through; the message names it."""


DELIVERY_GUARANTEES = ("exactly-once", "at-least-once")
STARTS = ("earliest", "latest", "committed")
# The broker's default transaction.max.timeout.ms: a producer asking for more is refused.
DEFAULT_TRANSACTION_TIMEOUT_MS = 15 * 60 * 1000

_FLINK_UNITS = {
    "ms": 1, "milli": 1, "millis": 1, "millisecond": 1, "milliseconds": 1,
    "s": 1000, "sec": 1000, "secs": 1000, "second": 1000, "seconds": 1000,
    "min": 60_000, "m": 60_000, "minute": 60_000, "minutes": 60_000,
    "h": 3_600_000, "hour": 3_600_000, "hours": 3_600_000,
    "d": 86_400_000, "day": 86_400_000, "days": 86_400_000,
}


@dataclass(frozen=True)
class KafkaSettings:
    properties: dict[str, str] = field(default_factory=dict)
    delivery_guarantee: str = "exactly-once"
    transactional_id_prefix: str = "journey-job"
    group_id: str = "journey-job"
    start: str = "earliest"
    stop_offsets: dict[int, int] | None = None  # partition -> offset to stop before; None: read on forever

    def __post_init__(self):
        if self.delivery_guarantee not in DELIVERY_GUARANTEES:
            raise ConfigError(f"delivery guarantee {self.delivery_guarantee!r}; use {' or '.join(DELIVERY_GUARANTEES)}")
        if self.start not in STARTS:
            raise ConfigError(f"start {self.start!r}; use one of {', '.join(STARTS)}")

    @property
    def transaction_timeout_ms(self) -> int:
        return int(self.properties.get("transaction.timeout.ms", DEFAULT_TRANSACTION_TIMEOUT_MS))

    def client_properties(self) -> dict[str, str]:
        """Properties for every Kafka client of the job (consumers and producers)."""
        return {key: value for key, value in self.properties.items() if key != "transaction.timeout.ms"}


def load_properties_file(path: str | Path) -> dict[str, str]:
    """A Java-style client.properties file (key=value, # comments); values may use ${ENV}."""
    properties = {}
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"cannot read Kafka properties file {path}: {error.strerror}") from None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        match = re.fullmatch(r"([^=:\s]+)\s*[=:]\s*(.*)", line)
        if not match:
            raise ConfigError(f"{path} line {number}: expected key=value, got {line!r}")
        key, value = match.groups()
        try:
            properties[key] = expand_env(value, os.environ)
        except ConfigError as error:
            raise ConfigError(f"{path} line {number}: {error}") from None
    return properties


def parse_property(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise ConfigError(f"--kafka-property {text!r}: expected key=value")
    return key.strip(), value


def parse_stop_offsets(text: str) -> dict[int, int]:
    """'0:16500,1:16000' -> {0: 16500, 1: 16000}: read each partition up to (not including) that offset."""
    offsets = {}
    for part in text.split(","):
        partition, separator, offset = part.partition(":")
        if not separator or not partition.strip().isdigit() or not offset.strip().isdigit():
            raise ConfigError(f"stop offsets {text!r}: expected partition:offset[,partition:offset...]")
        offsets[int(partition)] = int(offset)
    return offsets


def flink_duration_ms(value: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([a-z]*)\s*", str(value).lower())
    if not match or (match.group(2) and match.group(2) not in _FLINK_UNITS):
        raise ConfigError(f"not a Flink duration: {value!r}")
    return int(match.group(1)) * _FLINK_UNITS.get(match.group(2) or "ms")


# Flink's own defaults for the exponential-delay strategy (RestartStrategyOptions, Flink 2.3), which
# is also the strategy Flink picks when checkpointing is on and none is configured. Its default
# number of attempts, Integer.MAX_VALUE, means "without limit".
_UNLIMITED_ATTEMPTS = 2**31 - 1
_EXPONENTIAL_DELAY_DEFAULTS = {"initial-backoff": "1 s", "max-backoff": "1 min", "backoff-multiplier": "1.5",
                               "jitter-factor": "0.1", "attempts-before-reset-backoff": str(_UNLIMITED_ATTEMPTS)}


class UnboundedRestarts(ConfigError):
    """The restart strategy retries a failing job without limit, so no transaction outlives it."""


def restart_window_ms(flink_conf: dict[str, str]) -> int:
    """The longest a job may stay down through failures in a row before the restart strategy gives
    up: the sum of every delay it allows (with jitter at its largest). Raises UnboundedRestarts for
    a strategy that never gives up."""
    checkpointing = flink_duration_ms(flink_conf.get("execution.checkpointing.interval", "0")) > 0
    strategy = flink_conf.get("restart-strategy.type", "exponential-delay" if checkpointing else "none").lower()
    if strategy in ("fixed-delay", "fixeddelay"):
        attempts = int(flink_conf.get("restart-strategy.fixed-delay.attempts", "1"))
        return attempts * flink_duration_ms(flink_conf.get("restart-strategy.fixed-delay.delay", "1 s"))
    if strategy in ("exponential-delay", "exponentialdelay"):
        return _exponential_delay_window_ms(flink_conf)
    if strategy in ("failure-rate", "failurerate"):
        return flink_duration_ms(flink_conf.get("restart-strategy.failure-rate.failure-rate-interval", "1 min"))
    return 0


def _exponential_delay_window_ms(flink_conf: dict[str, str]) -> int:
    """Failures within the reset threshold of the last restart count in a row; each waits
    initial * multiplier^k, plus jitter, at most max-backoff (ExponentialDelayRestartBackoffTimeStrategy)."""
    def option(name: str) -> str:
        return flink_conf.get(f"restart-strategy.exponential-delay.{name}", _EXPONENTIAL_DELAY_DEFAULTS[name])

    attempts = int(option("attempts-before-reset-backoff"))
    if attempts >= _UNLIMITED_ATTEMPTS:
        raise UnboundedRestarts(
            "the exponential-delay restart strategy retries without limit; set "
            "restart-strategy.exponential-delay.attempts-before-reset-backoff")
    initial, longest = flink_duration_ms(option("initial-backoff")), flink_duration_ms(option("max-backoff"))
    multiplier, jitter = float(option("backoff-multiplier")), float(option("jitter-factor"))
    window, attempt = 0, 0
    while attempt < attempts:
        delay = max(initial, min(initial * multiplier ** attempt * (1 + jitter), longest))
        if delay >= longest:  # every later attempt waits the longest delay too
            return int(window + (attempts - attempt) * longest)
        window, attempt = window + delay, attempt + 1
    return int(window)


def check_transaction_timeout(settings: KafkaSettings, flink_conf: dict[str, str]) -> None:
    """A transaction must outlive a checkpoint interval plus a restart, or Kafka aborts it before
    the restored job can commit it, and the decisions in it are lost."""
    if settings.delivery_guarantee != "exactly-once":
        return
    interval = flink_duration_ms(flink_conf.get("execution.checkpointing.interval", "0"))
    if interval <= 0:
        raise ConfigError("exactly-once Kafka output needs checkpointing: set execution.checkpointing.interval")
    try:
        needed = interval + restart_window_ms(flink_conf)
    except UnboundedRestarts as unbounded:
        raise ConfigError(f"exactly-once Kafka output needs a restart strategy that gives up, or a transaction "
                          f"may time out while the job is down and the decisions in it are lost: {unbounded}") from None
    if settings.transaction_timeout_ms <= needed:
        raise ConfigError(
            f"transaction.timeout.ms is {settings.transaction_timeout_ms} ms, but a transaction must outlive the "
            f"checkpoint interval ({interval} ms) plus the restart window of the restart strategy "
            f"({needed - interval} ms) = {needed} ms; raise it with --kafka-property transaction.timeout.ms=... "
            f"(and the broker's transaction.max.timeout.ms if needed) or shorten the interval")
