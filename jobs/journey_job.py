"""The streaming journey job.

    python jobs/journey_job.py --signals kafka://broker:9092/signals \\
        --decisions kafka://broker:9092/decisions --journeys kafka://broker:9092/journeys \\
        --dead-letter kafka://broker:9092/dead-letter --kafka-properties client.properties

    python jobs/journey_job.py --signals file:///data/signals.jsonl --decisions file:///out/decisions \\
        --journeys file:///out/journeys --dead-letter file:///out/dead-letter --summary out/summary.json

The same file is submitted to a cluster with `flink run -py jobs/journey_job.py ...`. This driver
only parses arguments, builds the sources and sinks, and hands the streams to
pipelines.flink.pipeline. See README.md for every argument.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `flink run -py` does not install the project

from journeys.outputs import OutputName  # noqa: E402
from journeys.timers import BOUNDED, LIVE  # noqa: E402
from journeys.timers import end_clock as end_clock_at  # noqa: E402
from journeys.timeutil import parse_instant  # noqa: E402
from journeys.yamlconf import ConfigError  # noqa: E402
from pipelines import PROJECT_ROOT  # noqa: E402
from pipelines.addresses import AddressError, FileAddress, KafkaAddress, parse_address  # noqa: E402
from pipelines.config import (read_ontology, read_settings, settings_ontology, start_canary,  # noqa: E402
                              start_gates, start_policy_text)
from pipelines.flink.env import DEFAULT_FLINK_CONF_DIR, load_flink_conf, load_live_conf  # noqa: E402
from pipelines.kafka.settings import (KafkaSettings, check_transaction_timeout, load_properties_file,  # noqa: E402
                                      parse_property, parse_stop_offsets)
from pipelines.mlflow.settings import drift_holds_canary  # noqa: E402
from pipelines.quiet import hush_third_party_warnings  # noqa: E402

# Output name -> its argument; the sinks' names (and uids) stay as the arguments call them.
OUTPUT_ARGUMENTS = {OutputName.DECISIONS: "decisions", OutputName.JOURNEYS: "journeys",
                    OutputName.DEAD_LETTERS: "dead_letter", OutputName.LATE: "late",
                    OutputName.FEATURE_ROWS: "feature_rows", OutputName.DECISION_LOG: "decision_log"}
SINK_NAMES = {OutputName.DEAD_LETTERS: "dead-letter"}
SLOT_SHARING = ("shared", "per-role")
NO_AVRO_SCHEMA = (OutputName.JOURNEYS, OutputName.LATE, OutputName.FEATURE_ROWS, OutputName.DECISION_LOG)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="journey_job", description=__doc__.split("\n\n")[0])
    io = parser.add_argument_group("inputs and outputs: file:///path or kafka://host:port/topic[?format=avro]")
    io.add_argument("--signals", required=True, help="the signals to read")
    io.add_argument("--decisions", required=True, help="where decisions go (Kafka: keyed by journey)")
    io.add_argument("--journeys", required=True, help="where the journey log goes")
    io.add_argument("--dead-letter", required=True, help="where rejected records go, with reason and original bytes")
    io.add_argument("--late", help="where late signals go; without it they stay in the journey log")
    io.add_argument("--decision-log", help="where the full record of every decision point goes, acted on or not "
                                           "(candidates, suppressions, policy version, justification), for audit")
    policy = parser.add_argument_group("decision policy")
    policy.add_argument("--policy", metavar="FILE", help="the policy YAML in force at start; overrides the "
                                                         "configuration's decisions.policy")
    policy.add_argument("--policy-updates", metavar="ADDRESS",
                        help="control stream of new policy versions, in force without a restart: file:///dir (a watched "
                             "directory; `journeys policy publish FILE --to DIR`) or kafka://host:port/topic. "
                             "It is unbounded: the job then runs until cancelled. The job writes here too: the stop "
                             "of a canary whose gates failed")
    policy.add_argument("--canary-policy", metavar="FILE",
                        help="a newer version of the policy that decides, from the start, for a share of people (by "
                             "hash, never the control group), judged by the gates (docs/rollouts.md)")
    policy.add_argument("--canary-share", type=float, metavar="SHARE", help="the canary's share of people, in (0, 1); 0.1 by default")
    policy.add_argument("--gates", metavar="FILE", help="the rollout gates a canary is judged by in the job; overrides "
                                                        "the configuration's decisions.gates (docs/rollouts.md)")
    parser.add_argument("--conf", help="job configuration YAML (default: the packaged journeys/conf/journeys.yaml)")
    parser.add_argument("--ontology", help="ontology YAML; overrides the configuration's `ontology`")
    parser.add_argument("--summary", help="after a bounded run, write the run summary JSON here and print it")
    parser.add_argument("--flink-conf", default=str(DEFAULT_FLINK_CONF_DIR), help="Flink configuration directory (config.yaml)")
    parser.add_argument("--checkpoints", default=str(PROJECT_ROOT / "var" / "checkpoints"), help="checkpoint directory")
    parser.add_argument("--restore", help="restore from this retained checkpoint (chk-N directory) or savepoint")
    parser.add_argument("--parallelism", type=int, help="overrides parallelism.default of the Flink configuration")
    parser.add_argument("--end-clock", default="auto",
                        help="event time at which time stops when a bounded input ends: auto (the latest accepted "
                             "event time minus the out-of-orderness bound), none, epoch millis or ISO-8601")
    parser.add_argument("--job-name", default="journey-job")
    parser.add_argument("--slot-sharing", default="shared", choices=SLOT_SHARING,
                        help="per-role: the customer operator in a slot-sharing group of its own, so that on a cluster "
                             "of one-slot TaskManagers each journey role has a Python interpreter of its own")
    parser.add_argument("--progress", type=float, metavar="SECONDS",
                        help="say every so many seconds how many signals the job has read, and how fast")
    parser.add_argument("-D", dest="flink_options", action="append", default=[], metavar="KEY=VALUE",
                        help="extra Flink configuration, e.g. -D execution.checkpointing.interval=5s")
    features = parser.add_argument_group("features (Feast)")
    features.add_argument("--feature-repo", help="a Feast repository (features/): read profile features for decisions "
                                                 "and push behavioural features; without it, no feature store is used")
    features.add_argument("--feature-store-yaml", help="another feature_store.yaml, e.g. features/feature_store.redis.yaml")
    features.add_argument("--feature-rows", metavar="ADDRESS",
                          help="also write the behavioural feature rows here (JSON lines), for Feast's offline store: "
                               "`journeys features push-offline` pushes them through the push source")
    models = parser.add_argument_group("stage models (MLflow)")
    models.add_argument("--model-registry", metavar="URI",
                        help="MLflow tracking/registry URI (sqlite:///path/registry.db, http://host:5000): score decisions "
                             "with models:/<name>@champion and shadow-score @challenger, following the aliases as they "
                             "move (the configuration's `models` section names them); without it, no models")
    kafka = parser.add_argument_group("Kafka")
    kafka.add_argument("--kafka-properties", metavar="FILE",
                       help="client properties file (security.protocol, sasl.*, ssl.*, ...) for every Kafka client; values may use ${ENV}")
    kafka.add_argument("--kafka-property", action="append", default=[], metavar="KEY=VALUE", help="one client property; repeatable")
    kafka.add_argument("--delivery-guarantee", default="exactly-once", choices=("exactly-once", "at-least-once"))
    kafka.add_argument("--transactional-id-prefix", default="journey-job",
                       help="prefix of the Kafka transactional ids; unique per job on a cluster")
    kafka.add_argument("--group-id", default="journey-job", help="consumer group id for committed offsets")
    kafka.add_argument("--start-offsets", default="earliest", choices=("earliest", "latest", "committed"))
    kafka.add_argument("--stop-offsets", metavar="P:OFFSET,...",
                       help="read the signals topic only up to these offsets (a bounded run): partition:offset,...")
    kafka.add_argument("--jars", help="comma-separated connector jars to use instead of the project's jars/ folder")
    return parser.parse_args(argv)


class Plan:
    """Everything the arguments say, checked before a JVM starts."""

    def __init__(self, args: argparse.Namespace):
        self.settings = read_settings(args.conf)
        if self.settings.privacy.key_warning():
            print(f"journey_job: {self.settings.privacy.key_warning()}", file=sys.stderr)
        self.ontology = read_ontology(args.ontology) if args.ontology else settings_ontology(self.settings)
        self.signals = parse_address(args.signals)
        self.outputs = {name: parse_address(getattr(args, argument))
                        for name, argument in OUTPUT_ARGUMENTS.items() if getattr(args, argument)}
        for name in NO_AVRO_SCHEMA:
            if isinstance(self.outputs.get(name), KafkaAddress) and self.outputs[name].format == "avro":
                raise AddressError(f"{self.outputs[name]}: {name} have no Avro schema; use format=json")
        self.policy_updates = parse_address(args.policy_updates) if args.policy_updates else None
        self.kafka = _kafka_settings(args)
        self.overrides = _flink_overrides(args)
        self.kafka_addresses = [a for a in (self.signals, *self.outputs.values(), self.policy_updates)
                                if isinstance(a, KafkaAddress)]
        if self.kafka_addresses:
            from pipelines.flink.connectors import connector_jars

            self.overrides["pipeline.jars"] = ";".join(connector_jars(args.jars))
            if any(isinstance(a, KafkaAddress) for a in self.outputs.values()):
                check_transaction_timeout(self.kafka, load_flink_conf(args.flink_conf) | self.overrides)
        if isinstance(self.signals, FileAddress) and not self.signals.path.exists():
            raise AddressError(f"{args.signals}: no such file or directory")
        if args.restore and not (Path(args.restore) / "_metadata").is_file():
            raise AddressError(f"--restore {args.restore}: not a retained checkpoint or savepoint (a chk-N or "
                               f"savepoint directory with a _metadata file)")
        models = _models_at_start(args, self.settings)  # its registry read runs beside the feature store's check
        self.features = _feature_settings(args, self.settings)
        self.models = None
        if models is not None:
            print(f"journey_job: {models.said()}", file=sys.stderr)
            self.models = models.settings
        self.policy = start_policy_text(args.policy, self.settings)
        self.canary = start_canary(args.canary_policy, args.canary_share, self.policy)
        judged = self.policy_updates is not None or self.canary is not None or self.models is not None
        self.gates = start_gates(args.gates, self.settings) if judged else None
        drift_holds_canary(self.settings.models)  # checked now, not in a task
        if args.gates and not judged:
            raise ValueError("--gates judges canaries: give --canary-policy, --policy-updates or --model-registry too")
        if args.end_clock not in ("auto", "none"):
            parse_instant(args.end_clock)  # fail now, not after the input scan
        self.bounded = isinstance(self.signals, FileAddress) or self.kafka.stop_offsets is not None
        if not self.bounded:
            self.overrides = load_live_conf(args.flink_conf) | self.overrides  # -D options still win
        if args.summary and (not self.bounded or self.policy_updates is not None):
            raise ValueError("--summary needs a bounded run: a file, or Kafka with --stop-offsets, and no --policy-updates")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    hush_third_party_warnings()
    started = time.time()
    try:
        plan = Plan(args)
    except (ConfigError, AddressError, ValueError) as error:
        print(f"journey_job: {error}", file=sys.stderr)
        return 2

    from pipelines.flink.connectors import check_kafka
    from pipelines.flink.env import create_environment
    from pipelines.flink.watch import execute_watched
    from pipelines.kafka.settings import KafkaUnreachable
    from pipelines.reports.run_summary import Runtime, scan_input, write_run_summary

    env = create_environment(args.flink_conf, plan.overrides)
    hush_third_party_warnings()  # again: Feast's and Beam's imports (under PyFlink's) let deprecations through once
    if plan.kafka_addresses:
        try:
            check_kafka(plan.kafka_addresses, plan.kafka, plan.overrides["pipeline.jars"].split(";"))
        except KafkaUnreachable as error:
            print(f"journey_job: {error}", file=sys.stderr)
            return 2
    scan = None
    if plan.bounded and (args.end_clock == "auto" or args.summary):
        scan = scan_input(plan.signals, plan.kafka, plan.settings)
    end_clock = _end_clock(args.end_clock, scan, plan.settings.max_out_of_orderness_ms)
    if args.parallelism:
        env.set_parallelism(args.parallelism)
    _build(env, plan, end_clock, args)

    job_started = time.time()
    result = execute_watched(env, args.job_name, plan.kafka_addresses, plan.kafka)
    job_seconds = result.get_net_runtime() / 1000 if result.get_net_runtime() else time.time() - job_started
    if args.summary:
        runtime = Runtime(job_seconds, time.time() - started, env.get_parallelism())
        summary = write_run_summary(args.summary, plan.signals, plan.outputs, plan.kafka, scan, end_clock, runtime)
        if not summary["balanced"]:
            return 1
    return 0


def _build(env, plan: Plan, end_clock: int | None, args: argparse.Namespace) -> None:
    """Sources, the journey pipeline and the sinks, on the environment."""
    from pipelines.flink.connectors import Sinks, file_source, kafka_source, policy_update_source
    from pipelines.flink.env import python_metrics_enabled
    from pipelines.flink.operators import OutputSpec
    from pipelines.flink.pipeline import InputShape, build_journey_pipeline

    if isinstance(plan.signals, FileAddress):
        raw, shape = file_source(env, plan.signals), InputShape("json", "intake")
    else:
        raw, shape = kafka_source(env, plan.signals, plan.kafka, plan.settings), InputShape(plan.signals.format, "source")
    outputs = plan.outputs
    outputs.setdefault(OutputName.LATE, outputs[OutputName.JOURNEYS])
    specs = {name: OutputSpec(keyed=isinstance(address, KafkaAddress) and name != OutputName.DEAD_LETTERS,
                              encoding=address.format if isinstance(address, KafkaAddress) else "json")
             for name, address in outputs.items()}
    control = policy_update_source(env, plan.policy_updates, plan.kafka) if plan.policy_updates is not None else None
    streams = build_journey_pipeline(raw, plan.ontology, plan.settings, end_clock, shape, specs, plan.features,
                                     feature_rows=OutputName.FEATURE_ROWS in outputs, models=plan.models,
                                     decision_log=OutputName.DECISION_LOG in outputs, policy=plan.policy,
                                     policy_updates=control, progress_s=args.progress,
                                     time_mode=BOUNDED if plan.bounded else LIVE,
                                     metrics=python_metrics_enabled(args.flink_conf, plan.overrides),
                                     roles_apart=args.slot_sharing == "per-role", gates=plan.gates,
                                     canary=plan.canary)
    sinks = Sinks(env, plan.kafka, roll_at_checkpoints=not plan.bounded)

    def sink(stream, name: str) -> None:
        sinks.add(stream, outputs[name], SINK_NAMES.get(name, name), specs[name].keyed)

    sink(streams.decisions, OutputName.DECISIONS)
    sink(streams.dead_letters, OutputName.DEAD_LETTERS)
    if args.late:
        sink(streams.late, OutputName.LATE)
        sink(streams.journeys, OutputName.JOURNEYS)
    else:
        sink(streams.journeys.union(streams.late), OutputName.JOURNEYS)
    if streams.decision_log is not None:
        sink(streams.decision_log, OutputName.DECISION_LOG)
    if streams.feature_rows is not None:
        sink(streams.feature_rows, OutputName.FEATURE_ROWS)
    if streams.control_records is not None:  # the job's own stops of failed canaries, beside the publishes
        sinks.add_control(streams.control_records, plan.policy_updates)
    sinks.finish()


def _kafka_settings(args) -> KafkaSettings:
    properties = load_properties_file(args.kafka_properties) if args.kafka_properties else {}
    properties.update(parse_property(option) for option in args.kafka_property)
    return KafkaSettings(properties, args.delivery_guarantee, args.transactional_id_prefix, args.group_id,
                         args.start_offsets, parse_stop_offsets(args.stop_offsets) if args.stop_offsets else None)


def _flink_overrides(args) -> dict[str, str]:
    overrides = dict(option.split("=", 1) for option in args.flink_options)
    overrides.setdefault("execution.checkpointing.dir", Path(args.checkpoints).resolve().as_uri())
    if args.restore:
        overrides["execution.state-recovery.path"] = Path(args.restore).resolve().as_uri()
    return overrides


def _feature_settings(args, settings):
    if not args.feature_repo:
        return None
    from pipelines.feast.store import checked_feature_settings

    return checked_feature_settings(args.feature_repo, args.feature_store_yaml, settings.features)


def _models_at_start(args, settings):
    if not args.model_registry:
        return None
    from pipelines.mlflow.serving import ModelsAtStart

    return ModelsAtStart(args.model_registry, settings.models)


def _end_clock(option: str, scan, bound_ms: int) -> int | None:
    if option == "none":
        return None
    if option == "auto":
        return None if scan is None else end_clock_at(scan.latest_event_time, bound_ms)
    return parse_instant(option)


if __name__ == "__main__":
    sys.exit(main())
