"""Decisions scored by stage models in the pure core: batches, provenance, the stage mapping, the
challenger's shadow, and rules alone when models are missing. The scorers here answer from a
table, so every expected figure is known."""
from __future__ import annotations

from journeys.scoring import PROPENSITY_MODEL, STAGE_MODEL, ActiveModels
from tests.harness import (FIVE_MINUTES_LATER, ONE_MINUTE_LATER, TWO_MINUTES_LATER, EveryoneConsents, Fixed,
                           TableScorer, a_signal, canonical, play, propensity, stage_model)


def a_cart_then_a_complaint(customer: str = "c-1") -> list[dict]:
    """Three decision points: intent entered (cart nudge), at_risk entered (a win-back, held back by
    the complaint cooldown), and the complaint's escalation."""
    return [a_signal("add_to_cart", ONE_MINUTE_LATER, customer=customer, cart_value=30),
            a_signal("complaint", FIVE_MINUTES_LATER, customer=customer, channel="call_center")]


def test_every_decision_cites_the_model_versions_and_scores_it_used():
    run = play(a_cart_then_a_complaint(), models=Fixed(ActiveModels(champions=(propensity(0.42),))))

    assert len(run.decision_log) == 3 and len(run.decisions) == 2
    for decision in run.decision_log:
        assert decision["models"] == [{"model": PROPENSITY_MODEL, "kind": PROPENSITY_MODEL, "version": "2", "prediction": "does_not_convert",
                                       "score": 0.42}]
        assert decision["justification"].endswith("Conversion propensity 0.42 (conversion_propensity v2).")


def test_each_decision_point_is_scored_once_before_the_agents_propose():
    scorer = propensity(0.5)
    customers = [f"c-{n}" for n in range(5)]
    signals = sorted((s for customer in customers for s in a_cart_then_a_complaint(customer)),
                     key=lambda s: s["event_time"])

    run = play(signals, models=Fixed(ActiveModels(champions=(scorer,))))

    # The propensity is an arbitration factor, so the score must be there when the policy arbitrates.
    assert scorer.batches == [1] * len(run.decision_log) and len(run.decision_log) == 15
    assert all(c["factors"]["propensity"] == 0.5 for d in run.decision_log for c in d["candidates"]
               if c["agent"] != "service")


def test_a_stage_model_that_agrees_leaves_stage_and_action_alone():
    run = play(a_cart_then_a_complaint(), models=Fixed(ActiveModels(champions=(TableScorer(
        STAGE_MODEL, "3", lambda row: (row["stage"], 0.93)),))))

    first = run.decisions[0]
    assert (first["stage"], first["mapped_stage"], first["action"]) == ("intent", "intent", "onsite_cart_nudge")
    assert "journey_stage v3 agrees on intent (0.93)." in first["justification"]


def test_a_stage_model_that_is_not_sure_enough_keeps_the_rules():
    run = play(a_cart_then_a_complaint(), models=Fixed(ActiveModels(champions=(stage_model("conversion", 0.79),))))

    first = run.decisions[0]
    assert first["mapped_stage"] == "intent" and first["action"] == "onsite_cart_nudge"
    assert "leans to conversion (0.79), below 0.80: rules kept" in first["justification"]


def test_a_sure_stage_model_maps_the_stage_and_the_agents_propose_for_that_stage():
    run = play(a_cart_then_a_complaint(), models=Fixed(ActiveModels(champions=(stage_model("consideration", 0.9),))))

    entered_intent, _, escalation = run.decision_log
    assert entered_intent["stage"] == "intent"  # the journey's stage stays the rules'
    assert entered_intent["mapped_stage"] == "consideration"
    assert (entered_intent["action"], entered_intent["channel"]) == ("recommend_products", "web")
    assert "maps the customer to consideration (0.90), so agents saw consideration." in entered_intent["justification"]
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

    assert all(d["justification"].endswith("Models: model registry unreachable; decided on rules alone.") for d in run.decisions)
    assert all(d["models"] == [] and d["shadow"] == [] for d in run.decisions)


def test_with_no_model_source_decisions_are_as_before():
    plain = play(a_cart_then_a_complaint())

    assert all(d["mapped_stage"] == d["stage"] and d["models"] == [] and d["shadow"] == [] for d in plain.decision_log)


def test_the_same_models_give_the_same_decisions_twice():
    signals = a_cart_then_a_complaint() + [a_signal("purchase", TWO_MINUTES_LATER, cart_value=30)]

    def scored():
        return play(signals, models=Fixed(ActiveModels(champions=(stage_model("consideration", 0.9), propensity(0.7)))))

    first = scored().decision_log
    assert canonical(first) == canonical(scored().decision_log)
    assert all(d["models"] for d in first)


def test_the_override_confidence_comes_from_the_settings_and_a_bad_one_points_to_its_line(tmp_path):
    import pytest

    from journeys.settings import packaged_settings
    from journeys.yamlconf import ConfigError
    from pipelines.config import read_settings

    assert packaged_settings().stage_override_confidence == 0.8
    settings = tmp_path / "journeys.yaml"
    settings.write_text("ontology: retail\nprivacy:\n  hash_key: k\nmodels:\n  stage_override_confidence: 0.3\n")

    with pytest.raises(ConfigError, match=r"journeys.yaml line 5: .*between 0.5 and 1"):
        read_settings(settings)


def mapped_to_conversion(profiles=None):
    from journeys.ontology import packaged_ontology
    from journeys.settings import packaged_settings
    from pipelines.reference import ReferenceRun
    from tests.harness import NOW, line

    run = ReferenceRun(packaged_ontology(), packaged_settings(), now_ms=NOW, profiles=profiles,
                       models=Fixed(ActiveModels(champions=(stage_model("conversion", 0.95),))))
    return run.feed(line(s) for s in a_cart_then_a_complaint()).finish().decision_log[0]


def test_an_email_proposed_for_the_mapped_stage_goes_out_with_the_customers_consent():
    decision = mapped_to_conversion(EveryoneConsents())

    assert decision["mapped_stage"] == "conversion"
    assert (decision["action"], decision["channel"], decision["acted"]) == ("order_follow_up", "email", True)


def test_an_email_proposed_for_the_mapped_stage_is_held_back_without_consent():
    from journeys.features import PROFILE_DEFAULTS, StaticProfiles

    profile = PROFILE_DEFAULTS | {"customer_id": "c-1", "consent_email": False}
    for profiles in (StaticProfiles([profile]), None):  # no consent given, or none known (no feature store)
        decision = mapped_to_conversion(profiles)

        assert decision["acted"] is False and decision["action"] is None
        assert decision["candidates"][0]["suppressed_by"] == ["consent:email"]
        assert "order_follow_up by email (consent:email)" in decision["justification"]
