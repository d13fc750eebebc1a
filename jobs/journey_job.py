"""The streaming journey job.

    python jobs/journey_job.py --signals kafka://broker:9092/signals \\
        --decisions kafka://broker:9092/decisions --journeys kafka://broker:9092/journeys \\
        --dead-letter kafka://broker:9092/dead-letter --kafka-properties client.properties

    python jobs/journey_job.py --signals file:///data/signals.jsonl --decisions file:///out/decisions \\
        --journeys file:///out/journeys --dead-letter file:///out/dead-letter --summary out/summary.json

The same file is submitted to a cluster with `flink run -py jobs/journey_job.py ...`. This driver
only parses arguments, builds the sources and sinks, and hands the streams to
pipelines.journey_pipeline. See README.md for every argument.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `flink run -py` does not install the project

from journeys.contract import DECISION_SCHEMA, SignalDecoder, decode_record_avro  # noqa: E402
from journeys.inputs import read_lines, scan_records  # noqa: E402
from journeys.ontology import load_ontology  # noqa: E402
from journeys.settings import load_settings, load_settings_ontology  # noqa: E402
from journeys.summary import format_summary, read_records, read_truth, summarize  # noqa: E402
from journeys.timeutil import parse_instant  # noqa: E402
from journeys.yamlconf import ConfigError  # noqa: E402
from pipelines.addresses import AddressError, FileAddress, KafkaAddress, parse_address  # noqa: E402
from pipelines.flink_env import DEFAULT_FLINK_CONF_DIR, PROJECT_ROOT, load_flink_conf  # noqa: E402
from pipelines.kafka_settings import (KafkaSettings, check_transaction_timeout, load_properties_file,  # noqa: E402
                                      parse_property, parse_stop_offsets)

DEFAULT_JARS = ("flink-connector-kafka.jar", "kafka-clients.jar")


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
                             "It is unbounded: the job then runs until cancelled")
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


def _metrics_enabled(flink_conf: str, overrides: dict[str, str]) -> bool:
    """Flink's switch for the metrics of Python functions (`-D python.metric.enabled=false`)."""
    return (load_flink_conf(flink_conf) | overrides).get("python.metric.enabled", "true").strip().lower() != "false"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    try:
        settings = load_settings(args.conf)
        ontology = load_ontology(args.ontology) if args.ontology else load_settings_ontology(settings)
        signals = parse_address(args.signals)
        outputs = {name: parse_address(value) for name, value in (("decisions", args.decisions), ("journeys", args.journeys),
                                                                  ("dead-letters", args.dead_letter), ("late", args.late),
                                                                  ("feature-rows", args.feature_rows),
                                                                  ("decision-log", args.decision_log)) if value}
        for name in ("journeys", "late", "feature-rows", "decision-log"):
            if isinstance(outputs.get(name), KafkaAddress) and outputs[name].format == "avro":
                raise AddressError(f"{outputs[name]}: {name} have no Avro schema; use format=json")
        policy_updates = parse_address(args.policy_updates) if args.policy_updates else None
        kafka = _kafka_settings(args)
        overrides = dict(option.split("=", 1) for option in args.flink_options)
        overrides.setdefault("execution.checkpointing.dir", Path(args.checkpoints).resolve().as_uri())
        if args.restore:
            overrides["execution.state-recovery.path"] = Path(args.restore).resolve().as_uri()
        kafka_addresses = [a for a in (signals, *outputs.values(), policy_updates) if isinstance(a, KafkaAddress)]
        if kafka_addresses:
            overrides["pipeline.jars"] = ";".join(_connector_jars(args.jars))
            if any(isinstance(a, KafkaAddress) for a in outputs.values()):
                check_transaction_timeout(kafka, load_flink_conf(args.flink_conf) | overrides)
        if isinstance(signals, FileAddress) and not signals.path.exists():
            raise AddressError(f"{args.signals}: no such file or directory")
        feature_settings = _feature_settings(args, settings)
        model_settings = _model_settings(args, settings)
        policy = _start_policy(args, settings)
        if args.end_clock not in ("auto", "none"):
            parse_instant(args.end_clock)  # fail now, not after the input scan
    except (ConfigError, AddressError, ValueError) as error:
        print(f"journey_job: {error}", file=sys.stderr)
        return 2

    from pipelines.connectors import KafkaUnreachable, Sinks, check_kafka, file_source, kafka_source, policy_update_source
    from pipelines.flink_env import create_environment
    from pipelines.journey_pipeline import InputShape, build_journey_pipeline
    from pipelines.operators import OutputSpec

    env = create_environment(args.flink_conf, overrides)
    if kafka_addresses:
        try:
            check_kafka(kafka_addresses, kafka, overrides["pipeline.jars"].split(";"))
        except KafkaUnreachable as error:
            print(f"journey_job: {error}", file=sys.stderr)
            return 2

    bounded = isinstance(signals, FileAddress) or kafka.stop_offsets is not None
    if args.summary and (not bounded or policy_updates is not None):
        print("journey_job: --summary needs a bounded run: a file, or Kafka with --stop-offsets, and no --policy-updates",
              file=sys.stderr)
        return 2
    scan = None
    if bounded and (args.end_clock == "auto" or args.summary):
        scan = scan_records(_input_records(signals, kafka), _decoder(signals, settings))
    end_clock = _end_clock(args.end_clock, scan, settings.max_out_of_orderness_ms)

    if args.parallelism:
        env.set_parallelism(args.parallelism)
    if isinstance(signals, FileAddress):
        raw, shape = file_source(env, signals), InputShape("json", "intake")
    else:
        raw, shape = kafka_source(env, signals, kafka, settings), InputShape(signals.format, "source")
    if "late" not in outputs:
        outputs["late"] = outputs["journeys"]
    specs = {name: OutputSpec(keyed=isinstance(address, KafkaAddress) and name != "dead-letters",
                              encoding=address.format if isinstance(address, KafkaAddress) else "json")
             for name, address in outputs.items()}
    control = policy_update_source(env, policy_updates, kafka) if policy_updates is not None else None
    streams = build_journey_pipeline(raw, ontology, settings, end_clock, shape, specs, feature_settings,
                                     feature_rows="feature-rows" in outputs, models=model_settings,
                                     decision_log="decision-log" in outputs, policy=policy, policy_updates=control,
                                     metrics=_metrics_enabled(args.flink_conf, overrides))
    sinks = Sinks(env, kafka)
    sinks.add(streams.decisions, outputs["decisions"], "decisions", specs["decisions"].keyed)
    sinks.add(streams.dead_letters, outputs["dead-letters"], "dead-letter", False)
    if args.late:
        sinks.add(streams.late, outputs["late"], "late", specs["late"].keyed)
        sinks.add(streams.journeys, outputs["journeys"], "journeys", specs["journeys"].keyed)
    else:
        sinks.add(streams.journeys.union(streams.late), outputs["journeys"], "journeys", specs["journeys"].keyed)
    if streams.decision_log is not None:
        sinks.add(streams.decision_log, outputs["decision-log"], "decision-log", specs["decision-log"].keyed)
    if streams.feature_rows is not None:
        sinks.add(streams.feature_rows, outputs["feature-rows"], "feature-rows", specs["feature-rows"].keyed)
    sinks.finish()

    job_started = time.time()
    result = env.execute(args.job_name)
    job_seconds = result.get_net_runtime() / 1000 if result.get_net_runtime() else time.time() - job_started

    if args.summary:
        journey_log = _output_records(outputs["journeys"], kafka, "journeys")
        if args.late and outputs["late"] != outputs["journeys"]:
            journey_log = itertools.chain(journey_log, _output_records(outputs["late"], kafka, "late"))
        decided = "decision-log" if "decision-log" in outputs else "decisions"
        summary = summarize(scan.lines, journey_log, _output_records(outputs[decided], kafka, decided),
                            _output_records(outputs["dead-letters"], kafka, "dead-letters"),
                            read_truth(_input_records(signals, kafka)))
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


