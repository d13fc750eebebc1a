"""Canary tracking for make bench: the pure core with a policy canary in force and every decision
point tallied and judged as the job does it (journeys.rollback), against the core with no canary,
in turn on the same input, as a ratio."""
from __future__ import annotations

import statistics
import time

import orjson

from journeys.gates import packaged_gates
from journeys.ontology import packaged_ontology
from journeys.policy import packaged_policy, packaged_policy_text
from journeys.policy_updates import PolicyInForce, update_record
from journeys.rollback import POLICY, Canary, CanaryJudge, TaskClock, tallies
from journeys.settings import packaged_settings
from pipelines.reference import ReferenceRun


def measure_canary_tracking(lines: list[bytes], runs: int = 3) -> dict:
    """Median seconds of each, interleaved so that the machine's load affects both alike."""
    without, tracked = [], []
    for _ in range(runs):
        without.append(_core(lines, None))
        tracked.append(_core(lines, 0.2))
    plain, canary = statistics.median(without), statistics.median(tracked)
    return {"core_events_per_second": round(len(lines) / plain), "canary_events_per_second": round(len(lines) / canary),
            "core_with_canary_to_without_ratio": round(plain / canary, 3)}


def _core(lines: list[bytes], share: float | None) -> float:
    settings, text = packaged_settings(), packaged_policy_text("retail")
    in_force = PolicyInForce(packaged_policy())
    if share is not None:
        in_force.apply_record(update_record(text[0].replace('version: "1"', 'version: "2"'), "canary.yaml", share))
    started = time.perf_counter()
    run = ReferenceRun(packaged_ontology(), settings, policy=in_force).feed(lines).finish()
    if share is not None:
        _judge(run.decision_log, settings)
    return time.perf_counter() - started


def _judge(points: list[dict], settings) -> None:
    """What the job adds while a canary is in force: a tally per decision point, as JSON, with the
    task's clock, and the judge's counting and judging (one task here)."""
    gates = packaged_gates()
    judge = CanaryJudge(gates, settings.max_out_of_orderness_ms, settings.idle_source_timeout_ms)
    clock, canaries = TaskClock("customer-0", 1, gates.judge_every_ms, settings.max_out_of_orderness_ms), [Canary(POLICY, "2")]
    for point in points:
        found = [orjson.dumps(t) for t in tallies(point, canaries)]
        if clock.advance([], [point]) or found:
            judge.take(clock.header(), [orjson.loads(t) for t in found], 0, "bench")
    judge.finish("bench")
