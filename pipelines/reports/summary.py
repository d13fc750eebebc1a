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

from journeys.gates import MODEL_ARM, POLICY_ARM, arm_points
from journeys.outputs import ACCEPTED_KINDS, STAGE_KINDS, LogKind
from journeys.timeutil import iso
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


class _LogTally:
    """What the journey log says, record by record: kinds, transitions, journeys and their last
    stage, stitched visitors, open sessions, outcomes, and stage accuracy against the truth."""

    def __init__(self, truth: dict[str, str] | None):
        self.truth = truth
        self.kinds: Counter = Counter()
        self.transitions: Counter = Counter()
        self.unmapped: Counter = Counter()
        self.final: dict[str, tuple] = {}
        self.keys: dict[bool, set] = {True: set(), False: set()}
        self.stitched: set = set()
        self.sessions_open = 0
        self.compared = self.matched = 0
        self.per_stage: dict[str, list[int]] = {}
        self.outcomes: list[dict] = []
        self.stale: Counter = Counter()  # (signal channel, decision channel) -> stale decisions
        self.canary_verdicts: list[dict] = []  # the job's judge of a canary (journeys.rollback)

    def add(self, order: int, record: dict) -> None:
        kind = record["kind"]
        self.kinds[kind] += 1
        if kind == LogKind.CANARY_VERDICT:
            self.canary_verdicts.append(record)
        if "anonymous" not in record:  # the job's own records (canaries, updates), about no journey
            return
        if "matched" in record:  # an answer to a decision, joined or not
            self.outcomes.append(record)
        self.keys[record["anonymous"]].add(record["journey"])
        if kind == LogKind.SIGNAL:
            self._signal(record)
        elif kind == LogKind.STITCH:
            self.stitched.add(record["anonymous_id"])
        elif kind == LogKind.SESSION and record.get("open"):
            self.sessions_open += 1
        elif kind == LogKind.STALE_DECISION:
            self.stale[record["signal_channel"], record["channel"]] += 1
        if kind in STAGE_KINDS:
            if record.get("from_stage") and record["from_stage"] != record["stage"]:
                self.transitions[f"{record['from_stage']} -> {record['stage']}"] += 1
            position = (record["at"], order)
            current = self.final.get(record["journey"])
            if current is None or position > current[0]:
                self.final[record["journey"]] = (position, record["stage"], kind == LogKind.CLOSED)

    def _signal(self, record: dict) -> None:
        if record.get("unmapped"):
            self.unmapped[record["event_type"]] += 1
        if self.truth is not None and record["event_id"] in self.truth:
            expected = self.truth[record["event_id"]]
            hit = record["stage"] == expected
            self.compared += 1
            self.matched += hit
            tally = self.per_stage.setdefault(expected, [0, 0])
            tally[0] += 1
            tally[1] += hit


def summarize(events_in: int, journey_records: Iterable[dict], decisions: Iterable[dict],
              dead_letters: Iterable[dict], truth: dict[str, str] | None = None) -> dict:
    log = _LogTally(truth)
    for order, record in enumerate(journey_records):
        log.add(order, record)
    decision_points = list(decisions)  # the decision log (every point), or only the actions taken
    acted = [d for d in decision_points if d.get("acted", True)]
    dead_list = list(dead_letters)
    summary = _counts(events_in, log, dead_list) | _journeys(log) | _decisions(decision_points) | {
        "outcomes": {"matched": sum(1 for o in log.outcomes if o.get("matched")),
                     "unmatched": sum(1 for o in log.outcomes if not o.get("matched")),
                     "by_type": dict(Counter(o["event_type"] for o in log.outcomes).most_common())},
        "feature_lookups": _feature_lookups(acted),
        "model_usage": _model_usage(acted),
        # Counts only: a type the ontology does not know is whatever a producer sent, and a
        # summary is read by people (the journey log marks each such signal "unmapped").
        "unmapped_signals": {"signals": sum(log.unmapped.values()), "types": len(log.unmapped)},
        "stage_accuracy": round(log.matched / log.compared, 4) if log.compared else None,
        "stage_accuracy_by_true_stage": {stage: round(hit / total, 4) for stage, (total, hit) in sorted(log.per_stage.items())},
        "signals_with_truth": log.compared,
        "consistency": consistency(len(acted), log.stale),
    }
    if log.canary_verdicts:
        summary["canaries"] = canary_verdicts(log.canary_verdicts)
    answered = [{"decision_id": o["decision_id"], "outcome": o["event_type"]} for o in log.outcomes if o.get("matched")]
    if answered:
        summary["uplift"] = uplift_table([d for d in decision_points if d.get("action")], answered)
    latencies = [d["latency_ms"] for d in acted if d.get("latency_ms") is not None]
    if latencies:
        summary["decision_latency_ms"] = {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
                                          "max": max(latencies)}
    return summary


