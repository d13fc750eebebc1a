"""`journeys simulate`, `simulate-outcomes`, `import` and `convert`: signals to run the job on."""
from __future__ import annotations

import sys
from pathlib import Path

from pipelines.tools.simulate import DEFAULT_START, SimulationSpec, write_simulation


def add_commands(commands) -> None:
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
    simulate.add_argument("--cart-value-scale", type=float, default=SimulationSpec.cart_value_scale,
                          help="a shifted population, to see drift: carts this many times dearer")
    simulate.add_argument("--out", required=True)
    simulate.add_argument("--profiles-out", help="also write customer profiles as parquet, e.g. features/data/customer_profiles.parquet")
    simulate.set_defaults(run=_simulate)

    importer = commands.add_parser("import", help="turn a third-party clickstream (CSV, TSV, JSON lines) into signals")
    importer.add_argument("--mapping", required=True, help="mapping YAML (see README, 'Bring your own data')")
    importer.add_argument("--dead-letter", help="where rows that cannot be mapped go (default: OUT with .dead-letter.jsonl)")
    importer.add_argument("--sort", action="store_true",
                          help="write the signals in event-time order (the file is read whole into memory)")
    importer.add_argument("--conf", help="job configuration YAML whose lateness bound the order check uses "
                                         "(default: the packaged one)")
    importer.add_argument("input", help="the clickstream file")
    importer.add_argument("out", help="the signals file to write (JSON lines)")
    importer.set_defaults(run=_import)

    convert = commands.add_parser("convert", help="turn an Avro container file of signals (v1 or v2) into JSON lines")
    convert.add_argument("--dead-letter", help="where rejected records go (default: OUT with .dead-letter.jsonl)")
    convert.add_argument("input", help="an Avro object container file written with signal schema v1 or v2")
    convert.add_argument("out", help="the JSON-lines file to write")
    convert.set_defaults(run=_convert)


def _simulate(args) -> int:
    spec = SimulationSpec(customers=args.customers, days=args.days, seed=args.seed, start=args.start,
                          malformed_rate=args.malformed_rate, duplicate_rate=args.duplicate_rate, late_rate=args.late_rate,
                          cart_value_scale=args.cart_value_scale)
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

    from journeys.timeutil import format_duration
    from pipelines.config import read_settings

    bound = read_settings(args.conf).max_out_of_orderness_ms
    out, dead_letter = _outputs(args)
    result = Importer(load_mapping(args.mapping)).run(args.input, out, dead_letter, sort=args.sort, bound_ms=bound)
    print(f"imported {result.rows:,} rows: {result.signals:,} signals -> {out}"
          f"{' (sorted by event time)' if result.sorted else ''}; {result.dead_letters:,} rows to {dead_letter}")
    for reason, count in sorted(result.reasons.items(), key=lambda item: -item[1]):
        print(f"  {reason}: {count:,}")
    if result.behind:
        print(f"warning: {result.behind:,} signals are more than the lateness bound ({format_duration(bound)}) behind "
              "an earlier signal of the same visitor or customer: the job would report them late and not apply them. "
              "To apply them in event-time order, import again with --sort (docs/time.md).", file=sys.stderr)
    return 0


def _convert(args) -> int:
    from pipelines.tools.importer import convert_avro_archive

    out, dead_letter = _outputs(args)
    result = convert_avro_archive(args.input, out, dead_letter)
    print(f"converted {result.rows:,} Avro records: {result.signals:,} signals -> {out}; "
          f"{result.dead_letters:,} rejected -> {dead_letter}")
    return 0
