"""`journeys canary status` and `promote`: a canary's arms, their figures and the gates' verdicts
(journeys.gates), from a run's decision log and journey log; and its promotion only when every
gate passed and no drift alert held it in the job (journeys.rollback). A policy canary is
promoted by publishing its version to the job's control stream; a model canary (`--model NAME`,
the registry alias canary) by pointing the alias champion at its version and taking the alias
canary away."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def add_commands(commands) -> None:
    canary = commands.add_parser("canary", help="a policy or model canary: its arms, figures and gate verdicts; "
                                                "its promotion")
    canary_commands = canary.add_subparsers(dest="canary_command", required=True)

    def command(name: str, help: str):
        parser = canary_commands.add_parser(name, help=help)
        parser.add_argument("--decision-log", required=True, help="the running job's decision log")
        parser.add_argument("--journeys", help="its journey log, for the outcomes (conversion_rate)")
        parser.add_argument("--gates", help="a gate file (default: the packaged retail gates, journeys/conf/gates)")
        parser.add_argument("--model", metavar="NAME", help="judge the canary of this registered model (its decisions' "
                                                            "model_arm), not the policy canary")
        return parser

    status = command("status", "the canary's arms, their figures and each gate's verdict")
    status.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    status.set_defaults(run=_status)
    promote = command("promote", "make the canary the policy in force (publish FILE --to DIR) or, with --model, "
                                 "the model's champion, when every gate passed")
    promote.add_argument("file", nargs="?", help="the canary's policy file (not with --model)")
    promote.add_argument("--to", metavar="DIR", help="the job's --policy-updates directory (not with --model)")
    promote.add_argument("--tracking-uri", help="with --model: the MLflow registry (default: $MLFLOW_TRACKING_URI, "
                                                "else sqlite under var/mlflow)")
    promote.add_argument("--force", action="store_true", help="promote although a gate failed, is pending or is held")
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

    if (args.model is None) == (args.file is None) or (args.file is not None) != (args.to is not None):
        print("journeys: promote a policy canary (FILE --to DIR) or a model canary (--model NAME)", file=sys.stderr)
        return 2
    report = _report(args)
    print(_format(report))
    version = _canary_version(args, report)
    if version is None:
        return 1
    if report["verdict"] != PASS and not args.force:
        print(f"journeys: the gates say {report['verdict']}: not promoted (--force promotes anyway)", file=sys.stderr)
        return 1
    forced = " (forced)" if report["verdict"] != PASS else ""
    if args.model is None:
        from pipelines.tools.policy_publish import publish

        print(f"promoted version {version}{forced}: {args.file} -> {publish(args.file, args.to)}")
        return 0
    return _promote_model(args, version, forced)


def _canary_version(args, report: dict) -> str | None:
    """The version to promote: the policy file's, or the model's canary in the log; None (said) when it is not there."""
    if args.model is not None:
        if len(report["canary_versions"]) == 1:
            return report["canary_versions"][0]
        print(f"journeys: the log has {len(report['canary_versions']) or 'no'} canary versions of {args.model}: "
              f"not promoted", file=sys.stderr)
        return None
    from pipelines.config import read_policy

    version = read_policy(args.file).version
    if version in report["canary_versions"]:
        return version
    print(f"journeys: {args.file} is version {version}, and the canary in the log is "
          f"{', '.join(report['canary_versions']) or 'not there'}: not promoted", file=sys.stderr)
    return None


def _promote_model(args, version: str, forced: str) -> int:
    from journeys.scoring import CHAMPION
    from models.registry import PromotionRefused, client_for, promote, stop_canary, tracking_uri

    client = client_for(tracking_uri(args.tracking_uri))
    try:
        done = promote(client, args.model, version, CHAMPION, force=args.force)
    except PromotionRefused as refused:
        print(f"journeys: {refused}", file=sys.stderr)
        return 1
    removed = stop_canary(client, args.model, version)
    print(f"promoted {args.model} version {version}{forced}: {args.model}@champion -> {version} (was {done.previous})"
          + (f"; {args.model}@canary removed" if removed else f"; {args.model}@canary already points elsewhere: kept"))
    return 0


def _report(args) -> dict:
    from journeys.gates import FAIL, PASS, arm_points, judge, loads_gates, overall, packaged_gates
    from journeys.outputs import LogKind
    from journeys.rollback import HELD
    from pipelines.reports.summary import read_records

    if not Path(args.decision_log).exists():
        raise FileNotFoundError(f"{args.decision_log}: no decision log there")
    gates = loads_gates(Path(args.gates).read_text(), args.gates) if args.gates else packaged_gates()
    not_judged, job_verdicts, converted = [], None, set()
    if args.journeys:
        journey_log = list(read_records(args.journeys))
        converted = {r["decision_id"] for r in journey_log
                     if r["kind"] == LogKind.OUTCOME and r.get("matched") and r.get("event_type") == "converted"}
        job_verdicts = [r for r in journey_log if r["kind"] == LogKind.CANARY_VERDICT]
    else:  # no outcomes to judge conversions by: that gate says nothing, rather than 0% against 0%
        gates, not_judged = gates.without_outcomes()
    points = read_records(args.decision_log)
    arms = _model_arm_points(list(points), args.model, converted) if args.model else arm_points(points, converted)
    champion, canary = arms.get("champion", []), arms.get("canary", [])
    verdicts = judge(gates, champion, canary)
    versions = sorted({_version_of(p, args.model) for p in canary} - {None})
    job = _job_verdict(job_verdicts or [], args.model, versions)
    verdict = overall(verdicts)
    if job is not None and job.get("stopped"):
        verdict = FAIL  # the job stopped it on the figures it had then
    elif job is not None and job["verdict"] == HELD and verdict == PASS:
        verdict = HELD
    return {"gates": f"{gates.name} v{gates.version}", "min_decision_points": gates.min_decision_points,
            "canary_of": f"model {args.model}" if args.model else "policy",
            "arms": {arm: {"decision_points": len(points),
                           "versions": sorted({_version_of(p, args.model) for p in points} - {None})}
                     for arm, points in (("champion", champion), ("canary", canary))},
            "canary_versions": versions, "verdicts": [v.to_dict() for v in verdicts], "verdict": verdict,
            "job": None if job is None else {key: job.get(key) for key in ("verdict", "at", "stopped", "drifting")},
            "job_read": job_verdicts is not None, "not_judged": not_judged}


def _model_arm_points(points: list[dict], model: str, converted: set[str]) -> dict[str, list[dict]]:
    """The points this model scored, by arm, as the job's judge counts them (journeys.rollback): the
    canary versions are those that scored in a champion's place, never a champion's."""
    from journeys.rollback import MODEL, Canary, tallies

    def versions(canary: bool) -> set[str]:
        return {v for p in points if (p.get("model_arm") == "canary") == canary
                for v in [_version_of(p, model)] if v is not None}

    canaries = [Canary(MODEL, version, model) for version in sorted(versions(True) - versions(False))]
    arms: dict[str, list[dict]] = {}
    for point in points:
        found = tallies(point, canaries)
        if found:
            arms.setdefault(found[0]["arm"], []).append(point | {"converted": point["decision_id"] in converted})
    return arms


def _version_of(point: dict, model: str | None) -> str | None:
    """The version that decided a point: its policy's, or the named model's that scored it."""
    if model is None:
        return str(point.get("policy_version"))
    return next((str(m["version"]) for m in point.get("models") or () if m["model"] == model), None)


def _job_verdict(job_verdicts: list[dict], model: str | None, versions: list[str]) -> dict | None:
    """The job's judge's last word on this canary (journeys.rollback), if the journey log has one."""
    from journeys.rollback import MODEL, POLICY, Canary
    from pipelines.reports.summary import canary_verdicts

    ids = {(Canary(POLICY, v) if model is None else Canary(MODEL, v, model)).id for v in versions}
    return next((last for last in canary_verdicts(job_verdicts) if last["canary"] in ids), None)


def _format(report: dict) -> str:
    arms = report["arms"]
    against = "the policy in force" if report["canary_of"] == "policy" else f"its champion ({report['canary_of']})"
    rows = [f"Canary against {against} (gates {report['gates']}, at least "
            f"{report['min_decision_points']:,} decision points an arm)"]
    for arm, figures in arms.items():
        rows.append(f"  {arm:<10} {', '.join('v' + v for v in figures['versions']) or '-':<10}"
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
    job = report["job"]
    if job is not None and job.get("stopped"):
        rows.append("  the job's judge stopped this canary: a gate failed on the figures it had then")
    elif job is not None and job["verdict"] == "held":
        rows.append(f"  held: the job's judge saw drift above the threshold in {', '.join(job['drifting'] or ['?'])}")
    elif not report["job_read"]:
        rows.append("  the job's own verdicts (a stop, a hold for drift) are read with --journeys")
    rows.append(f"  verdict: {report['verdict'].upper()}")
    return "\n".join(rows)
