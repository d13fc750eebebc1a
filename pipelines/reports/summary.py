"""What a run did, from its outputs: counts that must add up, journeys, sessions, stages,
transitions, decisions, and stage accuracy against the simulator's ground truth.

events_in is counted from the input itself, independently of the job, so that
events_in == accepted + rejected + duplicates is a real check: a record the job lost or
double-counted breaks it.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

import orjson

from journeys.outputs import STAGE_KINDS, LogKind
from pipelines.reports.uplift import format_uplift, uplift_table
from pipelines.tools.files import input_files, read_lines

def read_records(directory: str | Path) -> Iterator[dict]:
    """Every JSON line in the committed part files below a sink directory (hidden in-progress files skipped)."""
    directory = Path(directory)
    if not directory.exists():
        return
    for file in input_files(directory):
        with open(file, "rb") as source:
            for line in source:
                if line.strip():
                    yield orjson.loads(line)


def read_truth(signals: str | Path | Iterable[bytes]) -> dict[str, str]:
    """event_id -> the simulator's ground-truth stage, for inputs written by `journeys simulate`
    (a file, or the raw records of any input)."""
    truth: dict[str, str] = {}
    for raw in read_lines(signals) if isinstance(signals, (str, Path)) else signals:
        if b"simulator_truth" not in raw:
            continue
        try:
            record = orjson.loads(raw)
            truth.setdefault(record["event_id"], record["simulator_truth"]["stage"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    return truth


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def summarize(events_in: int, journey_records: Iterable[dict], decisions: Iterable[dict],
              dead_letters: Iterable[dict], truth: dict[str, str] | None = None) -> dict:
    kinds: Counter = Counter()
    transitions: Counter = Counter()
    unmapped: Counter = Counter()
    final: dict[str, tuple] = {}
    keys = {True: set(), False: set()}
    stitched = set()
    sessions_open = 0
    compared = matched = 0
    per_stage: dict[str, list[int]] = {}
    outcomes: list[dict] = []
    for order, record in enumerate(journey_records):
        kind = record["kind"]
        kinds[kind] += 1
        if record.get("decision_id"):
            outcomes.append(record)
        keys[record["anonymous"]].add(record["journey"])
        if kind == LogKind.SIGNAL:
            if record.get("unmapped"):
                unmapped[record["event_type"]] += 1
            if truth is not None and record["event_id"] in truth:
                expected = truth[record["event_id"]]
                hit = record["stage"] == expected
                compared += 1
                matched += hit
                tally = per_stage.setdefault(expected, [0, 0])
                tally[0] += 1
                tally[1] += hit
        elif kind == LogKind.STITCH:
            stitched.add(record["anonymous_id"])
        elif kind == LogKind.SESSION and record.get("open"):
            sessions_open += 1
        if kind in STAGE_KINDS:
            if record.get("from_stage") and record["from_stage"] != record["stage"]:
                transitions[f"{record['from_stage']} -> {record['stage']}"] += 1
            position = (record["at"], order)
            current = final.get(record["journey"])
            if current is None or position > current[0]:
                final[record["journey"]] = (position, record["stage"], kind == LogKind.CLOSED)

    decision_points = list(decisions)  # the decision log (every point), or only the actions taken
    decision_list = [d for d in decision_points if d.get("acted", True)]
    dead_list = list(dead_letters)
    rejected_by_reason = Counter(record["reason"] for record in dead_list)
    accepted = kinds[LogKind.SIGNAL] + kinds[LogKind.LATE] + kinds[LogKind.OUTCOME]
    rejected = len(dead_list)
    duplicates = kinds[LogKind.DUPLICATE]
    visitors_only = keys[True] - stitched
    live_journeys = {key: value for key, value in final.items() if key not in stitched}
    stage_distribution = Counter(stage for _, stage, closed in live_journeys.values())
    latencies = [d["latency_ms"] for d in decision_list if d.get("latency_ms") is not None]
    summary = {
        "events_in": events_in,
        "accepted": accepted,
        "rejected": rejected,
        "duplicates": duplicates,
        "late": kinds[LogKind.LATE],
        "balanced": events_in == accepted + rejected + duplicates,
        "rejected_by_reason": dict(rejected_by_reason.most_common()),
        "customers": len(keys[False]),
        "anonymous_visitors": len(visitors_only),
        "stitched_visitors": len(stitched),
        "journeys": len(keys[False]) + len(visitors_only),
        "closed_journeys": sum(1 for _, _, closed in live_journeys.values() if closed),
        "sessions": kinds[LogKind.SESSION],
        "sessions_open_at_end": sessions_open,
        "stage_distribution": dict(stage_distribution.most_common()),
        "top_transitions": dict(transitions.most_common(10)),
        "decisions": len(decision_list),
        "decisions_by_action": dict(Counter(d["action"] for d in decision_list).most_common()),
        "decisions_by_trigger": dict(Counter(d["trigger"] for d in decision_list).most_common()),
        "decisions_by_agent": dict(Counter(d.get("agent") for d in decision_list).most_common()),
        "decision_points": len(decision_points),
        "held_back": {"control_group": sum(1 for d in decision_points if d.get("control")),
                      "every_candidate_suppressed": sum(1 for d in decision_points
                                                        if not d.get("acted", True) and not d.get("control"))},
        "suppressions_by_rule": dict(sum((Counter(d.get("suppressions") or {}) for d in decision_points),
                                         Counter()).most_common()),
        "fast_path": sum(1 for d in decision_points if d.get("fast_path")),
        "policy_versions": dict(sorted(Counter(str(d.get("policy_version")) for d in decision_list).items())),
        "outcomes": {"matched": sum(1 for o in outcomes if o.get("matched")),
                     "unmatched": sum(1 for o in outcomes if not o.get("matched")),
                     "by_type": dict(Counter(o["event_type"] for o in outcomes).most_common())},
        "feature_lookups": _feature_lookups(decision_list),
        "model_usage": _model_usage(decision_list),
        "unmapped_signals": dict(unmapped.most_common()),
        "stage_accuracy": round(matched / compared, 4) if compared else None,
        "stage_accuracy_by_true_stage": {stage: round(hit / total, 4) for stage, (total, hit) in sorted(per_stage.items())},
        "signals_with_truth": compared,
    }
    answered = [{"decision_id": o["decision_id"], "outcome": o["event_type"]} for o in outcomes if o.get("matched")]
    if answered:
        summary["uplift"] = uplift_table([d for d in decision_points if d.get("action")], answered)
    if latencies:
        summary["decision_latency_ms"] = {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
                                          "max": max(latencies)}
    return summary


def _model_usage(decisions: list[dict]) -> dict:
    """Which model versions scored the decisions (champions), which were shadow-scored, how many
    decisions the stage model mapped to another stage, and how many were made on rules alone."""
    scored = Counter(f"{m['model']} v{m['version']}" for d in decisions for m in d.get("models") or ())
    shadow = Counter(f"{m['model']} v{m['version']}" for d in decisions for m in d.get("shadow") or ())
    remapped = sum(1 for d in decisions if d.get("mapped_stage") and d["mapped_stage"] != d["stage"])
    rules_alone = sum(1 for d in decisions if not d.get("models"))
    return {"scored_by": dict(sorted(scored.items())), "shadow": dict(sorted(shadow.items())),
            "stage_remapped": remapped, "rules_alone": rules_alone}


def _feature_lookups(decisions: list[dict]) -> dict:
    """How the profile lookups behind the decisions went: hit (online), missed (no profile: defaults),
    fell back (store unavailable: defaults). Anonymous journeys have no profile to look up."""
    sources = Counter(d.get("feature_source") for d in decisions)
    return {"hit": sources["online"], "missed": sources["missing"], "fell_back": sources["fallback"],
            "not_used": sources["disabled"] + sources[None], "anonymous": sources["none"]}


def format_summary(summary: dict) -> str:
    lines = []

    def row(label, value):
        lines.append(f"  {label:<42} {value}")

    lines.append("Journey job summary")
    ok = "yes" if summary["balanced"] else "NO: records were lost or double-counted"
    row("events in", f"{summary['events_in']:,}")
    row("  accepted", f"{summary['accepted']:,}  (late, not applied: {summary['late']:,})")
    row("  rejected", f"{summary['rejected']:,}")
    row("  duplicates", f"{summary['duplicates']:,}")
    row("  in = accepted+rejected+duplicates", ok)
    for reason, count in summary["rejected_by_reason"].items():
        row(f"    rejected: {reason}", f"{count:,}")
    row("customers (identified)", f"{summary['customers']:,}")
    row("visitors stitched to customers", f"{summary['stitched_visitors']:,}")
    row("visitors never identified", f"{summary['anonymous_visitors']:,}")
    row("sessions", f"{summary['sessions']:,}  (open at end of input: {summary['sessions_open_at_end']:,})")
    lines.append("  stage distribution (journeys by current stage)")
    for stage, count in summary["stage_distribution"].items():
        row(f"    {stage}", f"{count:,}")
    lines.append("  top stage transitions")
    for transition, count in summary["top_transitions"].items():
        row(f"    {transition}", f"{count:,}")
    row("decisions (actions taken)", f"{summary['decisions']:,}  (of {summary.get('decision_points', 0):,} decision points)")
    for action, count in summary["decisions_by_action"].items():
        row(f"    {action}", f"{count:,}")
    if summary.get("decisions_by_agent"):
        row("  by agent", ", ".join(f"{k}: {v:,}" for k, v in summary["decisions_by_agent"].items()))
    held = summary.get("held_back") or {}
    if held:
        row("  no action: control group", f"{held['control_group']:,}")
        row("  no action: every candidate suppressed", f"{held['every_candidate_suppressed']:,}")
    if summary.get("suppressions_by_rule"):
        lines.append("  candidates suppressed, by policy rule")
        for rule, count in summary["suppressions_by_rule"].items():
            row(f"    {rule}", f"{count:,}")
    if summary.get("decision_points"):
        row("  fast path (latency budget, rules alone)", f"{summary['fast_path']:,} "
            f"({summary['fast_path'] / summary['decision_points']:.2%} of decision points)")
        row("  policy versions used", ", ".join(f"v{k}: {v:,}" for k, v in summary["policy_versions"].items()))
    outcomes = summary.get("outcomes") or {}
    if outcomes.get("matched") or outcomes.get("unmatched"):
        row("outcome signals joined to decisions", f"{outcomes['matched']:,}  (no decision found: {outcomes['unmatched']:,})")
    if summary.get("uplift"):
        lines.append("  outcome rates and uplift against the control group, per action")
        lines.append(format_uplift(summary["uplift"]))
    lookups = summary.get("feature_lookups") or {}
    if lookups.get("hit") or lookups.get("missed") or lookups.get("fell_back"):
        row("profile feature lookups (decisions)", f"hit {lookups['hit']:,}, missed {lookups['missed']:,}, "
                                                   f"fell back {lookups['fell_back']:,}")
    usage = summary.get("model_usage") or {}
    if usage.get("scored_by") or usage.get("shadow"):
        row("decisions scored by", ", ".join(f"{k}: {v:,}" for k, v in usage["scored_by"].items()) or "none")
        if usage["shadow"]:
            row("  shadow-scored by (never acted)", ", ".join(f"{k}: {v:,}" for k, v in usage["shadow"].items()))
        row("  mapped to another stage by the model", f"{usage['stage_remapped']:,}")
        row("  on rules alone", f"{usage['rules_alone']:,}")
    if summary["unmapped_signals"]:
        row("signals the ontology does not map", ", ".join(f"{k}: {v}" for k, v in summary["unmapped_signals"].items()))
    if summary["stage_accuracy"] is not None:
        row("stage accuracy vs ground truth", f"{summary['stage_accuracy']:.1%} of {summary['signals_with_truth']:,} signals")
        for stage, share in summary["stage_accuracy_by_true_stage"].items():
            row(f"    truly {stage}", f"{share:.1%}")
    latency = summary.get("decision_latency_ms")
    if latency:
        row("event-to-decision latency", f"p50 {latency['p50']} ms, p99 {latency['p99']} ms")
    runtime = summary.get("runtime")
    if runtime:
        row("job runtime", f"{runtime['job_seconds']:.1f} s ({runtime['events_per_second']:,.0f} events/s); wall {runtime['wall_seconds']:.1f} s")
    return "\n".join(lines)
