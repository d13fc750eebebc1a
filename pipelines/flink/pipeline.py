"""The journey job as a function from streams to streams.

    raw JSON lines ─▶ first id (JVM) ─▶ map_visitor_journeys ─┬─▶ map_customer_journeys
                                        (keyed by anonymous_id, │  (keyed by customer_id)
                                         else customer_id, or   └─ dead letters
                                         a shared key; intake here)
    Every signal goes through the visitor operator first: a visitor's own signals apply there, its
    handoff and later signals go on to the customer operator, and a customer's own signals pass it
    unread. So each customer's items reach the customer operator in one ordered stream (at
    parallelism 1, exactly the source's order). Both journey operators emit journey log records,
    decisions and the decision log as side outputs. With a control stream of policy updates, it is
    broadcast to both journey operators.

Avro input, and bounded runs above parallelism 1, have a Python parser (parse_signals) ahead of the
visitor operator instead: it decodes Avro, and stamps each item with its read position, by which
the customer operator puts items from several visitor tasks back in order.

Keys, timestamps and watermarks are wired on the Java side (JSON_VALUE, CustomTimestampAssigner
and KeyByKeySelector from flink-python): PyFlink's own key_by and timestamp assigner would each add
a separate Python operator to every record's path. Watermarks only end a bounded run (see
journeys.timers), or order one above parallelism 1: no live signal waits for one.

A raw first id in which the detectors could find personal data (journeys.privacy.PERSONAL_ID_HINT)
is never a key: intake, which replaces such an id by its pseudonym, runs after keyBy, and the JVM
has no hash key to make the pseudonym with. Such a line is keyed instead by one of 256 keys that
such lines share (SHARED and two hex digits of the id's unkeyed SHA-256: which of 256 groups the id
falls in, and nothing more), and the visitor operator keeps each of those visitors' states under
the key intake gives it, its pseudonym, in map state (pipelines.flink.operators.SharedKeys). The
line stays on the path every line takes, so each customer's items keep their order; every other id
is keyed as before, so savepoints restore.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyflink.common import Duration, WatermarkStrategy
from pyflink.datastream import DataStream, KeyedStream
from pyflink.java_gateway import get_gateway

from journeys.gates import Gates
from journeys.keyed import CUSTOMER, VISITOR
from journeys.timers import BOUNDED
from journeys.ontology import Ontology
from journeys.privacy import PERSONAL_ID_HINT
from journeys.outputs import OUTPUT_NAMES, OutputName
from journeys.settings import JourneySettings
from pipelines.config import settings_policy_text
from pipelines.feast.store import FeatureSettings
from pipelines.flink import wire
from pipelines.flink.judge import CONTROL_TAG, JudgeCanary
from pipelines.flink.operators import (KEY_TOKEN_SEPARATOR, POLICY_STATE, SHARED, TALLIES, TALLIES_SPEC, LineIntake,
                                       MapJourneys, MapJourneysWithPolicyUpdates, OutputSpec, ParseSignals,
                                       RouteOutputs, output_tag)
from pipelines.mlflow.serving import ModelServingSettings


CUSTOMER_SLOTS = "customers"  # the customer operator's slot-sharing group, with roles_apart
SHARED_KEY_DIGITS = 2  # hex digits of the SHA-256 of a first id that may hold personal data: one of 256 shared keys


@dataclass(frozen=True)
class InputShape:
    """encoding: json or avro. watermarks: "intake" derives them from event times in the order the
    source delivers records, for a source that is one time-ordered stream (a file); "source"
    takes the watermarks already in the stream, which a Kafka source makes per partition."""

    encoding: str = "json"
    watermarks: str = "intake"


@dataclass(frozen=True)
class JourneyStreams:
    """Each output's elements are shaped by its OutputSpec: newline-joined JSON lines (the
    records of one operator call), or one Row(key, value) per record."""

    decisions: DataStream      # decision records
    journeys: DataStream       # the journey log: signals applied, transitions, sessions, stitches, duplicates
    late: DataStream           # late signals (journey log records of kind "late"), whole, for reprocessing
    dead_letters: DataStream   # rejected input with reason and original bytes, one per element
    feature_rows: DataStream | None = None  # behavioural feature rows, for the offline store (when asked for)
    decision_log: DataStream | None = None  # every decision point, acted on or not, in full (when asked for)
    control_records: DataStream | None = None  # the canary judge's stop records, for the job's control stream


def build_journey_pipeline(raw_lines: DataStream, ontology: Ontology, settings: JourneySettings,
                           end_clock: int | None = None, source: InputShape = InputShape(),
                           outputs: dict[str, OutputSpec] | None = None,
                           features: FeatureSettings | None = None, feature_rows: bool = False,
                           models: ModelServingSettings | None = None, decision_log: bool = False,
                           policy: tuple[str, str] | None = None,
                           policy_updates: DataStream | None = None, metrics: bool = True,
                           progress_s: float | None = None, time_mode: str = BOUNDED,
                           roles_apart: bool = False, gates: Gates | None = None,
                           canary: tuple[str, str, float] | None = None) -> JourneyStreams:
    """Wire the job onto a stream of raw input records (STRING, ISO-8859-1 characters for bytes).

    end_clock: for a bounded input, the event time at which time stops when the input ends (see
    README, "Bounded runs"); None leaves time-driven transitions to the watermark alone.
    outputs: an OutputSpec per output name in journeys.outputs.OUTPUT_NAMES; by default, JSON lines for files.
    features: a Feast repository to read profile features from and push behavioural features to.
    feature_rows: also emit each customer's behavioural feature rows as a stream, for Feast's
    offline store (`journeys features push-offline`).
    models: the MLflow registry and registered names of the stage models that score decisions.
    decision_log: also emit the full record of every decision point, for audit.
    policy: (text, source) of the decision policy at start; the settings' by default.
    policy_updates: a control stream of policy update records (journeys.policy_updates), broadcast
    to the journey operators; a new version is in force without a restart.
    metrics: register the job's Flink metrics (pipelines.flink.metrics); off with python.metric.enabled: false.
    progress_s: the parser says every so many seconds how many signals it has read (None: never).
    time_mode: how the keys' time moves (journeys.timers): BOUNDED for a bounded input (time-driven
    events wait for the key's next signal or the end of input), LIVE for a live one (they happen
    when due, by the wall clock, in silence too).
    roles_apart: the customer operator in a slot-sharing group of its own (CUSTOMER_SLOTS). Every
    Python operator of a TaskManager shares one interpreter and its GIL; on a cluster of one-slot
    TaskManagers this gives each journey role a TaskManager, and an interpreter, of its own.
    gates: judge each canary's gates in the job (journeys.rollback), and with policy_updates stop
    a failing one: its stop records come out as control_records, for the control stream.
    canary: (text, source, share) of a canary policy in force from the start, beside `policy`.
    """
    outputs = {name: (outputs or {}).get(name, OutputSpec()) for name in OUTPUT_NAMES}
    policy = policy or settings_policy_text(settings)
    dead_letter_spec = outputs[OutputName.DEAD_LETTERS]
    parallelism = raw_lines._j_data_stream.getExecutionEnvironment().getParallelism()
    in_read_order = time_mode == BOUNDED and parallelism > 1
    lines = None
    if source.encoding == "json" and not in_read_order:
        # The visitor operator takes the lines itself, keyed by their first id in the JVM: one
        # Python operator fewer on every signal's path (docs/pyflink.md, "GIL").
        lines = LineIntake(settings, source.encoding, dead_letter_spec, metrics, progress_s)
        items = _keyed_by_first_id(raw_lines, settings.privacy.pseudonymize_ids)
    else:
        # A bounded run above parallelism 1 stamps each item with its place in what its parser read,
        # and orders by that (journeys.timers); Avro is decoded here too.
        parser = ParseSignals(settings, source.encoding, dead_letter_spec, metrics, progress_s, in_read_order)
        parsed = (raw_lines.process(parser, output_type=wire.TIMESTAMPED_KEYED_ITEM)
                  .name("parse_signals").uid("parse-signals")
                  .set_parallelism(raw_lines._j_data_stream.getParallelism()))  # read order holds only on a forward edge
        items = _event_time(parsed, settings, "positions" if in_read_order else source.watermarks)

    journey_outputs = {name: outputs[name] for name in (OutputName.DECISIONS, OutputName.JOURNEYS, OutputName.LATE)}
    if decision_log:
        journey_outputs[OutputName.DECISION_LOG] = outputs[OutputName.DECISION_LOG]
    # A canary can come from the control stream, the start, or the model registry's alias canary.
    judged = gates is not None and (policy_updates is not None or canary is not None or models is not None)
    if judged:
        journey_outputs[TALLIES] = TALLIES_SPEC
    customer_outputs = journey_outputs | ({OutputName.FEATURE_ROWS: outputs[OutputName.FEATURE_ROWS]} if feature_rows else {})
    operator = MapJourneys if policy_updates is None else MapJourneysWithPolicyUpdates
    control = policy_updates.broadcast(POLICY_STATE) if policy_updates is not None else None

    def journeys(keyed, function, output_type, role):
        apart = roles_apart and role == CUSTOMER
        if control is None:
            mapped = keyed.process(function, output_type=output_type).name(f"map_{role}_journeys").uid(f"map-{role}-journeys")
            return mapped.slot_sharing_group(CUSTOMER_SLOTS) if apart else mapped
        mapped = (keyed.connect(control).process(function, output_type=wire.ROUTED)
                  .name(f"map_{role}_journeys").uid(f"map-{role}-journeys"))
        if apart:
            mapped = mapped.slot_sharing_group(CUSTOMER_SLOTS)  # its router follows it there
        return (mapped.process(RouteOutputs(function.outputs), output_type=output_type)
                .name(f"route_{role}_outputs").uid(f"route-{role}-outputs"))

    judge_every_ms = gates.judge_every_ms if judged else None
    visitors = journeys(_keyed(items),
                        operator(VISITOR, ontology, settings, end_clock, journey_outputs, policy, models=models,
                                 metrics=metrics, time_mode=time_mode, lines=lines, judge_every_ms=judge_every_ms,
                                 canary=canary),
                        wire.KEYED_ITEM, VISITOR)
    customers = journeys(_keyed(visitors),
                         operator(CUSTOMER, ontology, settings, end_clock, customer_outputs, policy, features, models,
                                  metrics, time_mode, judge_every_ms=judge_every_ms, canary=canary),
                         wire.RECORD, CUSTOMER)

    def both(name):
        tag = output_tag(name, outputs[name])
        return visitors.get_side_output(tag).union(customers.get_side_output(tag))

    journey_log, control_records = both(OutputName.JOURNEYS), None
    if judged:
        tallies = visitors.get_side_output(output_tag(TALLIES, TALLIES_SPEC)).union(
            customers.get_side_output(output_tag(TALLIES, TALLIES_SPEC)))
        judge = JudgeCanary(gates, settings, outputs[OutputName.JOURNEYS], metrics, stops=policy_updates is not None)
        verdicts = (_keyed(tallies).process(judge, output_type=outputs[OutputName.JOURNEYS].type_info())
                    .name("judge_canary").uid("judge-canary").set_parallelism(1))
        journey_log = journey_log.union(verdicts)
        control_records = verdicts.get_side_output(CONTROL_TAG) if policy_updates is not None else None
    dead_letters = output_tag(OutputName.DEAD_LETTERS, outputs[OutputName.DEAD_LETTERS])
    feature_rows_tag = output_tag(OutputName.FEATURE_ROWS, outputs[OutputName.FEATURE_ROWS])
    return JourneyStreams(decisions=both(OutputName.DECISIONS), journeys=journey_log,
                          late=both(OutputName.LATE),
                          dead_letters=(visitors if lines is not None else parsed).get_side_output(dead_letters),
                          feature_rows=customers.get_side_output(feature_rows_tag) if feature_rows else None,
                          decision_log=both(OutputName.DECISION_LOG) if decision_log else None,
                          control_records=control_records)


def _keyed_by_first_id(raw_lines: DataStream, pseudonymized: bool = True) -> DataStream:
    """Raw JSON lines in; Row(key, line and key token) out, read in the JVM at the source's
    parallelism so that each task's lines stay in their order. The key is the line's first id
    (the anonymous id, else the customer id, else ""), read with Flink SQL's JSON_VALUE; where
    ids are pseudonymized and the first id may hold personal data, it is a shared key instead
    (SHARED and two hex digits), and the key token is SHARED. Intake still judges every line in
    Python: a line that is not JSON, or has no id, gets "" and intake rejects it."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    env = StreamExecutionEnvironment(raw_lines._j_data_stream.getExecutionEnvironment())
    tables = StreamTableEnvironment.create(env)
    tables.get_config().set("table.exec.resource.default-parallelism", str(raw_lines._j_data_stream.getParallelism()))
    table = tables.from_data_stream(raw_lines)
    personal = personal_id_condition("first_id") if pseudonymized else "FALSE"
    # The line goes on with its key token after it (pipelines.flink.operators.key_token), by which
    # the operator keeps the states it wrote without asking Java for the key.
    keyed = tables.sql_query(
        f"SELECT CASE WHEN personal THEN CONCAT('{SHARED}', SUBSTR(SHA256(first_id), 1, {SHARED_KEY_DIGITS})) ELSE first_id END "
        f"AS first_id, CONCAT(line, '{KEY_TOKEN_SEPARATOR}', CASE WHEN personal THEN '{SHARED}' ELSE TO_BASE64(first_id) END) "
        f"AS line FROM (SELECT first_id, line, {personal} AS personal FROM ("
        "SELECT COALESCE(NULLIF(JSON_VALUE(text, '$.anonymous_id'), ''), NULLIF(JSON_VALUE(text, '$.customer_id'), ''), '') "
        "AS first_id, line FROM ("
        # JSON as intake reads it, UTF-8: an id written raw and the same id written as \u escapes are one key
        f"SELECT DECODE(ENCODE(f0, '{wire.RAW_LINE_CHARSET}'), 'UTF-8') AS text, f0 AS line FROM {table})))")
    return tables.to_append_stream(keyed, wire.KEYED_ITEM)  # a RowTypeInfo, as the Java key selector needs