def consistency(acted: int, stale: Counter) -> dict:
    """Cross-channel consistency (journeys.consistency): the share of acted decisions still valid
    given every channel's signals up to the moment they went out, and the stale ones by channel pair
    ("store -> email": a store signal made an e-mail moot)."""
    total = sum(stale.values())
    return {"acted": acted, "stale": total, "share": round(1 - total / acted, 4) if acted else None,
            "stale_by_channel_pair": {f"{signal} -> {decision}": count
                                      for (signal, decision), count in sorted(stale.items(), key=lambda p: (-p[1], p[0]))}}


def _counts(events_in: int, log: _LogTally, dead_letters: list[dict]) -> dict:
    accepted = sum(log.kinds[kind] for kind in ACCEPTED_KINDS)
    rejected, duplicates = len(dead_letters), log.kinds[LogKind.DUPLICATE]
    return {"events_in": events_in, "accepted": accepted, "rejected": rejected, "duplicates": duplicates,
            "late": log.kinds[LogKind.LATE], "balanced": events_in == accepted + rejected + duplicates,
            "rejected_by_reason": dict(Counter(record["reason"] for record in dead_letters).most_common())}


def _journeys(log: _LogTally) -> dict:
    visitors_only = log.keys[True] - log.stitched
    live_journeys = {key: value for key, value in log.final.items() if key not in log.stitched}
    stage_distribution = Counter(stage for _, stage, closed in live_journeys.values())
    return {
        "customers": len(log.keys[False]), "anonymous_visitors": len(visitors_only),
        "stitched_visitors": len(log.stitched), "journeys": len(log.keys[False]) + len(visitors_only),
        "closed_journeys": sum(1 for _, _, closed in live_journeys.values() if closed),
        "sessions": log.kinds[LogKind.SESSION], "sessions_open_at_end": log.sessions_open,
        "stage_distribution": dict(stage_distribution.most_common()),
        "top_transitions": dict(log.transitions.most_common(10)),
    }


def _decisions(decision_points: list[dict]) -> dict:
    decision_list = [d for d in decision_points if d.get("acted", True)]
    return {
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
        "rollout_arms": rollout_arms(decision_points),
        "model_arms": rollout_arms(decision_points, MODEL_ARM),
    }


def rollout_arms(decision_points: list[dict], by: str = POLICY_ARM) -> dict:
    """Per arm of the policy canary (or by=MODEL_ARM of a model canary; docs/rollouts.md), its
    decision points outside the control group, the share acted on, the share where the policy
    suppressed every candidate, and the policy versions, or the versions of the models that scored."""
    def versions(points: list[dict]) -> list[str]:
        if by == POLICY_ARM:
            return sorted({str(p.get("policy_version")) for p in points})
        return sorted({f"{m['model']} v{m['version']}" for p in points for m in p.get("models") or ()})

    return {arm: {"decision_points": len(points),
                  "acted_rate": round(sum(1 for p in points if p.get("acted", True)) / len(points), 4),
                  "suppressed_rate": round(sum(1 for p in points if not p.get("acted", True)) / len(points), 4),
                  f"{'policy' if by == POLICY_ARM else 'model'}_versions": versions(points)}
            for arm, points in sorted(arm_points(decision_points, by=by).items())}


