"""Outcome rates per action, and the uplift against the control group, from decision records and
the outcome signals joined to them by decision_id.

A control-group decision records the action the policy would have taken (`action`) and that it
was held back (`control: true`); its customer received nothing. The uplift of an action is the
rate of an outcome (converted, by default) among the customers who received it, minus the rate
among control customers for whom the same action was held back: the same kind of moment, with
and without the action.
"""
from __future__ import annotations

from typing import Iterable

from journeys.outcomes import OUTCOMES
from journeys.stats import difference_interval

NOT_CLEAR = "~"  # marks an uplift whose 95% interval includes zero

def uplift_table(decisions: Iterable[dict], outcomes: Iterable[dict], goal: str = "converted") -> dict:
    reached: dict[str, set[str]] = {}
    for outcome in outcomes:
        reached.setdefault(outcome["decision_id"], set()).add(outcome["outcome"])
    rows: dict[str, dict] = {}
    for decision in decisions:
        row = rows.setdefault(decision["action"], {"treated": 0, "control": 0, "treated_goal": 0, "control_goal": 0,
                                                   "rates": {name: 0 for name in OUTCOMES}})
        got = reached.get(decision["decision_id"], set())
        side = "control" if decision.get("control") else "treated"
        row[side] += 1
        row[f"{side}_goal"] += goal in got
        if side == "treated":
            for name in got & set(OUTCOMES):
                row["rates"][name] += 1
    table = {}
    for action, row in sorted(rows.items()):
        treated_rate = row["treated_goal"] / row["treated"] if row["treated"] else None
        control_rate = row["control_goal"] / row["control"] if row["control"] else None
        table[action] = {
            "treated": row["treated"], "control": row["control"],
            "outcome_rates": {name: round(count / row["treated"], 4) if row["treated"] else None
                              for name, count in row["rates"].items()},
            f"{goal}_treated": None if treated_rate is None else round(treated_rate, 4),
            f"{goal}_control": None if control_rate is None else round(control_rate, 4),
            "uplift": None if treated_rate is None or control_rate is None else round(treated_rate - control_rate, 4),
            "uplift_interval": None if treated_rate is None or control_rate is None else difference_interval(
                row["treated_goal"], row["treated"], row["control_goal"], row["control"]).to_dict(),
        }
    return table


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def interval_text(row: dict) -> str:
    """The uplift's 95% interval, marked NOT_CLEAR when it includes zero."""
    interval = row.get("uplift_interval")
    if interval is None:
        return "-"
    mark = "" if interval["clear"] else f" {NOT_CLEAR}"
    return f"[{interval['low']:+.1%}, {interval['high']:+.1%}]{mark}"


def format_uplift(table: dict, goal: str = "converted") -> str:
    lines = [f"  {'action':<26}{'treated':>9}{'control':>9}{goal + ' (t)':>16}{goal + ' (c)':>16}{'uplift':>9}"
             f"  95% interval"]
    for action, row in table.items():
        lines.append(f"  {action:<26}{row['treated']:>9,}{row['control']:>9,}{percent(row[goal + '_treated']):>16}"
                     f"{percent(row[goal + '_control']):>16}{percent(row['uplift']):>9}  {interval_text(row)}")
    if any(row.get("uplift_interval") and not row["uplift_interval"]["clear"] for row in table.values()):
        lines.append(f"  {NOT_CLEAR} the interval includes zero: too few customers to tell this uplift from chance")
    return "\n".join(lines)
