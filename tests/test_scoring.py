"""Decisions scored by stage models in the pure core: batches, provenance, the stage mapping, the
challenger's shadow, and rules alone when models are missing. The scorers here answer from a
table, so every expected figure is known."""
from __future__ import annotations

from journeys.scoring import PROPENSITY_MODEL, STAGE_MODEL, ActiveModels, ModelScore
from tests.builders import BEGINNING, FIVE_MINUTES_LATER, ONE_MINUTE_LATER, TWO_MINUTES_LATER, a_signal, play


class TableScorer:
    """Answers `answer(row)` for each row, and records the size of every batch it was given."""

    def __init__(self, name: str, version: str, answer):
        self.name, self.version, self.answer = name, version, answer
        self.batches: list[int] = []

    def score(self, rows):
        self.batches.append(len(rows))
        return [ModelScore(self.name, self.version, *self.answer(row)) for row in rows]


class Fixed:
    def __init__(self, models: ActiveModels):
        self.models = models

    def active(self) -> ActiveModels:
        return self.models


def a_cart_then_a_complaint(customer: str = "c-1") -> list[dict]:
    """Three decisions: intent entered (cart nudge), at_risk entered (win-back), an escalation."""
    return [a_signal("page_view", BEGINNING, customer=customer),
            a_signal("add_to_cart", ONE_MINUTE_LATER, customer=customer, cart_value=30),
            a_signal("complaint", FIVE_MINUTES_LATER, customer=customer, channel="call_center")]


def stage_model(say: str, probability: float, version: str = "3") -> TableScorer:
    return TableScorer(STAGE_MODEL, version, lambda row: (say, probability))


def propensity(probability: float, version: str = "2") -> TableScorer:
    return TableScorer(PROPENSITY_MODEL, version, lambda row: ("converts" if probability >= 0.5 else "does_not_convert",
                                                               probability))


def test_every_decision_cites_the_model_versions_and_scores_it_used():
    run = play(a_cart_then_a_complaint(), models=Fixed(ActiveModels(champions=(propensity(0.42),))))

    assert len(run.decisions) == 3
    for decision in run.decisions:
        assert decision["models"] == [{"model": PROPENSITY_MODEL, "kind": PROPENSITY_MODEL, "version": "2", "prediction": "does_not_convert",
                                       "score": 0.42}]
        assert decision["reason"].endswith("Conversion propensity 0.42 (conversion_propensity v2).")


def test_the_decisions_of_one_timer_are_scored_in_one_call():
    scorer = propensity(0.5)
    customers = [f"c-{n}" for n in range(5)]
    # Every customer's signals at the same instants: each customer's decisions come from one timer call.
    signals = sorted((s for customer in customers for s in a_cart_then_a_complaint(customer)),
                     key=lambda s: s["event_time"])

    run = play(signals, models=Fixed(ActiveModels(champions=(scorer,))))

    assert sum(scorer.batches) == len(run.decisions) == 15
    assert max(scorer.batches) == 2  # at_risk entered and the escalation, on the same complaint


def test_a_stage_model_that_agrees_leaves_stage_and_action_alone():
    run = play(a_cart_then_a_complaint(), models=Fixed(ActiveModels(champions=(TableScorer(
        STAGE_MODEL, "3", lambda row: (row["stage"], 0.93)),))))

    first = run.decisions[0]
    assert (first["stage"], first["mapped_stage"], first["action"]) == ("intent", "intent", "onsite_cart_nudge")
    assert "journey_stage v3 agrees on intent (0.93)." in first["reason"]


def test_a_stage_model_that_is_not_sure_enough_keeps_the_rules():
    run = play(a_cart_then_a_complaint(), models=Fixed(ActiveModels(champions=(stage_model("conversion", 0.79),))))

    first = run.decisions[0]
    assert first["mapped_stage"] == "intent" and first["action"] == "onsite_cart_nudge"
    assert "leans to conversion (0.79), below 0.80: rules kept" in first["reason"]