def canary_verdicts(verdicts: list[dict]) -> list[dict]:
    """The job's last word on each canary it judged (journeys.rollback): the verdict, each gate's,
    whether the job stopped it, and every change of verdict before it."""
    found = []
    for canary in sorted({v["canary"] for v in verdicts}):
        mine = sorted((v for v in verdicts if v["canary"] == canary), key=lambda v: (v["at"], bool(v.get("final"))))
        last = mine[-1]
        found.append({"canary": canary, "gates": last["gates"], "verdict": last["verdict"], "at": last["at"],
                      "stopped": last["stopped"], "decision_points": last["decision_points"],
                      "gate_verdicts": {v["figure"]: v["verdict"] for v in last["verdicts"]},
                      "not_judged": last["not_judged"], "drifting": last.get("drifting") or [],
                      "changes": [[v["at"], v["verdict"]] for v in mine if not v.get("final")]})
    return found


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


class _Rows(list):
    def row(self, label: str, value) -> None:
        self.append(f"  {label:<42} {value}")


def format_summary(summary: dict) -> str:
    rows = _Rows(["Journey job summary"])
    for section in (_count_rows, _journey_rows, _decision_rows, _outcome_rows, _model_rows, _accuracy_rows):
        section(rows, summary)
    return "\n".join(rows)


def _count_rows(rows: _Rows, summary: dict) -> None:
    ok = "yes" if summary["balanced"] else "NO: records were lost or double-counted"
    rows.row("events in", f"{summary['events_in']:,}")
    rows.row("  accepted", f"{summary['accepted']:,}  (late, not applied: {summary['late']:,})")
    rows.row("  rejected", f"{summary['rejected']:,}")
    rows.row("  duplicates", f"{summary['duplicates']:,}")
    rows.row("  in = accepted+rejected+duplicates", ok)
    for reason, count in summary["rejected_by_reason"].items():
        rows.row(f"    rejected: {reason}", f"{count:,}")


def _journey_rows(rows: _Rows, summary: dict) -> None:
    rows.row("customers (identified)", f"{summary['customers']:,}")
    rows.row("visitors stitched to customers", f"{summary['stitched_visitors']:,}")
    rows.row("visitors never identified", f"{summary['anonymous_visitors']:,}")
    rows.row("sessions", f"{summary['sessions']:,}  (open at end of input: {summary['sessions_open_at_end']:,})")
    rows.append("  stage distribution (journeys by current stage)")
    for stage, count in summary["stage_distribution"].items():
        rows.row(f"    {stage}", f"{count:,}")
    rows.append("  top stage transitions")
    for transition, count in summary["top_transitions"].items():
        rows.row(f"    {transition}", f"{count:,}")


def _decision_rows(rows: _Rows, summary: dict) -> None:
    rows.row("decisions (actions taken)", f"{summary['decisions']:,}  (of {summary.get('decision_points', 0):,} decision points)")
    for action, count in summary["decisions_by_action"].items():
        rows.row(f"    {action}", f"{count:,}")
    if summary.get("decisions_by_agent"):
        rows.row("  by agent", ", ".join(f"{k}: {v:,}" for k, v in summary["decisions_by_agent"].items()))
    held = summary.get("held_back") or {}
    if held:
        rows.row("  no action: control group", f"{held['control_group']:,}")
        rows.row("  no action: every candidate suppressed", f"{held['every_candidate_suppressed']:,}")
    if summary.get("suppressions_by_rule"):
        rows.append("  candidates suppressed, by policy rule")
        for rule, count in summary["suppressions_by_rule"].items():
            rows.row(f"    {rule}", f"{count:,}")
    if summary.get("decision_points"):
        rows.row("  fast path (latency budget, rules alone)", f"{summary['fast_path']:,} "
                 f"({summary['fast_path'] / summary['decision_points']:.2%} of decision points)")
        rows.row("  policy versions used", ", ".join(f"v{k}: {v:,}" for k, v in summary["policy_versions"].items()))
    for kind, key, versions in (("rollout arm", "rollout_arms", "policy_versions"), ("model arm", "model_arms", "model_versions")):
        arms = summary.get(key) or {}
        if "canary" not in arms:
            continue
        for arm, figures in arms.items():
            named = ", ".join(("v" if kind == "rollout arm" else "") + v for v in figures[versions])
            rows.row(f"  {kind} {arm} ({named})",
                     f"{figures['decision_points']:,} decision points, acted {figures['acted_rate']:.1%}, "
                     f"all suppressed {figures['suppressed_rate']:.1%}")
    for canary in summary.get("canaries") or ():
        _canary_rows(rows, canary)
    _consistency_rows(rows, summary.get("consistency") or {})