def _kafka_settings(args) -> KafkaSettings:
    properties = load_properties_file(args.kafka_properties) if args.kafka_properties else {}
    properties.update(parse_property(option) for option in args.kafka_property)
    return KafkaSettings(properties, args.delivery_guarantee, args.transactional_id_prefix, args.group_id,
                         args.start_offsets, parse_stop_offsets(args.stop_offsets) if args.stop_offsets else None)


def _start_policy(args, settings) -> tuple[str, str]:
    """(text, source) of the policy in force at start, checked here so that a bad file stops the
    driver with its line, not a task on a cluster."""
    from journeys.policy import loads_policy
    from journeys.settings import settings_policy_text

    if args.policy:
        if not Path(args.policy).is_file():
            raise ConfigError(f"--policy {args.policy}: no such file")
        text, source = Path(args.policy).read_text(), args.policy
    else:
        text, source = settings_policy_text(settings)
    loads_policy(text, source)
    return text, source


def _feature_settings(args, settings):
    """Feature settings when a repository is given, after checking it is applied and reachable."""
    if not args.feature_repo:
        return None
    from pipelines.feast_features import FeatureSettings, check_store

    features = FeatureSettings.from_config(args.feature_repo, args.feature_store_yaml, settings.features)
    check_store(features)
    return features


