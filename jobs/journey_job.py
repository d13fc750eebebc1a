"""The streaming journey job.

    python jobs/journey_job.py --signals file:///data/signals.jsonl \\
        --decisions file:///out/decisions --journeys file:///out/journeys \\
        --dead-letter file:///out/dead-letter --summary out/summary.json

This driver only parses arguments, builds the sources and sinks, and hands the streams to
pipelines.journey_pipeline. See README.md for every argument.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `flink run -py` does not install the project

from journeys.contract import SignalDecoder  # noqa: E402
from journeys.inputs import scan_signals  # noqa: E402
from journeys.ontology import load_ontology  # noqa: E402
from journeys.settings import load_settings, load_settings_ontology  # noqa: E402
from journeys.summary import format_summary, read_records, read_truth, summarize  # noqa: E402
from journeys.timeutil import parse_instant  # noqa: E402
from journeys.yamlconf import ConfigError  # noqa: E402
from pipelines.connectors import AddressError, local_path  # noqa: E402
from pipelines.flink_env import DEFAULT_FLINK_CONF_DIR, PROJECT_ROOT  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="journey_job", description=__doc__.split("\n\n")[0])
    parser.add_argument("--signals", required=True, help="input: file:///path to a JSON-lines file or a directory of them")
    parser.add_argument("--decisions", required=True, help="output directory for decisions (file:///path)")
    parser.add_argument("--journeys", required=True, help="output directory for the journey log (file:///path)")
    parser.add_argument("--dead-letter", required=True, help="output directory for rejected records (file:///path)")
    parser.add_argument("--late", help="output directory for late signals; without it they stay in the journey log")
    parser.add_argument("--conf", help="job configuration YAML (default: the packaged journeys/conf/journeys.yaml)")
    parser.add_argument("--ontology", help="ontology YAML; overrides the configuration's `ontology`")
    parser.add_argument("--summary", help="after the job ends, write the run summary JSON here and print it")
    parser.add_argument("--flink-conf", default=str(DEFAULT_FLINK_CONF_DIR), help="Flink configuration directory (config.yaml)")
    parser.add_argument("--checkpoints", default=str(PROJECT_ROOT / "var" / "checkpoints"), help="checkpoint directory")
    parser.add_argument("--restore", help="restore from this retained checkpoint (chk-N directory) or savepoint")
    parser.add_argument("--parallelism", type=int, help="overrides parallelism.default of the Flink configuration")
    parser.add_argument("--end-clock", default="auto",
                        help="event time at which time stops when a bounded input ends: auto (the latest accepted "
                             "event time minus the out-of-orderness bound), none, epoch millis or ISO-8601")
    parser.add_argument("--job-name", default="journey-job")
    parser.add_argument("-D", dest="flink_options", action="append", default=[], metavar="KEY=VALUE",
                        help="extra Flink configuration, e.g. -D execution.checkpointing.interval=5s")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    try:
        settings = load_settings(args.conf)
        ontology = load_ontology(args.ontology) if args.ontology else load_settings_ontology(settings)
        signals_path = local_path(args.signals)
        if not signals_path.exists():
            raise AddressError(f"{args.signals}: no such file or directory")
        for address in (args.decisions, args.journeys, args.dead_letter, args.late):
            if address:
                local_path(address)
        overrides = dict(option.split("=", 1) for option in args.flink_options)
    except (ConfigError, AddressError, ValueError) as error:
        print(f"journey_job: {error}", file=sys.stderr)
        return 2

    scan = None
    if args.end_clock == "auto" or args.summary:
        scan = scan_signals(signals_path, SignalDecoder(settings.intake))
    end_clock = _end_clock(args.end_clock, scan, settings.max_out_of_orderness_ms)

    from pipelines.connectors import record_sink, signal_source
    from pipelines.flink_env import create_environment
    from pipelines.journey_pipeline import build_journey_pipeline

    overrides.setdefault("execution.checkpointing.dir", Path(args.checkpoints).resolve().as_uri())
    if args.restore:
        overrides["execution.state-recovery.path"] = Path(args.restore).resolve().as_uri()
    env = create_environment(args.flink_conf, overrides)
    if args.parallelism:
        env.set_parallelism(args.parallelism)

    streams = build_journey_pipeline(signal_source(env, args.signals), ontology, settings, end_clock)
    record_sink(streams.decisions, args.decisions, "decisions")
    if args.late:
        record_sink(streams.late, args.late, "late")
        record_sink(streams.journeys, args.journeys, "journeys")
    else:
        record_sink(streams.journeys.union(streams.late), args.journeys, "journeys")
    record_sink(streams.dead_letters, args.dead_letter, "dead-letter")

    job_started = time.time()
    result = env.execute(args.job_name)
    job_seconds = result.get_net_runtime() / 1000 if result.get_net_runtime() else time.time() - job_started

    if args.summary:
        journey_log = read_records(local_path(args.journeys))
        if args.late:
            journey_log = itertools.chain(journey_log, read_records(local_path(args.late)))
        summary = summarize(scan.lines, journey_log, read_records(local_path(args.decisions)),
                            read_records(local_path(args.dead_letter)), read_truth(signals_path))
        summary["end_clock"] = end_clock
        summary["runtime"] = {"job_seconds": round(job_seconds, 2), "wall_seconds": round(time.time() - started, 2),
                              "events_per_second": round(scan.lines / job_seconds) if job_seconds else None,
                              "parallelism": env.get_parallelism()}
        Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
        Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n")
        print(format_summary(summary))
        print(f"  summary written to {args.summary}")
        if not summary["balanced"]:
            return 1
    return 0


def _end_clock(option: str, scan, bound_ms: int) -> int | None:
    if option == "none":
        return None
    if option == "auto":
        return None if scan is None or scan.latest_event_time is None else scan.latest_event_time - bound_ms - 1
    return parse_instant(option)


if __name__ == "__main__":
    sys.exit(main())
