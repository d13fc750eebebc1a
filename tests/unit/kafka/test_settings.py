"""The restart strategy against Kafka transactions (pipelines.kafka.settings): an exactly-once
transaction must outlive a checkpoint interval plus every restart delay the strategy allows in a
row, or Kafka aborts it while the job is down and the decisions in it are lost."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from journeys.yamlconf import ConfigError
from pipelines.flink.env import DEFAULT_FLINK_CONF_DIR, load_flink_conf
from pipelines.kafka.settings import DEFAULT_TRANSACTION_TIMEOUT_MS, KafkaSettings, check_transaction_timeout, \
    restart_window_ms

EXPONENTIAL = {"execution.checkpointing.interval": "10s", "restart-strategy.type": "exponential-delay",
               "restart-strategy.exponential-delay.initial-backoff": "1s",
               "restart-strategy.exponential-delay.backoff-multiplier": "2.0",
               "restart-strategy.exponential-delay.max-backoff": "5s",
               "restart-strategy.exponential-delay.jitter-factor": "0",
               "restart-strategy.exponential-delay.attempts-before-reset-backoff": "4"}


def with_timeout(ms: int) -> KafkaSettings:
    return KafkaSettings({"transaction.timeout.ms": str(ms)})


def test_exponential_delays_in_a_row_add_up_to_the_restart_window_capped_at_the_longest_backoff():
    assert restart_window_ms(EXPONENTIAL) == 1000 + 2000 + 4000 + 5000


def test_jitter_is_counted_at_its_largest():
    jittered = EXPONENTIAL | {"restart-strategy.exponential-delay.jitter-factor": "0.1"}
    assert restart_window_ms(jittered) == 1100 + 2200 + 4400 + 5000


def test_fixed_delay_waits_its_delay_for_every_attempt():
    assert restart_window_ms({"restart-strategy.type": "fixed-delay", "restart-strategy.fixed-delay.attempts": "10",
                              "restart-strategy.fixed-delay.delay": "3s"}) == 30_000


def test_a_transaction_must_outlive_the_interval_plus_the_restart_window():
    check_transaction_timeout(with_timeout(10_000 + 12_000 + 1), EXPONENTIAL)
    with pytest.raises(ConfigError, match=r"transaction.timeout.ms is 22000 ms.*\(10000 ms\).*\(12000 ms\) = 22000 ms"):
        check_transaction_timeout(with_timeout(22_000), EXPONENTIAL)


def test_flinks_default_strategy_with_checkpointing_retries_without_limit_and_is_refused_for_exactly_once():
    # No restart strategy configured: with checkpointing on, Flink restarts with exponential delay
    # for ever, and a job down longer than the transaction timeout loses the transaction's decisions.
    with pytest.raises(ConfigError, match="retries without limit.*attempts-before-reset-backoff"):
        check_transaction_timeout(KafkaSettings(), {"execution.checkpointing.interval": "10s"})
    check_transaction_timeout(KafkaSettings(delivery_guarantee="at-least-once"), {"execution.checkpointing.interval": "10s"})


def test_the_shipped_configuration_lets_the_default_transaction_timeout_outlive_ten_restarts_in_a_row():
    shipped = load_flink_conf()
    window = restart_window_ms(shipped)
    assert window == 1100 + 2200 + 4400 + 8800 + 17_600 + 5 * 30_000  # ten attempts, up to 30 s apart
    check_transaction_timeout(KafkaSettings(), shipped)
    assert 10_000 + window < DEFAULT_TRANSACTION_TIMEOUT_MS


def flink_restart_options() -> set[str]:
    """The restart-strategy option keys Flink itself defines (RestartStrategyOptions in flink-dist)."""
    import pyflink

    [dist] = (Path(pyflink.__file__).parent / "lib").glob("flink-dist-*.jar")
    with zipfile.ZipFile(dist) as jar:
        compiled = jar.read("org/apache/flink/configuration/RestartStrategyOptions.class")
    return {key.decode() for key in re.findall(rb"restart-strategy(?:\.[a-z-]+)+", compiled)}


def test_every_restart_option_the_shipped_configuration_sets_is_one_flink_knows():
    # Flink ignores a key it does not know, so a misspelt option would silently fall back to its default.
    shipped = {key for key in load_flink_conf(DEFAULT_FLINK_CONF_DIR) if key.startswith("restart-strategy.")}
    assert shipped and shipped <= flink_restart_options(), shipped - flink_restart_options()
