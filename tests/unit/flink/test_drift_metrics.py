"""The task's drift metrics, without an engine: a gauge per model and feature, an alert when a
feature's PSI rises above the threshold (once, until it falls back), and a new comparison when
the champion changes."""
from __future__ import annotations

from journeys.drift import SCORE, DriftProfile
from journeys.outputs import SortedOutputs
from pipelines.flink.metrics import DriftMetrics

EVERY = DriftMetrics.EVALUATE_EVERY


class LabelledGroup:
    """Stands for a Flink metric group: it records each counter and gauge by its labels."""

    def __init__(self, labels=()):
        self.labels = labels
        self.values: dict = {}

    def add_group(self, name, value=None):
        child = LabelledGroup(self.labels + ((name, value),))
        child.values = self.values
        return child

    def counter(self, name):
        return _Metric(self.values, (name, self.labels))

    distribution = counter


class _Metric:
    def __init__(self, values, key):
        self.values, self.key = values, key

    def inc(self, by=1):
        self.values[self.key] = self.values.get(self.key, 0) + by

    def update(self, value):
        self.values[self.key] = value


class Champion:
    def __init__(self, version: str, profile: DriftProfile):
        self.name, self.version, self.drift_profile = "conversion_propensity", version, profile


class Source:
    def __init__(self, champion):
        self.champion = champion

    def active(self):
        return type("Active", (), {"champions": (self.champion,)})


TRAINED_ON_SMALL_CARTS = DriftProfile.of_rows("conversion_propensity", [{"cart_value": v % 100, SCORE: 0.3}
                                                                        for v in range(1000)])
LABELS = (("model", "conversion_propensity"), ("feature", "cart_value"))


def decided(cart_value: float, count: int = EVERY) -> SortedOutputs:
    outputs = SortedOutputs()
    outputs.decision_log = [{"customer_id": "c-1", "models": [{"kind": "conversion_propensity", "score": 0.3}],
                             "features": {"cart_value": cart_value}}] * count
    return outputs


def test_each_feature_has_its_psi_as_a_gauge_and_an_alert_only_as_it_rises_above_the_threshold():
    group = LabelledGroup()
    drift = DriftMetrics(group, Source(Champion("1", TRAINED_ON_SMALL_CARTS)), threshold=0.25)

    drift.update(decided(5_000.0))
    drift.update(decided(5_000.0))

    assert group.values[("drift_psi_milli", LABELS)] > 250
    assert group.values[("drift_alerts", LABELS)] == 1  # still above at the second figure: no new alert


def test_a_new_champion_version_starts_a_new_comparison():
    group = LabelledGroup()
    source = Source(Champion("1", TRAINED_ON_SMALL_CARTS))
    drift = DriftMetrics(group, source, threshold=0.25)
    drift.update(decided(5_000.0))

    source.champion = Champion("2", DriftProfile.of_rows("conversion_propensity", [{"cart_value": 5_000.0, SCORE: 0.3}]))
    drift.update(decided(5_000.0))

    assert group.values[("drift_psi_milli", LABELS)] == 0
    assert group.values[("drift_alerts", LABELS)] == 1


def test_a_champion_logged_without_a_profile_is_not_compared():
    group = LabelledGroup()
    DriftMetrics(group, Source(Champion("1", None)), threshold=0.25).update(decided(5_000.0))

    assert group.values == {}