def _canary_rows(rows: _Rows, canary: dict) -> None:
    said = "the job stopped it" if canary["stopped"] else "when the input ended"
    rows.row(f"  canary: {canary['canary']}, gates {canary['gates']}",
             f"{canary['verdict'].upper()}, {said} (judged to {iso(canary['at'])})")
    rows.row("    gates", ", ".join(f"{figure} {verdict}" for figure, verdict in canary["gate_verdicts"].items()))
    if canary["drifting"]:
        rows.row("    drift above the threshold", ", ".join(canary["drifting"]))
    if canary["not_judged"]:
        rows.row("    not judged in the job (needs outcomes)",
                 f"{', '.join(canary['not_judged'])}: journeys canary status --journeys")


def _consistency_rows(rows: _Rows, figures: dict) -> None:
    if not figures.get("acted"):
        return
    rows.row("  cross-channel consistency", f"{figures['share']:.2%}  (stale when sent: {figures['stale']:,})")
    for pair, count in list(figures["stale_by_channel_pair"].items())[:5]:
        rows.row(f"    stale: {pair}", f"{count:,}")


def _outcome_rows(rows: _Rows, summary: dict) -> None:
    outcomes = summary.get("outcomes") or {}
    if outcomes.get("matched") or outcomes.get("unmatched"):
        rows.row("outcome signals joined to decisions", f"{outcomes['matched']:,}  (no decision found: {outcomes['unmatched']:,})")
    if summary.get("uplift"):
        rows.append("  outcome rates and uplift against the control group, per action")
        rows.append(format_uplift(summary["uplift"]))


def _model_rows(rows: _Rows, summary: dict) -> None:
    lookups = summary.get("feature_lookups") or {}
    if lookups.get("hit") or lookups.get("missed") or lookups.get("fell_back"):
        rows.row("profile feature lookups (decisions)", f"hit {lookups['hit']:,}, missed {lookups['missed']:,}, "
                                                        f"fell back {lookups['fell_back']:,}")
    usage = summary.get("model_usage") or {}
    if usage.get("scored_by") or usage.get("shadow"):
        rows.row("decisions scored by", ", ".join(f"{k}: {v:,}" for k, v in usage["scored_by"].items()) or "none")
        if usage["shadow"]:
            rows.row("  shadow-scored by (never acted)", ", ".join(f"{k}: {v:,}" for k, v in usage["shadow"].items()))
        rows.row("  mapped to another stage by the model", f"{usage['stage_remapped']:,}")
        rows.row("  on rules alone", f"{usage['rules_alone']:,}")


def _accuracy_rows(rows: _Rows, summary: dict) -> None:
    unmapped = summary["unmapped_signals"]
    if unmapped["signals"]:
        rows.row("signals the ontology does not map", f"{unmapped['signals']:,} of {unmapped['types']:,} types "
                                                      "(marked unmapped in the journey log)")
    if summary["stage_accuracy"] is not None:
        rows.row("stage accuracy vs ground truth", f"{summary['stage_accuracy']:.1%} of {summary['signals_with_truth']:,} signals")
        for stage, share in summary["stage_accuracy_by_true_stage"].items():
            rows.row(f"    truly {stage}", f"{share:.1%}")
    latency = summary.get("decision_latency_ms")
    if latency:
        rows.row("event-to-decision latency", f"p50 {latency['p50']} ms, p99 {latency['p99']} ms")
    runtime = summary.get("runtime")
    if runtime:
        rows.row("job runtime", f"{runtime['job_seconds']:.1f} s ({runtime['events_per_second']:,.0f} events/s); "
                                f"wall {runtime['wall_seconds']:.1f} s")