def personal_id_condition(column: str) -> str:
    """Flink SQL that is TRUE where the column holds an id in which the detectors could find personal
    data: Java reads PERSONAL_ID_HINT as Python does, and a SQL string literal takes it as written."""
    return f"REGEXP({column}, '{PERSONAL_ID_HINT}')"


def _event_time(items: DataStream, settings: JourneySettings, watermarks: str) -> DataStream:
    """Tuple2(keyed item, timestamp) in; keyed items out, with timestamps and watermarks assigned
    here (from read positions, or from event times with the out-of-orderness bound), or kept as
    the source made them ("source")."""
    jvm = get_gateway().jvm
    eventtime = jvm.org.apache.flink.streaming.api.functions.python.eventtime
    stream = items._j_data_stream
    parallelism = stream.getParallelism()  # the parser's: a forward edge keeps the read order
    if watermarks != "source":
        strategy = (WatermarkStrategy.for_monotonous_timestamps() if watermarks == "positions"
                    else WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(settings.max_out_of_orderness_ms)))
        strategy = strategy.with_idleness(Duration.of_millis(settings.idle_source_timeout_ms))
        stream = (stream
                  .assignTimestampsAndWatermarks(strategy._j_watermark_strategy.withTimestampAssigner(eventtime.CustomTimestampAssigner()))
                  .name("assign_event_time").uid("assign-event-time").setParallelism(parallelism))
    plain = (stream.map(eventtime.RemoveTimestampMapFunction(), wire.KEYED_ITEM.get_java_type_info())
             .name("strip_timestamp").uid("strip-timestamp").setParallelism(parallelism))
    return DataStream(plain)


def _keyed(items: DataStream) -> KeyedStream:
    """keyBy on the item's first field, in Java; the keyed operator then receives the item alone."""
    jvm = get_gateway().jvm
    j_keyed = items._j_data_stream.keyBy(jvm.org.apache.flink.streaming.api.functions.python.KeyByKeySelector(),
                                         wire.KEY.get_java_type_info())
    return KeyedStream(j_keyed, wire.ITEM, items)