def _model_settings(args, settings):
    """Model serving settings when a registry is given; says at start which versions will score.
    An unreachable registry does not stop the job: it starts on rules alone and keeps asking."""
    if not args.model_registry:
        return None
    from pipelines.model_serving import ModelServingSettings, RegistryModels

    serving = ModelServingSettings.from_config(args.model_registry, settings.models)
    with warnings.catch_warnings():  # MLflow's imports change the warning filters for the whole process
        active = RegistryModels(serving).start().active()
    cited = [f"{m.name} v{m.version} (champion)" for m in active.champions]
    cited += [f"{m.name} v{m.version} (challenger, shadow)" for m in active.challengers]
    print(f"journey_job: models from {args.model_registry}: {', '.join(cited) or 'none'}"
          + (f"; {active.note}" if active.note else ""), file=sys.stderr)
    return serving


def _connector_jars(option: str | None) -> list[str]:
    paths = [Path(p) for p in option.split(",")] if option else [PROJECT_ROOT / "jars" / name for name in DEFAULT_JARS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        hint = "" if option else " (run `make jars`, or give your own with --jars)"
        raise AddressError(f"Kafka connector jar not found: {', '.join(missing)}{hint}")
    return [p.resolve().as_uri() for p in paths]


def _input_records(signals, kafka: KafkaSettings):
    if isinstance(signals, FileAddress):
        return read_lines(signals.path)
    from pipelines.kafka_tools import read_topic

    return (value for _, value in read_topic(signals.bootstrap_servers, signals.topic, kafka.client_properties(),
                                            stop_offsets=kafka.stop_offsets))


def _decoder(signals, settings):
    decoder = SignalDecoder(settings.intake)
    return decoder.decode_avro if isinstance(signals, KafkaAddress) and signals.format == "avro" else decoder.decode_json


def _output_records(address, kafka: KafkaSettings, name: str):
    if isinstance(address, FileAddress):
        return read_records(address.path)
    import orjson

    from pipelines.kafka_tools import read_topic

    schema = {"decisions": DECISION_SCHEMA, "dead-letters": "dead_letter.v1"}.get(name)
    values = (value for _, value in read_topic(address.bootstrap_servers, address.topic, kafka.client_properties()))
    if address.format == "avro" and schema:
        return (decode_record_avro(value, schema) for value in values)
    return (orjson.loads(value) for value in values)


def _end_clock(option: str, scan, bound_ms: int) -> int | None:
    if option == "none":
        return None
    if option == "auto":
        return None if scan is None or scan.latest_event_time is None else scan.latest_event_time - bound_ms - 1
    return parse_instant(option)


if __name__ == "__main__":
    sys.exit(main())
