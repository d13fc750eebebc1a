"""`journeys replay`: rebuild journeys, sessions, decisions, offline features or training sets
from an archive of signals, with Apache Beam. Options Beam knows (--runner, --direct_num_workers,
--flink_master, ...) pass through to the pipeline."""
from __future__ import annotations

import argparse
import json
import sys
import time

TABLES = ("journeys", "stage-history", "sessions", "decisions", "dead-letters", "features")
EMITS = (*TABLES, "training-set")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="a file or directory: JSON lines, Avro container files, or parquet")
    parser.add_argument("--output", required=True, help="the directory for the parquet tables")
    parser.add_argument("--format", choices=("jsonl", "avro", "parquet"), help="the input format (default: from the file names)")
    parser.add_argument("--runner", default="DirectRunner", help="Beam runner: DirectRunner, FlinkRunner, ...")
    parser.add_argument("--emit", default=",".join(TABLES),
                        help=f"comma-separated tables to write, of: {', '.join(EMITS)} (default: all but training-set)")
    parser.add_argument("--label-horizon", default="7d", help="training-set labels look this far ahead of each decision")
    parser.add_argument("--end-clock", default="auto",
                        help="event time at which time stops: auto (the latest accepted event time minus the "
                             "out-of-orderness bound, as the stream job), epoch millis or ISO-8601")
    parser.add_argument("--conf", help="job configuration YAML (default: the packaged journeys/conf/journeys.yaml)")
    parser.add_argument("--ontology", help="ontology YAML; overrides the configuration's `ontology`")
    parser.add_argument("--profiles", help="customer profile parquet to decide with (as the stream job's feature store)")
    parser.add_argument("--feature-history", metavar="FILE",
                        help="write the features table as this one parquet file, e.g. features/data/journey_activity.parquet")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.quiet import hush_third_party_warnings

    hush_third_party_warnings()  # again: Beam's import lets its deprecations through once

    from journeys.timeutil import parse_duration, parse_instant
    from pipelines.beam.pipeline import ReplayJourneys, ReplayOptions
    from pipelines.beam.rows import Labels
    from pipelines.beam.storage import SOURCES, ReadSignals, write_table
    from pipelines.config import read_ontology, read_settings, settings_ontology

    emit = [name.strip() for name in args.emit.split(",") if name.strip()]
    unknown = [name for name in emit if name not in EMITS]
    if unknown or not emit:
        raise ValueError(f"--emit: unknown table {unknown[0] if unknown else '(none)'}; choose from {', '.join(EMITS)}")
    settings = read_settings(args.conf)
    if settings.privacy.key_warning():
        print(f"journeys replay: {settings.privacy.key_warning()}", file=sys.stderr)
    ontology = read_ontology(args.ontology) if args.ontology else settings_ontology(settings)
    profiles = None
    if args.profiles:
        from journeys.features import StaticProfiles
        from pipelines.tools.simulate import read_profiles

        profiles = StaticProfiles(read_profiles(args.profiles))
    labels = Labels(parse_duration(args.label_horizon)) if "training-set" in emit else None
    end_clock = None if args.end_clock == "auto" else parse_instant(args.end_clock)
    options = ReplayOptions(end_clock=end_clock, labels=labels)
    read = ReadSignals(args.input, args.format)

    pipeline_options = PipelineOptions([f"--runner={args.runner}", *beam_args])
    started = time.time()
    pipeline = beam.Pipeline(options=pipeline_options)
    tables = pipeline | "ReadSignals" >> read | "ReplayJourneys" >> ReplayJourneys(ontology, settings, options, profiles)
    for name in emit:
        table = {"stage-history": "stage_history", "dead-letters": "dead_letters", "features": "feature_history",
                 "training-set": "training_set"}.get(name, name)
        single = args.feature_history if name == "features" else None
        write_table(tables[SOURCES.get(table, table)], table, args.output, single)
        if name == "training-set":  # the signal mix beside it, for the models' drift profiles
            write_table(tables["signal_mix"], "signal_mix", args.output)
    result = pipeline.run()
    result.wait_until_finish()
    summary = _summary(result, time.time() - started, args, emit)
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(f"{args.output.rstrip('/')}/_replay_summary.json") as sink:
        sink.write(json.dumps(summary, indent=2).encode() + b"\n")
    print(f"replay of {summary['records_in']:,} records ({read.format}) in {summary['seconds']:.1f} s: "
          f"{summary['accepted']:,} accepted, {summary['rejected']:,} rejected, {summary['duplicates']:,} duplicates; "
          f"{summary['decisions']:,} decisions for {summary['customer_keys']:,} customers and "
          f"{summary['visitor_keys']:,} visitors; counts add up: {'yes' if summary['balanced'] else 'NO'}")
    print(f"tables written to {args.output}: {', '.join(emit)}")
    return 0 if summary["balanced"] else 1


def _summary(result, seconds: float, args, emit: list[str]) -> dict:
    from apache_beam.metrics.metric import MetricsFilter

    from pipelines.beam.pipeline import NAMESPACE

    counters = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + (counter.committed or counter.attempted or 0)
    # Accepted signals are counted where the core applied them, not where intake let them through,
    # so a record lost between the two shows.
    records_in, rejected = counters.get("records_in", 0), counters.get("rejected", 0)
    accepted, duplicates = counters.get("signals_accepted", 0), counters.get("duplicates", 0)
    return {"input": args.input, "runner": args.runner, "emit": emit, "seconds": round(seconds, 2),
            "records_in": records_in, "accepted": accepted, "rejected": rejected, "duplicates": duplicates,
            "balanced": records_in == accepted + rejected + duplicates, "decisions": counters.get("decisions", 0),
            "customer_keys": counters.get("customer_keys", 0), "visitor_keys": counters.get("visitor_keys", 0),
            "events_per_second": round(records_in / seconds) if seconds else None}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="journeys replay", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args, beam_args = parser.parse_known_args(argv)
    return run(args, beam_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
