"""The stage models' steps (features, train, evaluate) and their pyfunc wrapper, without a registry."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from journeys.scoring import PROPENSITY_MODEL, STAGE_MODEL, UNKNOWN, model_input
from models.evaluate import better_or_equal, evaluate_propensity, evaluate_stage_classifier
from models.frames import conversion_labels, held_back, input_frame, split_by_customer, true_stages
from models.pyfunc import StageModel
from models.train import train_propensity, train_stage_classifier
from tests.harness import BEGINNING, a_decision_point, decision_points_with_a_pattern


@pytest.fixture(scope="module")
def pattern():
    rows, truth = decision_points_with_a_pattern()
    frame = pd.DataFrame(rows)
    frame["true_stage"] = true_stages(frame, truth)
    return split_by_customer(frame)


# -- features ------------------------------------------------------------------------------------
def test_a_decision_and_its_training_row_give_the_model_the_same_input():
    decision = {"stage": "intent", "trigger": "stage_entered", "decided_at": BEGINNING,
                "features": {"cart_value": 42.5, "events_last_hour": 2, "events_last_day": 5, "last_channel": "app",
                             "support_contacts_7d": 0, "segment": "vip", "lifetime_value": 310.0, "tenure_days": 90,
                             "preferred_channel": None}}
    row = a_decision_point(stage="intent", cart_value=42.5, events_last_hour=2, events_last_day=5, last_channel="app",
                           segment="vip", lifetime_value=310.0, tenure_days=90)

    assert model_input(decision) == model_input(row)
    assert model_input(row)["preferred_channel"] == UNKNOWN


def test_missing_inputs_are_filled_with_zero_and_unknown():
    filled = model_input({"stage": "discovery", "features": {}})

    assert filled["cart_value"] == 0.0 and filled["lifetime_value"] == 0.0
    assert filled["segment"] == UNKNOWN and filled["trigger"] == UNKNOWN
    assert filled["stage"] == "discovery"


def test_a_frame_of_training_rows_fills_nan_like_serving_fills_none():
    frame = input_frame(pd.DataFrame([a_decision_point(lifetime_value=float("nan"), segment=None)]))

    assert frame.loc[0, "lifetime_value"] == 0.0
    assert frame.loc[0, "segment"] == UNKNOWN


def test_customers_are_held_back_whole_and_the_same_ones_in_any_data():
    frame = pd.DataFrame([a_decision_point(f"c-{i}", BEGINNING + hour) for i in range(500) for hour in range(2)])

    train, held = split_by_customer(frame, 0.2)

    assert not set(train.customer_id) & set(held.customer_id)
    assert 0.12 < held.customer_id.nunique() / 500 < 0.28
    other_data = pd.DataFrame([a_decision_point(c) for c in held.customer_id.unique()[:20]])
    assert len(split_by_customer(other_data, 0.2)[1]) == 20
    assert held_back(held.customer_id.iloc[0], 0.2)


def test_the_true_stage_of_a_decision_point_is_that_of_the_last_signal_seen():
    frame = pd.DataFrame([a_decision_point(last_event_id="e-1"), a_decision_point(last_event_id="e-2"),
                          a_decision_point() | {"last_event_id": None}])

    assert true_stages(frame, {"e-1": "intent"}).tolist() == ["intent", None, None]


def test_a_conversion_label_is_unknown_where_the_horizon_runs_past_the_data():
    frame = pd.DataFrame([a_decision_point(converted=True), a_decision_point(converted=False),
                          a_decision_point(converted=False, label_complete=False)])

    assert conversion_labels(frame).tolist() == [True, False, None]


# -- train and evaluate --------------------------------------------------------------------------
def test_the_stage_classifier_learns_what_the_rules_miss(pattern):
    train, held = pattern

    model = train_stage_classifier(input_frame(train), train.true_stage)
    metrics = evaluate_stage_classifier(model, input_frame(held), held.true_stage)

    assert metrics["rules_accuracy"] < 0.6  # the rules say consideration for every row
    assert metrics["accuracy"] > 0.9
    assert metrics["rows"] == len(held)


def test_the_propensity_model_ranks_converters_above_the_rest(pattern):
    train, held = pattern

    model = train_propensity(input_frame(train), conversion_labels(train))
    metrics = evaluate_propensity(model, input_frame(held), conversion_labels(held))

    assert metrics["roc_auc"] > 0.9
    assert 0.1 < metrics["base_rate"] < 0.5
    assert metrics["brier"] < 0.1


def test_training_refuses_labels_of_a_single_class():
    frame = pd.DataFrame([a_decision_point(f"c-{i}", converted=False) for i in range(10)])

    with pytest.raises(ValueError, match="both outcomes"):
        train_propensity(input_frame(frame), conversion_labels(frame))


class FixedModel:
    """A model whose answers are given, for metrics worked by hand."""

    def __init__(self, predictions=None, probabilities=None, classes=(False, True)):
        self.predictions, self.probabilities, self.classes_ = predictions, probabilities, np.array(classes)

    def predict(self, inputs):
        return np.array(self.predictions)

    def predict_proba(self, inputs):
        return np.array([[1 - p, p] for p in self.probabilities])


def test_stage_metrics_worked_by_hand():
    frame = input_frame([a_decision_point(stage=s) for s in ("intent", "intent", "consideration", "consideration")])
    truth = pd.Series(["intent", "consideration", "consideration", "intent"])

    metrics = evaluate_stage_classifier(FixedModel(["intent", "consideration", "consideration", "consideration"]),
                                        frame, truth)

    assert metrics["accuracy"] == 0.75       # 3 of 4 right
    assert metrics["rules_accuracy"] == 0.5  # the rows' own stage is right for the 1st and 3rd
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)  # intent P=1 R=.5; consideration P=2/3 R=1


def test_propensity_metrics_worked_by_hand():
    frame = input_frame([a_decision_point() for _ in range(4)])
    converted = pd.Series([True, False, True, None])

    metrics = evaluate_propensity(FixedModel(probabilities=[0.9, 0.2, 0.6]), frame, converted)  # for the labelled rows

    assert metrics["rows"] == 3  # the unknown label is left out
    assert metrics["roc_auc"] == 1.0
    assert metrics["brier"] == pytest.approx((0.1 ** 2 + 0.2 ** 2 + 0.4 ** 2) / 3)
    assert metrics["base_rate"] == pytest.approx(2 / 3)


def test_the_gate_compares_the_primary_metric_and_lets_equal_pass():
    assert better_or_equal(PROPENSITY_MODEL, {"roc_auc": 0.80}, {"roc_auc": 0.80})
    assert not better_or_equal(PROPENSITY_MODEL, {"roc_auc": 0.79}, {"roc_auc": 0.80})
    assert not better_or_equal(STAGE_MODEL, {"accuracy": 0.7}, {"accuracy": 0.9})
    assert better_or_equal(PROPENSITY_MODEL, {"roc_auc": math.nan}, {"roc_auc": 0.8})


# -- the pyfunc wrapper --------------------------------------------------------------------------
def test_the_pyfunc_model_and_its_fast_path_give_the_same_answers(pattern):
    train, held = pattern
    model = StageModel(PROPENSITY_MODEL, train_propensity(input_frame(train), conversion_labels(train)))
    rows = held.head(20).to_dict("records")

    framed = model.predict(None, input_frame(rows))
    fast = model.score_rows(rows)

    assert [p for p, _ in fast] == framed.prediction.tolist()
    assert [s for _, s in fast] == pytest.approx(framed.score.tolist())
    big_cart = model.score_rows([a_decision_point(cart_value=150.0)])[0]
    assert big_cart[0] == "converts" and big_cart[1] > 0.5


def test_the_stage_model_answers_a_stage_with_its_probability(pattern):
    train, _ = pattern
    model = StageModel(STAGE_MODEL, train_stage_classifier(input_frame(train), train.true_stage))

    (stage, probability), = model.score_rows([a_decision_point(cart_value=30.0)])

    assert stage == "intent"
    assert 0.5 < probability <= 1.0


def test_the_read_out_linear_scorer_gives_scikit_learns_probabilities_for_both_kinds(pattern):
    train, held = pattern
    fitted = {PROPENSITY_MODEL: train_propensity(input_frame(train), conversion_labels(train)),
              STAGE_MODEL: train_stage_classifier(input_frame(train), train.true_stage)}
    rows = held.head(30).to_dict("records") + [a_decision_point(stage="a_stage_never_trained_on", segment="unseen")]
    for kind, pipeline in fitted.items():
        model = StageModel(kind, pipeline)
        assert model.linear is not None, kind
        expected = pipeline.predict_proba(input_frame(rows))
        assert np.allclose(model.linear.probabilities([model_input(row) for row in rows]), expected, atol=1e-12)


def test_a_pipeline_of_another_shape_is_scored_through_scikit_learn(pattern):
    from sklearn.linear_model import LogisticRegression

    train, _ = pattern
    model = StageModel(PROPENSITY_MODEL, train_propensity(input_frame(train), conversion_labels(train)))
    model.pipeline.steps[-1] = ("model", LogisticRegression())  # unfitted: no coefficients to read
    assert StageModel(PROPENSITY_MODEL, model.pipeline).linear is None
