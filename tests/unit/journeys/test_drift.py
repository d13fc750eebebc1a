"""Drift against the champion's training data: bins from the training data, the Population
Stability Index worked by hand, and a shifted simulation told apart from an unshifted one."""
from __future__ import annotations

import math

import pytest

from journeys.drift import OTHER, SCORE, Bins, DriftProfile, RunningDrift, drift_row, numeric_bins, psi
from journeys.scoring import PROPENSITY_MODEL, ActiveModels
from pipelines.tools.files import read_lines
from pipelines.tools.simulate import SimulationSpec, write_simulation
from journeys.ontology import packaged_ontology
from journeys.settings import packaged_settings
from pipelines.reference import ReferenceRun
from tests.harness import NOW, Fixed, TableScorer


def test_the_psi_of_two_distributions_is_worked_by_hand():
    expected, observed = [50, 50], [80, 20]

    by_hand = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)

    assert psi(expected, observed) == pytest.approx(by_hand)
    assert psi(expected, [5, 5]) == 0.0


def test_an_empty_bin_counts_as_rare_not_impossible():
    assert math.isfinite(psi([100, 0], [50, 50])) and psi([100, 0], [50, 50]) > 1


def test_numeric_bins_cut_the_training_data_at_its_deciles_and_categories_keep_an_other_bin():
    bins = numeric_bins(list(range(100)))

    assert bins.edges == (10, 20, 30, 40, 50, 60, 70, 80, 90)
    assert bins.index(-5) == 0 and bins.index(10) == 1 and bins.index(1e9) == 9
    assert Bins(categories=("email", "web")).index("fax") == 2 and Bins(categories=("web",)).labels() == ["web", OTHER]


def test_a_profile_survives_its_json_form():
    profile = DriftProfile.of_rows(PROPENSITY_MODEL, [{"cart_value": v, "stage": "intent", SCORE: v / 100}
                                                     for v in range(50)])

    assert DriftProfile.from_dict(profile.to_dict()) == profile


def score_by_cart(row: dict) -> tuple[str, float]:
    chance = min(0.95, 0.1 + row["cart_value"] / 600)
    return ("converts" if chance >= 0.5 else "does_not_convert"), chance


def decisions_of(tmp_path, seed: int, cart_value_scale: float = 1.0) -> list[dict]:
    signals = tmp_path / f"signals-{seed}-{cart_value_scale}.jsonl"
    write_simulation(SimulationSpec(customers=150, days=10, seed=seed, cart_value_scale=cart_value_scale), signals)
    model = Fixed(ActiveModels(champions=(TableScorer(PROPENSITY_MODEL, "1", score_by_cart),)))
    run = ReferenceRun(packaged_ontology(), packaged_settings(), now_ms=NOW, models=model)
    return run.feed(read_lines(signals)).finish().decision_log


def test_a_shifted_simulation_raises_the_drift_alert_and_an_unshifted_one_does_not(tmp_path):
    trained_on = DriftProfile.of_rows(PROPENSITY_MODEL, filter(None, (drift_row(d, PROPENSITY_MODEL)
                                                                      for d in decisions_of(tmp_path, seed=1))))
    unshifted, shifted = RunningDrift(trained_on), RunningDrift(trained_on)

    for decision in decisions_of(tmp_path, seed=2):
        unshifted.add(decision)
    for decision in decisions_of(tmp_path, seed=2, cart_value_scale=5):
        shifted.add(decision)

    assert unshifted.seen.rows > 200 and unshifted.drifted() == []
    assert {"cart_value", SCORE} <= set(shifted.drifted())
    assert shifted.psi()["stage"] < 0.1  # what did not move is not blamed


def test_an_anonymous_visitors_decision_is_not_compared_with_training_data_of_customers():
    scored = {"models": [{"kind": PROPENSITY_MODEL, "score": 0.4}], "stage": "discovery", "features": {}}

    assert drift_row(scored | {"customer_id": None}, PROPENSITY_MODEL) is None
    assert drift_row(scored | {"customer_id": "c-1"}, PROPENSITY_MODEL)[SCORE] == 0.4


def test_a_decision_a_model_canary_scored_is_not_compared_with_the_champions_training_data():
    scored = {"models": [{"kind": PROPENSITY_MODEL, "score": 0.4}], "stage": "discovery", "features": {},
              "customer_id": "c-1"}

    assert drift_row(scored | {"model_arm": "canary"}, PROPENSITY_MODEL) is None
    assert drift_row(scored | {"model_arm": "champion"}, PROPENSITY_MODEL)[SCORE] == 0.4


def a_signal_record(event_type: str, channel: str, anonymous: bool = False) -> dict:
    return {"kind": "signal", "anonymous": anonymous, "event_type": event_type, "channel": channel}


def test_the_signal_mix_of_customers_is_compared_with_the_one_beside_the_training_set():
    mix = [{"event_type": "page_view", "channel": "web", "signals": 80},
           {"event_type": "purchase", "channel": "store", "signals": 20}]
    profile = DriftProfile.of_rows(PROPENSITY_MODEL, [{"cart_value": 1.0, SCORE: 0.5}]).with_signal_mix(mix)
    like_training, all_in_store = RunningDrift(profile), RunningDrift(profile)

    for n in range(100):
        like_training.add_signal(a_signal_record("page_view" if n < 80 else "purchase", "web" if n < 80 else "store"))
        all_in_store.add_signal(a_signal_record("purchase", "store"))
        all_in_store.add_signal(a_signal_record("page_view", "web", anonymous=True))  # a visitor's: not counted

    assert like_training.psi() == {"event_type": 0.0, "channel": 0.0}  # nothing decided yet: no other figure
    assert set(all_in_store.drifted()) == {"event_type", "channel"}
    assert DriftProfile.from_dict(profile.to_dict()) == profile
