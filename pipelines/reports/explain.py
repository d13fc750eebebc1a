"""`journeys explain`: one customer's journey path and every decision made for them, with its
justification, in time order, from a run's decision log and journey log.

The customer's anonymous visits stitched into the journey (stitch records) are followed too, so
the path starts where the customer first appeared, before they logged in.
"""
from __future__ import annotations

import textwrap
from typing import Iterable

from journeys.outputs import STAGE_ENTRY_KINDS, LogKind, enters_stage
from journeys.timeutil import iso


def explain(customer: str, decisions: Iterable[dict], journey_records: Iterable[dict] = (),
            every_signal: bool = False) -> str:
    records = list(journey_records)
    keys = {customer} | {r["anonymous_id"] for r in records if r["kind"] == LogKind.STITCH and r["journey"] == customer}
    events = []
    for order, record in enumerate(records):
        if record["journey"] not in keys:
            continue
        line = _journey_line(record, customer, every_signal)
        if line is not None:
            events.append((record["at"], 0, order, line))
    mine = [d for d in decisions if d["journey"] in keys]
    for order, decision in enumerate(sorted(mine, key=lambda d: (d["decided_at"], d["decision_id"]))):
        events.append((decision["decided_at"], 1, order, _decision_lines(decision)))
    if not events:
        return f"no journey or decision for {customer}"
    events.sort(key=lambda event: event[:3])
    visits = sorted(keys - {customer})
    header = f"Journey of {customer}" + (f" (with anonymous visits {', '.join(visits)})" if visits else "")
    body = [header, f"  {len(mine)} decisions"]
    body.extend(line for *_, line in events)
    return "\n".join(body)


def _journey_line(record: dict, customer: str, every_signal: bool) -> str | None:
    at = iso(record["at"])
    where = "" if record["journey"] == customer else f"  [as {record['journey']}]"
    kind = record["kind"]
    if kind == LogKind.STITCH:
        return f"{at}  identified: visitor {record['anonymous_id']} is {customer} ({record.get('stage')}){where}"
    if kind == LogKind.LATE:
        return f"{at}  late signal {record.get('event_id')}: logged, not applied{where}"
    if kind not in STAGE_ENTRY_KINDS:
        return None
    moved = enters_stage(record)
    if kind == LogKind.TRANSITION:
        return f"{at}  {record['from_stage']} -> {record['stage']} as time passed (rule {record.get('rule')}){where}"
    if moved:
        return (f"{at}  {record['from_stage']} -> {record['stage']} on {record.get('event_type')} by "
                f"{record.get('channel')} (rule {record.get('rule')}){where}")
    if every_signal:
        return f"{at}  {record.get('event_type')} by {record.get('channel')}, stays in {record.get('stage')}{where}"
    return None


def _decision_lines(decision: dict) -> str:
    models = ", ".join(f"{m['model']} v{m['version']} {m['prediction']} {m['score']:.2f}" for m in decision.get("models") or ())
    if decision.get("control"):
        what = f"none, control group (would have been {decision['action']} by {decision['channel']})"
    elif decision.get("acted", True):
        what = f"{decision['action']} by {decision['channel']}"
        what += f" from the {decision['agent']} agent" if decision.get("agent") else ""
    else:
        what = "none, every candidate held back by the policy"
    policy = f", policy v{decision['policy_version']}" if decision.get("policy_version") else ""
    fast = ", fast path" if decision.get("fast_path") else ""
    head = (f"{iso(decision['decided_at'])}  DECISION {what} "
            f"({decision['trigger']}, stage {decision['stage']}{policy}{fast}"
            + (f", mapped to {decision['mapped_stage']}" if decision.get("mapped_stage") not in (None, decision["stage"]) else "")
            + f") {decision['decision_id']}")
    lines = [head]
    if models:
        lines.append(f"      models: {models}")
    candidates = decision.get("candidates") or ()
    if len(candidates) > 1 or any(c["suppressed_by"] for c in candidates):
        lines.append("      candidates: " + "; ".join(
            f"{c['action']} by {c['channel']} ({c['agent']}) {c['priority']:.3g}"
            + (f" held back: {', '.join(c['suppressed_by'])}" if c["suppressed_by"] else "") for c in candidates))
    lines.extend(textwrap.wrap(decision["justification"], width=100, initial_indent="      why: ", subsequent_indent="           "))
    return "\n".join(lines)
