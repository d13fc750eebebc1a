"""`journeys canary status` and `promote`: a policy canary's arms, their figures and the gates'
verdicts (journeys.gates), from a run's decision log and journey log; and its promotion, which
publishes the canary's version as the policy in force only when every gate passed and no drift
alert held it in the job (journeys.rollback)."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def add_commands(commands) -> None:
    canary = commands.add_parser("canary", help="a policy canary: its arms, figures and gate verdicts; its promotion")
    canary_commands = canary.add_subparsers(dest="canary_command", required=True)

    def command(name: str, help: str):
        parser = canary_commands.add_parser(name, help=help)
        parser.add_argument("--decision-log", required=True, help="the running job's decision log")
        parser.add_argument("--journeys", help="its journey log, for the outcomes (conversion_rate)")
        parser.add_argument("--gates", help="a gate file (default: the packaged retail gates, journeys/conf/gates)")
        return parser

    status = command("status", "the canary's arms, their figures and each gate's verdict")
    status.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    status.set_defaults(run=_status)
    promote = command("promote", "publish the canary's version as the policy in force, when every gate passed")
    promote.add_argument("file", help="the canary's policy file")
    promote.add_argument("--to", required=True, metavar="DIR", help="the job's --policy-updates directory")
    promote.add_argument("--force", action="store_true", help="promote although a gate failed or is pending")
    promote.set_defaults(run=_promote)


def _status(args) -> int:
    from journeys.gates import FAIL

    report = _report(args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(_format(report))
    return 1 if report["verdict"] == FAIL else 0


def _promote(args) -> int:
    from journeys.gates import PASS
    from pipelines.config import read_policy
    from pipelines.tools.policy_publish import publish

    report = _report(args)
    print(_format(report))
    version = read_policy(args.file).version
    if version not in report["canary_versions"]:
        print(f"journeys: {args.file} is version {version}, and the canary in the log is "
              f"{', '.join(report['canary_versions']) or 'not there'}: not promoted", file=sys.stderr)
        return 1
    if report["verdict"] != PASS and not args.force:
        print(f"journeys: the gates say {report['verdict']}: not promoted (--force promotes anyway)", file=sys.stderr)
        return 1
    written = publish(args.file, args.to)
    print(f"promoted version {version}{' (forced)' if report['verdict'] != PASS else ''}: {args.file} -> {written}")
    return 0


def _report(args) -> dict:
    from journeys.gates import PASS, arm_points, judge, loads_gates, overall, packaged_gates
    from journeys.outputs import LogKind
    from journeys.rollback import HELD
    from pipelines.reports.summary import read_records

    if not Path(args.decision_log).exists():
        raise FileNotFoundError(f"{args.decision_log}: no decision log there")
    gates = loads_gates(Path(args.gates).read_text(), args.gates) if args.gates else packaged_gates()
    not_judged, job_verdicts = [], []
    if args.journeys:
        journey_log = list(read_records(args.journeys))
        converted = {r["decision_id"] for r in journey_log
                     if r["kind"] == LogKind.OUTCOME and r.get("matched") and r.get("event_type") == "converted"}
        job_verdicts = [r for r in journey_log if r["kind"] == LogKind.CANARY_VERDICT]
    else:  # no outcomes to judge conversions by: that gate says nothing, rather than 0% against 0%
        gates, not_judged = gates.without_outcomes()
    arms = arm_points(read_records(args.decision_log), converted if args.journeys else set())
    champion, canary = arms.get("champion", []), arms.get("canary", [])
    verdicts = judge(gates, champion, canary)
    versions = sorted({str(p.get("policy_version")) for p in canary})
    verdict, held_by = overall(verdicts), _drifting(job_verdicts, versions)
    if verdict == PASS and held_by:
        verdict = HELD
    return {"gates": f"{gates.name} v{gates.version}", "min_decision_points": gates.min_decision_points,
            "arms": {arm: {"decision_points": len(points),
                           "policy_versions": sorted({str(p.get("policy_version")) for p in points})}
                     for arm, points in (("champion", champion), ("canary", canary))},
            "canary_versions": versions, "verdicts": [v.to_dict() for v in verdicts], "verdict": verdict,
            "held_by_drift": held_by, "not_judged": not_judged}


def _drifting(job_verdicts: list[dict], versions: list[str]) -> list[str]:
    """What drifted when the job last judged this canary, if its judge held it (journeys.rollback)."""
    from journeys.rollback import HELD

    mine = [v for v in job_verdicts if v["canary_version"] in versions]
    if not mine:
        return []
    last = max(mine, key=lambda v: (v["at"], bool(v.get("final"))))
    return (last.get("drifting") or []) if last["verdict"] == HELD else []


def _format(report: dict) -> str:
    arms = report["arms"]
    rows = [f"Canary against the policy in force (gates {report['gates']}, at least "
            f"{report['min_decision_points']:,} decision points an arm)"]
    for arm, figures in arms.items():
        rows.append(f"  {arm:<10} {', '.join('v' + v for v in figures['policy_versions']) or '-':<10}"
                    f"{figures['decision_points']:>9,} decision points")
    for verdict in report["verdicts"]:
        (mine, n), (theirs, m) = verdict["champion"], verdict["canary"]
        rate = lambda k, total: f"{k / total:.1%}" if total else "-"  # noqa: E731
        difference = verdict["difference"]
        interval = f"[{difference['low']:+.1%}, {difference['high']:+.1%}]" if difference else "-"
        rows.append(f"  {verdict['figure']:<22}{rate(mine, n):>8} {rate(theirs, m):>8}  {interval:<18}"
                    f"{verdict['worse']} is worse, tolerance {verdict['tolerance']:.0%}: {verdict['verdict'].upper()}")
    if report["not_judged"]:
        rows.append(f"  not judged without the journey log's outcomes (--journeys): {', '.join(report['not_judged'])}")
    if report["held_by_drift"]:
        rows.append(f"  held: the job's judge saw drift above the threshold in {', '.join(report['held_by_drift'])}")
    rows.append(f"  verdict: {report['verdict'].upper()}")
    return "\n".join(rows)