def test_a_sure_stage_model_maps_the_stage_and_a_stage_entry_takes_that_stages_action():
    run = play(a_cart_then_a_complaint(), models=Fixed(ActiveModels(champions=(stage_model("consideration", 0.9),))))

    entered_intent, _, escalation = run.decisions
    assert entered_intent["stage"] == "intent"  # the journey's stage stays the rules'
    assert entered_intent["mapped_stage"] == "consideration"
    assert (entered_intent["action"], entered_intent["channel"]) == ("recommend_products", "web")
    assert "maps the customer to consideration (0.90): its next action, recommend_products by web, instead." \
        in entered_intent["reason"]
    assert escalation["mapped_stage"] == "consideration"
    assert escalation["action"] == "escalate_to_agent"  # escalations are not stage actions


def test_the_challenger_is_scored_on_the_same_inputs_and_never_acts():
    champion, challenger = propensity(0.3, "2"), stage_model("consideration", 0.99, "4")

    run = play(a_cart_then_a_complaint(), models=Fixed(ActiveModels(champions=(champion,), challengers=(challenger,))))

    first = run.decisions[0]
    assert first["shadow"] == [{"model": STAGE_MODEL, "kind": STAGE_MODEL, "version": "4", "prediction": "consideration", "score": 0.99}]
    assert first["action"] == "onsite_cart_nudge" and first["mapped_stage"] == "intent"
    assert champion.batches == challenger.batches


def test_without_models_decisions_say_they_were_made_on_rules_alone():
    run = play(a_cart_then_a_complaint(), models=Fixed(ActiveModels(note="model registry unreachable")))

    assert all(d["reason"].endswith("Models: model registry unreachable; decided on rules alone.") for d in run.decisions)
    assert all(d["models"] == [] and d["shadow"] == [] for d in run.decisions)


def test_with_no_model_source_decisions_are_as_before():
    plain = play(a_cart_then_a_complaint())

    assert all(d["mapped_stage"] is None and d["models"] == [] and d["shadow"] == [] for d in plain.decisions)


def test_the_same_models_give_the_same_decisions_twice():
    signals = a_cart_then_a_complaint() + [a_signal("purchase", TWO_MINUTES_LATER, cart_value=30)]

    def scored():
        return play(signals, models=Fixed(ActiveModels(champions=(stage_model("consideration", 0.9), propensity(0.7)))))

    first = scored().decisions
    assert first == scored().decisions
    assert all(d["models"] for d in first)


def test_the_override_confidence_comes_from_the_settings_and_a_bad_one_points_to_its_line(tmp_path):
    import pytest

    from journeys.settings import load_settings
    from journeys.yamlconf import ConfigError

    assert load_settings().stage_override_confidence == 0.8
    settings = tmp_path / "journeys.yaml"
    settings.write_text("ontology: retail\nprivacy:\n  hash_key: k\nmodels:\n  stage_override_confidence: 0.3\n")

    with pytest.raises(ConfigError, match=r"journeys.yaml line 5: .*between 0.5 and 1"):
        load_settings(settings)


def mapped_to_conversion(profiles=None):
    from journeys.ontology import load_ontology
    from journeys.reference import ReferenceRun
    from journeys.settings import load_settings
    from tests.builders import NOW, line

    run = ReferenceRun(load_ontology(), load_settings(), now_ms=NOW, profiles=profiles,
                       models=Fixed(ActiveModels(champions=(stage_model("conversion", 0.95),))))
    return run.feed(line(s) for s in a_cart_then_a_complaint()).finish().decisions[0]


def test_a_mapped_stage_action_by_email_is_taken_without_a_feature_store_as_the_rules_would():
    decision = mapped_to_conversion()

    assert (decision["action"], decision["channel"]) == ("order_follow_up", "email")


def test_a_mapped_stage_action_by_email_needs_the_customers_email_consent():
    from journeys.features import PROFILE_DEFAULTS, StaticProfiles

    profile = PROFILE_DEFAULTS | {"customer_id": "c-1", "consent_email": False}
    decision = mapped_to_conversion(StaticProfiles([profile]))

    assert decision["mapped_stage"] == "conversion"
    assert (decision["action"], decision["channel"]) == ("onsite_cart_nudge", "web")
    assert decision["reason"].endswith("maps the customer to conversion (0.95).")
