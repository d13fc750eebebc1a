"""`journeys models compare`: champion against challenger, worked by hand on four decisions."""
from __future__ import annotations

import orjson

from journeys.scoring import PROPENSITY_MODEL, STAGE_MODEL
from pipelines.cli.main import main as journeys
from pipelines.reports.model_comparison import compare_models, format_comparison
from tests.harness import BEGINNING, DAY

LATER = BEGINNING + 30 * DAY  # the journey log runs this far, so every horizon is complete


def stage(version: str, prediction: str, score: float = 0.9) -> dict:
    return {"model": STAGE_MODEL, "kind": STAGE_MODEL, "version": version, "prediction": prediction, "score": score}


def propensity(version: str, score: float) -> dict:
    return {"model": PROPENSITY_MODEL, "kind": PROPENSITY_MODEL, "version": version,
            "prediction": "converts" if score >= 0.5 else "does_not_convert", "score": score}


def a_decision(journey: str, event_id: str | None, champions: list, challengers: list, at: int = BEGINNING) -> dict:
    return {"decision_id": f"d-{journey}-{event_id}", "journey": journey, "event_id": event_id, "decided_at": at,
            "models": champions, "shadow": challengers}


DECISIONS = [
    a_decision("c-1", "e-1", [stage("1", "intent"), propensity("1", 0.8)], [stage("2", "intent"), propensity("2", 0.3)]),
    a_decision("c-2", "e-2", [stage("1", "intent"), propensity("1", 0.2)], [stage("2", "consideration"), propensity("2", 0.1)]),
    a_decision("c-3", "e-3", [stage("1", "consideration"), propensity("1", 0.6)], [stage("2", "consideration"), propensity("2", 0.7)]),
    a_decision("c-4", None, [stage("1", "intent"), propensity("1", 0.4)], [stage("2", "intent"), propensity("2", 0.9)]),
]
TRUTH = {"e-1": "intent", "e-2": "consideration", "e-3": "consideration"}  # c-4 was triggered by time: not judged
JOURNEY_LOG = [  # c-1 and c-3 convert a day later; c-2 converts after the 7-day horizon; the log runs to LATER
    {"kind": "signal", "journey": "c-1", "at": BEGINNING + DAY, "from_stage": "intent", "stage": "conversion"},
    {"kind": "signal", "journey": "c-3", "at": BEGINNING + DAY, "from_stage": "intent", "stage": "conversion"},
    {"kind": "signal", "journey": "c-2", "at": BEGINNING + 8 * DAY, "from_stage": "intent", "stage": "conversion"},
    {"kind": "signal", "journey": "c-4", "at": LATER, "from_stage": "consideration", "stage": "consideration"},
]


def test_agreement_and_accuracy_worked_by_hand():
    report = compare_models(DECISIONS, TRUTH, JOURNEY_LOG)

    stage_result, propensity_result = report["kinds"][STAGE_MODEL], report["kinds"][PROPENSITY_MODEL]
    # Stage: champion right on e-1, e-3 (2 of 3); challenger right on e-1, e-2, e-3; they agree on c-1, c-3, c-4.
    assert stage_result["champion"] == {"versions": {f"{STAGE_MODEL} v1": 4}, "judged": 3, "accuracy": 0.6667}
    assert stage_result["challenger"]["accuracy"] == 1.0 and stage_result["challenger"]["judged"] == 3
    assert stage_result["agreement"] == 0.75 and stage_result["compared"] == 4
    # Propensity: converted = c-1, c-3. Champion says c-1, c-3 (4 of 4 right); challenger says c-3, c-4 (2 of 4).
    assert propensity_result["champion"]["accuracy"] == 1.0 and propensity_result["champion"]["judged"] == 4
    assert propensity_result["challenger"]["accuracy"] == 0.5
    assert propensity_result["agreement"] == 0.5


def test_without_outcomes_nothing_is_judged_and_the_report_says_so():
    report = compare_models(DECISIONS)
    assert report["kinds"][STAGE_MODEL]["champion"]["accuracy"] is None
    assert "not judged" in format_comparison(report)


def test_the_command_prints_the_comparison(tmp_path, capsys):
    decisions, journey_log, truth = tmp_path / "decisions.jsonl", tmp_path / "journeys.jsonl", tmp_path / "signals.jsonl"
    decisions.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in DECISIONS))
    journey_log.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in JOURNEY_LOG))
    truth.write_bytes(b"".join(orjson.dumps({"event_id": e, "simulator_truth": {"stage": s}}) + b"\n" for e, s in TRUTH.items()))

    assert journeys(["models", "compare", "--decisions", str(decisions), "--journeys", str(journey_log),
                     "--truth", str(truth), "--json", str(tmp_path / "report.json")]) == 0

    printed = capsys.readouterr().out
    assert "journey_stage v2 (4): 100.0% right of 3 judged" in printed
    assert "agreement   75.0% of 4 decisions scored by both" in printed
    assert orjson.loads((tmp_path / "report.json").read_bytes())["decisions"] == 4
