"""Sources and sinks by address. Only the drivers in jobs/ use this module: the pipeline itself
takes streams and returns streams."""
from __future__ import annotations

from pathlib import Path

from pyflink.common import Duration, WatermarkStrategy
from pyflink.common.serialization import Encoder, SimpleStringSchema
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.connectors.file_system import (BucketAssigner, FileSink, FileSource, OutputFileConfig,
                                                       RollingPolicy, StreamFormat)
from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer, KafkaSource
from pyflink.java_gateway import get_gateway
from pyflink.util.java_utils import get_java_class

from journeys.settings import JourneySettings
from pipelines import PROJECT_ROOT
from pipelines.addresses import AddressError, FileAddress, KafkaAddress
from pipelines.flink import wire
from pipelines.kafka.settings import KafkaSettings, KafkaUnreachable

SOURCE_NAME, SOURCE_UID = "read_signals", "read-signals"
KAFKA_JARS = ("flink-connector-kafka.jar", "kafka-clients.jar")  # in jars/, from `make jars`


def connector_jars(option: str | None) -> list[str]:
    """The Kafka connector jars as file:// URIs: the comma-separated paths given, or the project's jars/."""
    paths = [Path(p) for p in option.split(",")] if option else [PROJECT_ROOT / "jars" / name for name in KAFKA_JARS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        hint = "" if option else " (run `make jars`, or give your own with --jars)"
        raise AddressError(f"Kafka connector jar not found: {', '.join(missing)}{hint}")
    return [p.resolve().as_uri() for p in paths]


# -- sources ------------------------------------------------------------------------------------
def file_source(env: StreamExecutionEnvironment, address: FileAddress) -> DataStream:
    """Raw signal lines from a JSON-lines file or a directory of them."""
    if not address.path.exists():
        raise AddressError(f"{address}: no such file or directory")
    source = FileSource.for_record_stream_format(StreamFormat.text_line_format(wire.RAW_LINE_CHARSET), str(address.path)).build()
    return env.from_source(source, WatermarkStrategy.no_watermarks(), SOURCE_NAME).uid(SOURCE_UID)


def kafka_source(env: StreamExecutionEnvironment, address: KafkaAddress, kafka: KafkaSettings,
                 settings: JourneySettings) -> DataStream:
    """Raw signal values from a Kafka topic, with watermarks made per partition from the record
    timestamps, which producers should set to the signal's event time."""
    builder = (KafkaSource.builder()
               .set_bootstrap_servers(address.bootstrap_servers)
               .set_topics(address.topic)
               .set_group_id(kafka.group_id)
               .set_value_only_deserializer(SimpleStringSchema(wire.RAW_LINE_CHARSET))
               .set_properties(kafka.client_properties())
               .set_starting_offsets(_starting_offsets(kafka.start)))
    if kafka.stop_offsets is not None:
        builder = builder.set_bounded(_exact_offsets(address.topic, kafka.stop_offsets))
    watermarks = (WatermarkStrategy
                  .for_bounded_out_of_orderness(Duration.of_millis(settings.max_out_of_orderness_ms))
                  .with_idleness(Duration.of_millis(settings.idle_source_timeout_ms)))
    return env.from_source(builder.build(), watermarks, SOURCE_NAME).uid(SOURCE_UID)


def policy_update_source(env: StreamExecutionEnvironment, address: FileAddress | KafkaAddress,
                         kafka: KafkaSettings, poll_interval_ms: int = 1000) -> DataStream:
    """The control stream of policy updates: one JSON record per line of a file dropped into a
    watched directory (`journeys policy publish`), or per Kafka record of a topic. It is unbounded.

    Its records carry no event time and no watermarks: it is marked idle whenever it is quiet,
    so the journey operators' watermark is the signals' alone."""
    watermarks = WatermarkStrategy.no_watermarks().with_idleness(Duration.of_millis(poll_interval_ms))
    if isinstance(address, FileAddress):
        address.path.mkdir(parents=True, exist_ok=True)
        source = (FileSource.for_record_stream_format(StreamFormat.text_line_format("UTF-8"), str(address.path))
                  .monitor_continuously(Duration.of_millis(poll_interval_ms)).build())
    else:
        source = (KafkaSource.builder()
                  .set_bootstrap_servers(address.bootstrap_servers)
                  .set_topics(address.topic)
                  .set_group_id(f"{kafka.group_id}-policy")
                  .set_value_only_deserializer(SimpleStringSchema("UTF-8"))
                  .set_properties(kafka.client_properties())
                  .set_starting_offsets(KafkaOffsetsInitializer.earliest())
                  .build())
    return (env.from_source(source, watermarks, "read_policy_updates").uid("read-policy-updates")
            .set_parallelism(1))


def _starting_offsets(start: str) -> KafkaOffsetsInitializer:
    if start == "latest":
        return KafkaOffsetsInitializer.latest()
    if start == "committed":
        # PyFlink's committed_offsets() names a class of the shaded SQL connector jar; call the
        # connector's own OffsetsInitializer instead (docs/kafka.md, "Connector jars").
        jvm = get_gateway().jvm
        reset = jvm.org.apache.kafka.clients.consumer.OffsetResetStrategy.EARLIEST
        return KafkaOffsetsInitializer(_offsets_initializer_class().committedOffsets(reset))
    return KafkaOffsetsInitializer.earliest()


def _exact_offsets(topic: str, offsets: dict[int, int]) -> KafkaOffsetsInitializer:
    """OffsetsInitializer.offsets(...) built with the unshaded TopicPartition (see _starting_offsets)."""
    jvm = get_gateway().jvm
    java_offsets = jvm.org.apache.flink.python.util.HashMapWrapper(None, get_java_class(jvm.java.lang.Long))
    for partition, offset in offsets.items():
        java_offsets.put(jvm.org.apache.kafka.common.TopicPartition(topic, partition), offset)
    return KafkaOffsetsInitializer(_offsets_initializer_class().offsets(java_offsets.asMap()))


def _offsets_initializer_class():
    return get_gateway().jvm.org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer


# -- pre-flight -----------------------------------------------------------------------------------
def check_kafka(addresses: list[KafkaAddress], kafka: KafkaSettings, jar_uris: list[str], timeout_ms: int = 10_000) -> None:
    """Ask each broker, with the job's own Kafka client and client properties (security included),
    whether the job's topics exist: a bad address fails in seconds instead of hanging a job."""
    from pyflink.util.java_utils import add_jars_to_context_class_loader

    add_jars_to_context_class_loader(jar_uris)
    jvm = get_gateway().jvm
    by_broker: dict[str, list[str]] = {}
    for address in addresses:
        by_broker.setdefault(address.bootstrap_servers, []).append(address.topic)
    for bootstrap, topics in by_broker.items():
        properties = jvm.java.util.Properties()
        for key, value in kafka.client_properties().items():
            properties.setProperty(key, value)
        properties.setProperty("bootstrap.servers", bootstrap)
        properties.setProperty("default.api.timeout.ms", str(timeout_ms))
        properties.setProperty("request.timeout.ms", str(min(timeout_ms, 5000)))
        try:
            admin = jvm.org.apache.kafka.clients.admin.AdminClient.create(properties)
        except Exception as error:
            raise KafkaUnreachable(f"the Kafka client properties for {bootstrap} are not valid: {_java_message(error)}") from None
        try:
            names = admin.listTopics().names().get(timeout_ms, jvm.java.util.concurrent.TimeUnit.MILLISECONDS)
        except Exception as error:
            raise KafkaUnreachable(f"cannot reach the Kafka broker at {bootstrap} within {timeout_ms // 1000} s "
                                   f"(with the given client properties): {_java_message(error)}"
                                   f"{_protocol_hint(kafka)}") from None
        finally:
            admin.close(jvm.java.time.Duration.ofSeconds(1))
        missing = [topic for topic in topics if not names.contains(topic)]
        if missing:
            raise KafkaUnreachable(f"Kafka topic {missing[0]!r} does not exist on {bootstrap}; create it first "
                                   f"(python -m pipelines.kafka.tools create-topics --bootstrap {bootstrap} {missing[0]}:4)")


def _protocol_hint(kafka: KafkaSettings) -> str:
    """A TLS or SASL listener does not answer a plaintext client at all: the error is a bare timeout."""
    if "security.protocol" in kafka.client_properties():
        return ""
    return "; if its listener uses TLS or SASL, set security.protocol (docs/kafka.md, \"Security\")"


def _java_message(error: Exception) -> str:
    text = str(getattr(error, "java_exception", error))
    return text.splitlines()[0] if text else type(error).__name__


# -- sinks --------------------------------------------------------------------------------------
CONTROL_SINK = "canary-stop"  # the name (and file prefix) of the job's writes to its control stream


class Sinks:
    """Attaches each output stream to its address. Kafka outputs are Table API sinks (the
    connector's raw format with a key field gives keyed records without custom Java); call
    finish() once, before env.execute()."""

    def __init__(self, env: StreamExecutionEnvironment, kafka: KafkaSettings | None = None,
                 roll_at_checkpoints: bool = False):
        """roll_at_checkpoints: file outputs start a new part file at every checkpoint, so that each
        checkpoint makes what came before it visible (live runs); otherwise a part file rolls
        after a minute, or 128 MB, and becomes visible at the checkpoint after that."""
        self.env = env
        self.kafka = kafka or KafkaSettings()
        self.roll_at_checkpoints = roll_at_checkpoints
        self._tables = None
        self._statements = None

    def add(self, records: DataStream, address: FileAddress | KafkaAddress, name: str, keyed: bool) -> None:
        if isinstance(address, FileAddress):
            self._file(records, address, name)
        else:
            self._kafka(records, address, name, keyed)

    def add_control(self, records: DataStream, address: FileAddress | KafkaAddress) -> None:
        """Control records into the job's own control stream: a file in the watched directory
        (visible, so read, at the next checkpoint), or a record of the control topic."""
        if isinstance(address, FileAddress):
            self._file(records, address, CONTROL_SINK, roll_at_checkpoints=True)
        else:
            self._kafka(records, address, CONTROL_SINK, keyed=False)

    def finish(self) -> None:
        if self._statements is not None:
            self._statements.attach_as_datastream()

    def _file(self, records: DataStream, address: FileAddress, name: str, roll_at_checkpoints: bool = False) -> None:
        """JSON-lines part files in a directory; files become visible when a checkpoint commits them."""
        builder = (FileSink.for_row_format(str(address.path), Encoder.simple_string_encoder())
                   .with_bucket_assigner(BucketAssigner.base_path_bucket_assigner())
                   .with_output_file_config(OutputFileConfig.builder().with_part_prefix(name).with_part_suffix(".jsonl").build()))
        if self.roll_at_checkpoints or roll_at_checkpoints:
            builder = builder.with_rolling_policy(RollingPolicy.on_checkpoint_rolling_policy())
        sink = builder.build()
        records.sink_to(sink).name(f"write_{name.replace('-', '_')}").uid(f"write-{name}")

    def _kafka(self, records: DataStream, address: KafkaAddress, name: str, keyed: bool) -> None:
        from pyflink.table import StreamTableEnvironment

        if self._tables is None:
            self._tables = StreamTableEnvironment.create(self.env)
            self._statements = self._tables.create_statement_set()
        table_name = f"{name.replace('-', '_')}_sink"
        charset = wire.RAW_LINE_CHARSET if address.format == "avro" else "UTF-8"
        options = {
            "connector": "kafka",
            "topic": address.topic,
            "properties.bootstrap.servers": address.bootstrap_servers,
            "value.format": "raw",
            "value.raw.charset": charset,
            "sink.delivery-guarantee": self.kafka.delivery_guarantee,
            "sink.transactional-id-prefix": f"{self.kafka.transactional_id_prefix}-{name}",
            "properties.transaction.timeout.ms": str(self.kafka.transaction_timeout_ms),
        }
        options.update({f"properties.{key}": value for key, value in self.kafka.client_properties().items()})
        if keyed:
            columns = "`record_key` STRING, `record_value` STRING"
            options.update({"key.format": "raw", "key.fields": "record_key", "key.raw.charset": "UTF-8",
                            "value.fields-include": "EXCEPT_KEY"})
            table = self._tables.from_data_stream(records).alias("record_key", "record_value")
        else:
            columns = "`record_value` STRING"
            table = self._tables.from_data_stream(records).alias("record_value")
        rendered = ",\n".join(f"  '{key}' = '{_sql_string(value)}'" for key, value in options.items())
        self._tables.execute_sql(f"CREATE TEMPORARY TABLE `{table_name}` ({columns}) WITH (\n{rendered}\n)")
        self._statements.add_insert(table_name, table)


def _sql_string(value: str) -> str:
    return str(value).replace("'", "''")
