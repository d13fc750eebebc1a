"""The `journeys` command: simulate signals, import third-party clickstreams, convert Avro
archives, prepare feature-store data and training sets, replay archives with Apache Beam,
summarize a run."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipelines.tools.simulate import DEFAULT_START, SimulationSpec, write_simulation


def _simulate(args) -> int:
    spec = SimulationSpec(customers=args.customers, days=args.days, seed=args.seed, start=args.start,
                          malformed_rate=args.malformed_rate, duplicate_rate=args.duplicate_rate, late_rate=args.late_rate)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.profiles_out:
        Path(args.profiles_out).parent.mkdir(parents=True, exist_ok=True)
    count = write_simulation(spec, args.out, args.profiles_out)
    print(f"simulated {count:,} signal records for {args.customers:,} customers over {args.days} days -> {args.out}")
    if args.profiles_out:
        print(f"customer profiles (with event timestamps, for the feature store) -> {args.profiles_out}")
    return 0


def _simulate_outcomes(args) -> int:
    from pipelines.tools.files import read_lines
    from pipelines.tools.outcome_sim import Merged, OutcomeModel, merge_outcomes, outcomes_for
    from pipelines.reports.summary import read_records

    decisions = list(read_records(args.decision_log))
    if not decisions:
        print(f"journeys: no decisions in {args.decision_log}", file=sys.stderr)
        return 1
    outcomes = outcomes_for(decisions, OutcomeModel(), seed=args.seed)
    merged = Merged()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as sink:
        for raw in merge_outcomes(read_lines(args.signals), outcomes, args.until, merged):
            sink.write(raw + b"\n")
    print(f"{merged.outcomes:,} simulated outcome signals for {len(decisions):,} decision points, merged into "
          f"{merged.written:,} signal records -> {args.out}"
          + (f" ({merged.after_the_end:,} after the end of the input left out)" if merged.after_the_end else ""))
    return 0


def _outputs(args) -> tuple[Path, Path]:
    """The signals file to write and its dead-letter file (beside it unless given)."""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out, Path(args.dead_letter) if args.dead_letter else out.with_name(out.stem + ".dead-letter.jsonl")


def _import(args) -> int:
    from pipelines.tools.importer import Importer, load_mapping

    out, dead_letter = _outputs(args)
    result = Importer(load_mapping(args.mapping)).run(args.input, out, dead_letter)
    print(f"imported {result.rows:,} rows: {result.signals:,} signals -> {out}; "
          f"{result.dead_letters:,} rows to {dead_letter}")
    for reason, count in sorted(result.reasons.items(), key=lambda item: -item[1]):
        print(f"  {reason}: {count:,}")
    return 0


def _convert(args) -> int:
    from pipelines.tools.importer import convert_avro_archive

    out, dead_letter = _outputs(args)
    result = convert_avro_archive(args.input, out, dead_letter)
    print(f"converted {result.rows:,} Avro records: {result.signals:,} signals -> {out}; "
          f"{result.dead_letters:,} rejected -> {dead_letter}")
    return 0


def _features_init(args) -> int:
    from pipelines.feast.store import init_repo_data

    created = init_repo_data(args.repo)
    print("created " + ", ".join(str(p) for p in created) if created else f"{args.repo}: nothing to create")
    return 0


def _features_training_set(args) -> int:
    from pipelines.feast.store import training_set

    rows = training_set(args.repo, args.entities, args.out, args.service, args.feature_store_yaml)
    print(f"training set of {rows:,} rows with the features of {args.service} as of each row's timestamp -> {args.out}")
    return 0


def _features_push_offline(args) -> int:
    from pipelines.feast.store import push_offline

    pushed = push_offline(args.repo, args.rows, args.feature_store_yaml)
    print(f"pushed {pushed.rows:,} feature rows from {pushed.files:,} new file{'' if pushed.files == 1 else 's'} in {args.rows} "
          f"to the offline store of {args.repo}")
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="journeys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser("simulate", help="write simulated multi-channel signals as JSON lines")
    outcomes = commands.add_parser("simulate-outcomes", help="answer a run's decisions with simulated outcome signals "
                                   "(delivered, opened, clicked, converted, ...; likelihoods depend on the action) "
                                   "and merge them into its signals, for the feedback loop")
    outcomes.add_argument("--decision-log", required=True, help="the run's decision log (every decision point)")
    outcomes.add_argument("--signals", required=True, help="the run's signals")
    outcomes.add_argument("--out", required=True, help="the signals with the outcomes merged in")
    outcomes.add_argument("--until", type=int, help="leave out outcomes after this event time (ms); by default "
                                                   "the run's latest signal")
    outcomes.add_argument("--seed", type=int, default=7)
    outcomes.set_defaults(run=_simulate_outcomes)
    simulate.add_argument("--customers", type=int, default=2000)
    simulate.add_argument("--days", type=int, default=30)
    simulate.add_argument("--seed", type=int, default=7)
    simulate.add_argument("--start", default=DEFAULT_START, help="first day of the simulation, ISO-8601 (UTC)")
    simulate.add_argument("--malformed-rate", type=float, default=SimulationSpec.malformed_rate)
    simulate.add_argument("--duplicate-rate", type=float, default=SimulationSpec.duplicate_rate)
    simulate.add_argument("--late-rate", type=float, default=SimulationSpec.late_rate,
                          help="share of signals delivered hours late (beyond the watermark bound)")
    simulate.add_argument("--out", required=True)
    simulate.add_argument("--profiles-out", help="also write customer profiles as parquet, e.g. features/data/customer_profiles.parquet")
    simulate.set_defaults(run=_simulate)

    importer = commands.add_parser("import", help="turn a third-party clickstream (CSV, TSV, JSON lines) into signals")
    importer.add_argument("--mapping", required=True, help="mapping YAML (see README, 'Bring your own data')")
    importer.add_argument("--dead-letter", help="where rows that cannot be mapped go (default: OUT with .dead-letter.jsonl)")
    importer.add_argument("input", help="the clickstream file")
    importer.add_argument("out", help="the signals file to write (JSON lines)")
    importer.set_defaults(run=_import)

    convert = commands.add_parser("convert", help="turn an Avro container file of signals (v1 or v2) into JSON lines")
    convert.add_argument("--dead-letter", help="where rejected records go (default: OUT with .dead-letter.jsonl)")
    convert.add_argument("input", help="an Avro object container file written with signal schema v1 or v2")
    convert.add_argument("out", help="the JSON-lines file to write")
    convert.set_defaults(run=_convert)

    features = commands.add_parser("features", help="feature-store data: init the repository's tables, push offline history, build training sets")
    feature_commands = features.add_subparsers(dest="features_command", required=True)
    init = feature_commands.add_parser("init", help="create the empty tables `feast materialize` expects (push history)")
    init.add_argument("--repo", default="features", help="the Feast repository (default: features)")
    init.set_defaults(run=_features_init)
    training = feature_commands.add_parser("training-set", help="point-in-time training frames with get_historical_features")
    training.add_argument("--entities", required=True, help="parquet or CSV with customer_id and event_timestamp")
    training.add_argument("--out", required=True, help="the parquet file to write")
    training.add_argument("--repo", default="features")
    training.add_argument("--feature-store-yaml", help="another feature_store.yaml, e.g. the Redis profile")
    training.add_argument("--service", default="journey_agent_v1", help="the feature service to use")
    training.set_defaults(run=_features_training_set)
    offline = feature_commands.add_parser("push-offline", help="push the feature rows a job wrote (--feature-rows) "
                                                               "to the offline store, each file once")
    offline.add_argument("--rows", required=True, help="the job's --feature-rows directory")
    offline.add_argument("--repo", default="features")
    offline.add_argument("--feature-store-yaml", help="another feature_store.yaml, e.g. the Redis profile")
    offline.set_defaults(run=_features_push_offline)

    replay = commands.add_parser("replay", help="replay an archive of signals with Apache Beam: journeys, sessions, "
                                                "decisions, offline features, training sets (parquet)")
    from pipelines.cli.replay import add_arguments

    add_arguments(replay)

    models = commands.add_parser("models", help="stage models in MLflow: train, register, promote, roll back")
    from models.cli import add_arguments as add_model_arguments

    add_model_arguments(models)

    policy = commands.add_parser("policy", help="decision policies (docs/policy.md)")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_commands.add_parser("check", help="load a policy file and print what it says, or the error and its line")
    check.add_argument("file")
    check.set_defaults(run=_policy_check)
    publish = policy_commands.add_parser("publish", help="check a policy file and put it into a running job's "
                                                        "watched policy-updates directory")
    publish.add_argument("file")
    publish.add_argument("--to", required=True, metavar="DIR", help="the job's --policy-updates directory")
    publish.set_defaults(run=_policy_publish)

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
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipelines.quiet import hush_third_party_warnings

    hush_third_party_warnings()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["replay"]:  # Beam's own options pass through, so its arguments are parsed there
        from pipelines.cli.replay import main as replay

        return _guarded(replay, argv[1:])
    args = build_parser().parse_args(argv)
    return _guarded(args.run, args)


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


def _policy_publish(args) -> int:
    from pipelines.tools.policy_publish import publish
    from journeys.yamlconf import ConfigError

    try:
        written = publish(args.file, args.to)
    except ConfigError as error:
        print(f"journeys: not published: {error}", file=sys.stderr)
        return 1
    print(f"published {args.file} -> {written}")
    return 0


def _policy_check(args) -> int:
    from journeys.yamlconf import ConfigError
    from pipelines.config import read_policy

    try:
        policy = read_policy(args.file)
    except ConfigError as error:
        print(f"journeys: {error}", file=sys.stderr)
        return 1
    print(f"policy {policy.name} version {policy.version}: priority = {' x '.join(policy.priority)}; "
          f"{len(policy.caps)} frequency caps, quiet hours {'on' if policy.quiet_hours else 'off'}, "
          f"{len(policy.eligibility)} eligibility rules, mandatory: {', '.join(sorted(policy.mandatory)) or 'none'}, "
          f"control group {policy.control_share:.0%}")
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


def _guarded(command, arguments) -> int:
    try:
        return command(arguments)
    except (ValueError, FileNotFoundError) as error:  # bad input: say what, no traceback
        print(f"journeys: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
