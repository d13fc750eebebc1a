"""A model canary, without a registry: a version under the alias canary scores in its champion's
place for a deterministic share of people, never for the control group; every decision says which
model arm it was in, and the gates compare the arms as they compare a policy canary's."""
from __future__ import annotations

import orjson

from journeys.gates import PASS
from journeys.ontology import packaged_ontology
from journeys.policy import packaged_policy
from journeys.scoring import CANARY, CHAMPION, ActiveModels, ModelCanary, in_model_canary
from journeys.settings import packaged_settings
from pipelines.cli.main import main as journeys
from pipelines.reference import ReferenceRun
from tests.harness import (BEGINNING, NOW, ONE_MINUTE_LATER, EveryoneConsents, Fixed, a_signal, line, propensity,
                           stage_model)

PEOPLE = [f"c-{n}" for n in range(600)]
RETAIL = packaged_policy()


def carts(people: list[str]) -> list[bytes]:
    return [line(signal) for person in people for signal in (a_signal("page_view", BEGINNING, customer=person),
                                                              a_signal("add_to_cart", ONE_MINUTE_LATER, customer=person,
                                                                       cart_value=30))]


CARTS = carts(PEOPLE)


def decided(models: ActiveModels) -> list[dict]:
    run = ReferenceRun(packaged_ontology(), packaged_settings(), now_ms=NOW, profiles=EveryoneConsents(),
                       models=Fixed(models))
    return run.feed(CARTS).finish().decision_log


CHAMPIONS = (stage_model("intent", 0.5, version="3"), propensity(0.4, version="2"))
WITH_A_CANARY = ActiveModels(CHAMPIONS, canaries=(ModelCanary(propensity(0.9, version="5"), 0.3),))


def test_a_model_canary_scores_in_its_champions_place_for_its_share_of_people_and_never_the_control_group():
    points = decided(WITH_A_CANARY)

    canary = [p for p in points if p["model_arm"] == CANARY]
    versions = {p["model_arm"]: {(m["model"], m["version"]) for m in p["models"]} for p in points}
    assert 0.2 < len({p["journey"] for p in canary}) / len(PEOPLE) < 0.4
    assert versions == {CANARY: {("journey_stage", "3"), ("conversion_propensity", "5")},
                        CHAMPION: {("journey_stage", "3"), ("conversion_propensity", "2")}}
    assert not any(p["control"] for p in canary)
    assert all(in_model_canary("conversion_propensity", p["journey"], 0.3) == (p["model_arm"] == CANARY)
               for p in points if not p["control"])


def test_without_a_canary_every_point_is_the_champions_and_the_same_people_are_in_it_every_time():
    assert {p["model_arm"] for p in decided(ActiveModels(CHAMPIONS))} == {CHAMPION}
    first, again = decided(WITH_A_CANARY), decided(WITH_A_CANARY)
    assert [(p["decision_id"], p["model_arm"]) for p in first] == [(p["decision_id"], p["model_arm"]) for p in again]


def test_a_model_canarys_share_is_drawn_apart_from_the_control_group_and_a_larger_share_keeps_the_smaller():
    small = {p for p in PEOPLE if in_model_canary("m", p, 0.1)}
    large = {p for p in PEOPLE if in_model_canary("m", p, 0.3)}
    control = {p for p in PEOPLE if RETAIL.in_control_group(p)}

    assert small <= large and 0 < len(control & large) < len(control)  # independent draws


def test_canary_status_judges_a_model_canary_on_its_decisions_model_arm(tmp_path):
    log = tmp_path / "decision-log"
    log.mkdir()
    (log / "part-0.jsonl").write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in decided(WITH_A_CANARY)))

    status = journeys(["canary", "status", "--decision-log", str(log), "--model", "conversion_propensity",
                       "--json", str(tmp_path / "status.json")])

    report = orjson.loads((tmp_path / "status.json").read_bytes())
    assert status == 0 and report["canary_of"] == "model conversion_propensity" and report["canary_versions"] == ["5"]
    assert report["arms"]["champion"]["versions"] == ["2"] and report["verdict"] == PASS
