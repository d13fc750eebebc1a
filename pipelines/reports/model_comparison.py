"""Champion against challenger, from the decisions the job logged: how often they agree, and how
often each was right about what happened, without a model library.

Both answers are in every decision the job shadow-scored (`models` and `shadow`), so the two
models are compared on exactly the same inputs. Right means: for the stage model, the stage the
simulator says the customer was really in at the triggering signal (decisions triggered by time
passing have no such signal and are not judged); for the propensity model, whether the journey
reached the conversion stage within the horizon after the decision, observed in the journey log
(decisions whose horizon runs past the end of the log are not judged).
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

from journeys.outputs import enters_stage
from journeys.scoring import PROPENSITY_MODEL, STAGE_MODEL
from pipelines.beam.rows import Labels

CONVERSION_STAGE = Labels.conversion_stage  # what the propensity model was trained to predict


def conversions(journey_records: Iterable[dict]) -> tuple[dict[str, list[int]], int | None]:
    """journey -> the times it entered the conversion stage, and the last time in the log."""
    entered: dict[str, list[int]] = {}
    last = None
    for record in journey_records:
        at = record.get("at")
        if at is not None:
            last = at if last is None else max(last, at)
        if enters_stage(record) and record["stage"] == CONVERSION_STAGE:
            entered.setdefault(record["journey"], []).append(at)
    return entered, last


def compare_models(decisions: Iterable[dict], truth: dict[str, str] | None = None,
                   journey_records: Iterable[dict] | None = None, horizon_ms: int = 7 * 86_400_000) -> dict:
    entered, last = conversions(journey_records) if journey_records is not None else ({}, None)
    report: dict = {"decisions": 0, "kinds": {}}
    tallies: dict[str, dict] = {}
    for decision in decisions:
        report["decisions"] += 1
        actual = _actual(decision, truth, entered, last, horizon_ms)
        for role, field in (("champion", "models"), ("challenger", "shadow")):
            for score in decision.get(field) or ():
                kind = score.get("kind", score["model"])
                tally = tallies.setdefault(kind, {"champion": _empty(), "challenger": _empty(), "both": 0, "agree": 0})
                side = tally[role]
                side["versions"][f"{score['model']} v{score['version']}"] += 1
                expected = actual.get(kind)
                if expected is not None:
                    side["judged"] += 1
                    side["right"] += _prediction(score, kind) == expected
        champions = {s.get("kind", s["model"]): s for s in decision.get("models") or ()}
        for score in decision.get("shadow") or ():
            kind = score.get("kind", score["model"])
            if kind in champions:
                tallies[kind]["both"] += 1
                tallies[kind]["agree"] += _prediction(champions[kind], kind) == _prediction(score, kind)
    for kind, tally in sorted(tallies.items()):
        report["kinds"][kind] = {
            role: {"versions": dict(tally[role]["versions"]), "judged": tally[role]["judged"],
                   "accuracy": round(tally[role]["right"] / tally[role]["judged"], 4) if tally[role]["judged"] else None}
            for role in ("champion", "challenger")} | {
            "compared": tally["both"], "agreement": round(tally["agree"] / tally["both"], 4) if tally["both"] else None}
    return report


def _empty() -> dict:
    return {"versions": Counter(), "judged": 0, "right": 0}


def _prediction(score: dict, kind: str):
    return score["score"] >= 0.5 if kind == PROPENSITY_MODEL else score["prediction"]


def _actual(decision: dict, truth, entered, last, horizon_ms) -> dict:
    actual = {}
    if truth is not None and decision.get("event_id") in truth:
        actual[STAGE_MODEL] = truth[decision["event_id"]]
    at = decision["decided_at"]
    if last is not None and at + horizon_ms <= last:
        actual[PROPENSITY_MODEL] = any(at < t <= at + horizon_ms for t in entered.get(decision["journey"], ()))
    return actual


def format_comparison(report: dict) -> str:
    lines = [f"Champion against challenger on {report['decisions']:,} decisions"]
    if not report["kinds"]:
        lines.append("  no decision was scored by a model")
    for kind, result in report["kinds"].items():
        lines.append(f"  {kind}")
        for role in ("champion", "challenger"):
            side = result[role]
            versions = ", ".join(f"{v} ({n:,})" for v, n in side["versions"].items()) or "none"
            accuracy = f"{side['accuracy']:.1%} right of {side['judged']:,} judged" if side["accuracy"] is not None else "not judged"
            lines.append(f"    {role:<11} {versions}: {accuracy}")
        if result["agreement"] is not None:
            lines.append(f"    agreement   {result['agreement']:.1%} of {result['compared']:,} decisions scored by both")
        else:
            lines.append("    agreement   no decision was scored by both (no challenger alias)")
    return "\n".join(lines)
