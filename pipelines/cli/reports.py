"""`journeys map`, `serve`, `explain` and `summary`: what a run did, for people."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def add_commands(commands) -> None:
    journey_map = commands.add_parser("map", help="write a run's journey map as one self-contained HTML page "
                                      "(works offline)")
    journey_map.add_argument("--journeys", required=True, help="the journey log (a file or directory)")
    journey_map.add_argument("--decisions", required=True, help="the decision log (or the decisions)")
    journey_map.add_argument("--out", required=True, help="the HTML file to write")
    journey_map.add_argument("--ontology", help="ontology YAML, for the stage order (default: the packaged retail one)")
    journey_map.set_defaults(run=_map)

    serve = commands.add_parser("serve", help="serve the journey map on loopback, rebuilt as the running job writes")
    serve.add_argument("--journeys", required=True, help="the job's journey log directory")
    serve.add_argument("--decisions", required=True, help="the job's decision log (or decisions) directory")
    serve.add_argument("--port", type=int, default=8050)
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (loopback by default)")
    serve.add_argument("--refresh", type=int, default=3, help="seconds between the page's checks for new output (it reloads when there is some)")
    serve.add_argument("--ontology", help="ontology YAML, for the stage order (default: the packaged retail one)")
    serve.set_defaults(run=_serve)

    explain = commands.add_parser("explain", help="one customer's journey path and every decision with its "
                                                   "justification, in time order")
    explain.add_argument("customer_id")
    explain.add_argument("--log", required=True, help="the decision log: the job's decisions (a file or directory)")
    explain.add_argument("--journeys", help="the journey log, for the path (default: journeys/ beside the log)")
    explain.add_argument("--every-signal", action="store_true", help="also list signals that moved no stage")
    explain.set_defaults(run=_explain)

    summary = commands.add_parser("summary", help="summarize a finished run from its input and outputs")
    summary.add_argument("--signals", required=True)
    summary.add_argument("--journeys", required=True)
    summary.add_argument("--decisions", required=True)
    summary.add_argument("--decision-log", help="the decision log, for suppressions, the control group and uplift")
    summary.add_argument("--dead-letter", required=True)
    summary.add_argument("--out")
    summary.set_defaults(run=_summary)

    audit = commands.add_parser("audit", help="check a run's decisions against the guardrails from its input: "
                                              "quiet hours in the customer's zone, withdrawn consent, one arm per person")
    audit.add_argument("--signals", required=True, help="the run's input (JSON lines, a file or directory)")
    audit.add_argument("--decision-log", required=True, help="the run's decision log")
    audit.add_argument("--profiles", help="the customer profiles (parquet), for zones and consent no signal gave")
    audit.add_argument("--journeys", help="the run's journey log: cart actions that a purchase arriving after them "
                                          "made stale are counted apart")
    audit.add_argument("--policy", help="the policy the run decided with (default: the one the job config names)")
    audit.add_argument("--ontology", help="ontology YAML (default: the one the job config names)")
    audit.add_argument("--out", help="also write the findings as JSON here")
    audit.set_defaults(run=_audit)

    drift = commands.add_parser("drift", help="drift of a run's decisions from the training data of the model "
                                              "version that scored them: PSI by feature, as a table and a page")
    drift.add_argument("--log", required=True, help="the run's decision log")
    drift.add_argument("--journeys", help="the run's journey log, for the signal mix (event types and channels)")
    drift.add_argument("--model", required=True, metavar="NAME", help="the registered model")
    drift.add_argument("--version", help="the version (default: the one that scored most of the log's decisions)")
    drift.add_argument("--tracking-uri", help="MLflow tracking and registry URI (default: $MLFLOW_TRACKING_URI, "
                                              "else sqlite under var/mlflow)")
    drift.add_argument("--threshold", type=float, help="the PSI above which a feature has drifted (default: the job "
                                                       "config's models.drift_threshold)")
    drift.add_argument("--out", help="write the report as a page here (it works offline)")
    drift.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    drift.set_defaults(run=_drift)


def _map(args) -> int:
    from pipelines.reports.journey_map import build_map
    from pipelines.reports.map_page import render
    from pipelines.config import read_ontology
    from pipelines.reports.summary import read_records

    for path in (args.journeys, args.decisions):
        if not Path(path).exists():
            print(f"journeys: {path}: no such file or directory", file=sys.stderr)
            return 1
    stages = read_ontology(args.ontology).stage_ids
    built = build_map(read_records(args.journeys), read_records(args.decisions), stages)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(render(built))
    print(f"journey map of {len(built.timelines):,} journeys -> {args.out}")
    return 0


def _serve(args) -> int:
    from pipelines.reports.map_server import MapServer
    from pipelines.config import read_ontology

    server = MapServer(args.journeys, args.decisions, read_ontology(args.ontology).stage_ids, args.host, args.port,
                       args.refresh)
    print(f"journey map on http://{args.host}:{server.server_address[1]}/ (checks for new output every {args.refresh} s; Ctrl-C stops)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _explain(args) -> int:
    from pipelines.reports.explain import explain
    from pipelines.reports.summary import read_records

    log = Path(args.log)
    if not log.exists():
        raise FileNotFoundError(f"{log}: no decision log there")
    journeys = Path(args.journeys) if args.journeys else log.parent / "journeys"
    text = explain(args.customer_id, read_records(log), read_records(journeys) if journeys.exists() else (),
                   args.every_signal)
    print(text)
    return 0 if not text.startswith("no journey") else 1


def _summary(args) -> int:
    from pipelines.tools.files import scan_signals
    from pipelines.reports.summary import format_summary, read_records, read_truth, summarize

    scan = scan_signals(args.signals)
    summary = summarize(scan.lines, read_records(args.journeys), read_records(args.decision_log or args.decisions),
                        read_records(args.dead_letter), read_truth(args.signals))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary))
    return 0 if summary["balanced"] else 1


def _drift(args) -> int:
    from journeys.drift import DriftProfile
    from models.registry import drift_profile_of, tracking_uri
    from pipelines.config import read_settings
    from pipelines.mlflow.settings import drift_threshold_of
    from pipelines.reports.drift import drift_report, format_drift, render_drift, scored_versions
    from pipelines.reports.summary import read_records

    if not Path(args.log).exists():
        raise FileNotFoundError(f"{args.log}: no decision log there")
    decisions = list(read_records(args.log))
    version = args.version or next(iter(v for v, _ in scored_versions(decisions, args.model).most_common(1)), None)
    if version is None:
        print(f"journeys: no decision in {args.log} was scored by {args.model}", file=sys.stderr)
        return 1
    profile = drift_profile_of(tracking_uri(args.tracking_uri), args.model, version)
    if profile is None:
        print(f"journeys: {args.model} version {version} was logged without a drift profile (train it again)",
              file=sys.stderr)
        return 1
    threshold = args.threshold or drift_threshold_of(read_settings().models)
    report = drift_report(decisions, DriftProfile.from_dict(profile), args.model, version, threshold,
                          read_records(args.journeys) if args.journeys else ())
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(render_drift(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(format_drift(report))
    return 0


def _audit(args) -> int:
    from journeys.outputs import LogKind
    from pipelines.config import read_ontology, read_policy, read_settings, settings_policy
    from pipelines.reports.audit import audit, decode_signals, format_audit
    from pipelines.reports.summary import read_records
    from pipelines.tools.files import read_lines
    from pipelines.tools.simulate import read_profiles

    if not Path(args.decision_log).exists():
        raise FileNotFoundError(f"{args.decision_log}: no decision log there")
    policy = read_policy(args.policy) if args.policy else settings_policy(read_settings())
    stale = frozenset(r["decision_id"] for r in read_records(args.journeys) if r["kind"] == LogKind.STALE_DECISION) \
        if args.journeys else frozenset()
    found = audit(decode_signals(read_lines(args.signals)), read_records(args.decision_log), policy,
                  read_ontology(args.ontology), read_profiles(args.profiles) if args.profiles else (), stale)
    if args.out:
        Path(args.out).write_text(json.dumps(found.to_dict(), indent=2) + "\n")
    print(format_audit(found))
    return 0 if found.clean else 1
