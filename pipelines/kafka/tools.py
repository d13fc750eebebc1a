"""Kafka helpers around the journey job: topics, producing signals, reading topics to their end,
and the pre-flight checks that make a bad address fail in seconds instead of hanging.

    python -m pipelines.kafka.tools create-topics --bootstrap HOST:PORT signals:4 decisions:4 ...
    python -m pipelines.kafka.tools produce --bootstrap HOST:PORT --topic signals FILE [--format avro]
    python -m pipelines.kafka.tools consume --bootstrap HOST:PORT --topic decisions

Each command takes the job's client properties (--kafka-properties FILE, --kafka-property KEY=VALUE),
so that it reaches a TLS or SASL listener the way the job does (docs/kafka.md, "Security").
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from journeys.contract import Rejection, SignalDecoder, encode_avro
from journeys.yamlconf import ConfigError
from pipelines.kafka.settings import KafkaUnreachable, load_properties_file, parse_property

CLIENT_LOG_LEVEL = 3  # librdkafka: errors only; it logs every closed connection at level 6


# Java client properties that librdkafka (confluent-kafka) reads the same way.
_SHARED_PROPERTIES = ("security.protocol", "sasl.mechanism", "client.id", "ssl.key.password",
                      "ssl.endpoint.identification.algorithm")
_JAAS_CREDENTIALS = re.compile(r'username="([^"]*)"\s+password="([^"]*)"')


def librdkafka_properties(properties: dict[str, str] | None) -> dict[str, str]:
    """The job's Java-style client properties as librdkafka takes them, for these tools: shared
    settings as they are, SASL PLAIN/SCRAM credentials out of sasl.jaas.config, and a PEM
    truststore as ssl.ca.location. Java-only settings are left out."""
    properties = properties or {}
    config = {key: properties[key] for key in _SHARED_PROPERTIES if key in properties}
    if config.get("ssl.endpoint.identification.algorithm") == "":
        config["ssl.endpoint.identification.algorithm"] = "none"
    credentials = _JAAS_CREDENTIALS.search(properties.get("sasl.jaas.config", ""))
    if credentials:
        config["sasl.username"], config["sasl.password"] = credentials.groups()
    if properties.get("ssl.truststore.type", "").upper() == "PEM" and "ssl.truststore.location" in properties:
        config["ssl.ca.location"] = properties["ssl.truststore.location"]
    return config


def _client_config(bootstrap: str, properties: dict[str, str] | None) -> dict:
    return {"bootstrap.servers": bootstrap, "log_level": CLIENT_LOG_LEVEL} | librdkafka_properties(properties)


def check_topics(bootstrap: str, topics: Iterable[str], properties: dict[str, str] | None = None,
                 timeout: float = 10.0) -> dict[str, int]:
    """{topic: partitions} for topics that exist; KafkaUnreachable naming the broker or the topic otherwise."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(_client_config(bootstrap, properties))
    try:
        metadata = admin.list_topics(timeout=timeout)
    except Exception as error:
        raise KafkaUnreachable(f"cannot reach the Kafka broker at {bootstrap} within {timeout:.0f} s ({error})") from None
    found = {}
    for topic in topics:
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            raise KafkaUnreachable(f"Kafka topic {topic!r} does not exist on {bootstrap}; create it first "
                                   f"(python -m pipelines.kafka.tools create-topics --bootstrap {bootstrap} {topic}:4)")
        found[topic] = len(described.partitions)
    return found


def create_topics(bootstrap: str, partitions_by_topic: dict[str, int], properties: dict[str, str] | None = None) -> None:
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(_client_config(bootstrap, properties))
    futures = admin.create_topics([NewTopic(topic, partitions, 1) for topic, partitions in partitions_by_topic.items()])
    for future in futures.values():
        try:
            future.result(timeout=30)
        except Exception as error:
            if error.args and getattr(error.args[0], "code", lambda: None)() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise


@dataclass
class ProduceReport:
    records: int = 0
    end_offsets: dict[int, int] = field(default_factory=dict)  # partition -> offset after the last record

    def stop_offsets(self) -> str:
        return ",".join(f"{partition}:{offset}" for partition, offset in sorted(self.end_offsets.items()))


def produce_signals(bootstrap: str, topic: str, lines: Iterable[bytes], encoding: str = "json",
                    properties: dict[str, str] | None = None, key_by: str = "journey") -> ProduceReport:
    """Send raw signal lines as they are (malformed ones too), keyed and stamped with their event
    time, as a well-behaved producer does. With encoding avro, signals that decode are sent
    single-object encoded; lines that do not are sent as they are.

    key_by "journey": by the customer a visitor's device identifies as somewhere in the lines (else
    by the signal's customer or visitor), so that each journey comes through one partition, in
    order (docs/kafka.md, "Ordering"); "first-id": by the signal's customer, else its visitor."""
    from confluent_kafka import Producer

    lines = list(lines)
    owners = journey_owners(lines) if key_by == "journey" else {}

    producer = Producer(_client_config(bootstrap, properties) | {"enable.idempotence": True, "linger.ms": 20,
                                                                  "compression.type": "lz4"})
    report = ProduceReport()
    failures = []

    def delivered(error, message):
        if error is not None:
            failures.append(error)
            return
        partition = message.partition()
        report.end_offsets[partition] = max(report.end_offsets.get(partition, 0), message.offset() + 1)

    decoder = SignalDecoder()
    latest = 1  # the lowest timestamp librdkafka keeps as given (0 means "now")
    for raw in lines:
        key, timestamp, value = _message(raw, encoding, decoder, owners)
        # The record timestamp drives the partition's watermark in the job: a record without a
        # valid event time gets the latest valid one, so that it cannot move event time on.
        latest = max(latest, timestamp or 0)
        while True:
            try:
                producer.produce(topic, value=value, key=key, timestamp=timestamp or latest, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        report.records += 1
        if report.records % 5000 == 0:
            producer.poll(0)
    producer.flush(60)
    if failures:
        raise KafkaUnreachable(f"{len(failures)} records could not be produced to {topic}: {failures[0]}")
    return report


def journey_owners(lines: Iterable[bytes]) -> dict[str, str]:
    """anonymous id -> the customer it first identifies as, from the signals that carry both."""
    decoder, owners = SignalDecoder(), {}
    for raw in lines:
        signal = decoder.decode_json(raw, int(time.time() * 1000))
        if not isinstance(signal, Rejection) and signal["anonymous_id"] and signal["customer_id"]:
            owners.setdefault(signal["anonymous_id"], signal["customer_id"])
    return owners


def _message(raw: bytes, encoding: str, decoder: "SignalDecoder",
             owners: dict[str, str]) -> tuple[bytes | None, int | None, bytes]:
    """(key, timestamp, value) of a valid signal; (None, None, the line as it is) for anything else,
    which the job will reject to its dead letters."""
    signal = decoder.decode_json(raw, int(time.time() * 1000))
    if isinstance(signal, Rejection):
        return None, None, raw
    key = signal["customer_id"] or owners.get(signal["anonymous_id"]) or signal["anonymous_id"]
    value = encode_avro(signal, signal["schema_version"]) if encoding == "avro" else raw
    return key.encode(), signal["event_time"], value


def read_topic(bootstrap: str, topic: str, properties: dict[str, str] | None = None, idle_timeout: float = 10.0,
               stop_offsets: dict[int, int] | None = None) -> Iterator[tuple[bytes | None, bytes]]:
    """Every (key, value) in a topic, from the start of each partition to its end, read_committed.
    The end is the given stop offset of each partition, or else where the fetch responses say it
    is (Tansu's ListOffsets LATEST is not trusted)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    partitions = check_topics(bootstrap, [topic], properties)[topic]
    if stop_offsets is None:
        pending = set(range(partitions))
    else:
        pending = {partition for partition, offset in stop_offsets.items() if offset > 0}
    consumer = Consumer(_client_config(bootstrap, properties) | {
        "group.id": f"journeys-reader-{time.time_ns()}", "enable.auto.commit": False,
        "enable.partition.eof": stop_offsets is None, "isolation.level": "read_committed"})
    consumer.assign([TopicPartition(topic, partition, 0) for partition in pending])
    last_progress = time.time()
    try:
        while pending:
            message = consumer.poll(0.5)
            if message is None:
                if time.time() - last_progress > idle_timeout:
                    raise KafkaUnreachable(f"reading {topic} stalled: partitions {sorted(pending)} did not reach their end "
                                           f"within {idle_timeout:.0f} s")
                continue
            last_progress = time.time()
            partition = message.partition()
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(partition)
                    continue
                raise KafkaUnreachable(f"reading {topic}: {message.error()}")
            if stop_offsets is not None:
                if partition not in pending or message.offset() >= stop_offsets[partition]:
                    continue
                if message.offset() + 1 >= stop_offsets[partition]:
                    pending.discard(partition)
            yield message.key(), message.value()
    finally:
        consumer.close()


class TopicWatch:
    """Every record of some topics from their start, read_committed, each with the wall-clock time
    this consumer received it: (received, topic, value as JSON). It reads in a thread of its own,
    so that receiving goes on while the caller produces; `also` is called with the time on every
    round of that thread (to read committed files beside the topics, say)."""

    def __init__(self, bootstrap: str, topics: list[str], also=None, properties: dict[str, str] | None = None):
        from confluent_kafka import Consumer, TopicPartition

        self.consumer = Consumer(_client_config(bootstrap, properties) | {
            "group.id": f"journeys-watch-{time.time_ns()}", "enable.auto.commit": False,
            "isolation.level": "read_committed",
            # A broker that does not answer a waiting fetch when records arrive (Tansu) would
            # otherwise hold each one up to librdkafka's 500 ms: this watcher times what it sees.
            "fetch.wait.max.ms": 10})
        partitions = check_topics(bootstrap, topics, properties)
        self.consumer.assign([TopicPartition(topic, p, 0) for topic in topics for p in range(partitions[topic])])
        self.seen: list[tuple[float, str, dict]] = []
        self._also = also
        self._running = True
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while self._running:
            message = self.consumer.poll(0.05)
            now = time.time()
            if message is not None and not message.error():
                self.seen.append((now, message.topic(), json.loads(message.value())))
            if self._also is not None:
                self._also(now)

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=5)
        self.consumer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.kafka.tools", description=__doc__.split("\n\n")[0])
    client = argparse.ArgumentParser(add_help=False)
    client.add_argument("--kafka-properties", metavar="FILE",
                        help="client properties file, as the job takes it (security.protocol, sasl.*, ssl.*)")
    client.add_argument("--kafka-property", action="append", default=[], metavar="KEY=VALUE",
                        help="one client property; repeatable")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-topics", parents=[client], help="create topics (name:partitions), if missing")
    create.add_argument("--bootstrap", required=True)
    create.add_argument("topics", nargs="+")
    produce = commands.add_parser("produce", parents=[client],
                                  help="produce a JSON-lines signals file; prints the stop offsets")
    produce.add_argument("--bootstrap", required=True)
    produce.add_argument("--topic", required=True)
    produce.add_argument("--format", choices=("json", "avro"), default="json")
    produce.add_argument("--report", help="also write the report (records, end offsets) to this JSON file")
    produce.add_argument("--key-by", choices=("journey", "first-id"), default="journey",
                         help="journey: each journey in one partition (a device by the customer it identifies as); "
                              "first-id: by customer id, else anonymous id")
    produce.add_argument("file")
    consume = commands.add_parser("consume", parents=[client], help="print a topic's values, start to end, read_committed")
    consume.add_argument("--bootstrap", required=True)
    consume.add_argument("--topic", required=True)
    consume.add_argument("--count", action="store_true", help="print only the number of records")
    args = parser.parse_args(argv)
    try:
        properties = load_properties_file(args.kafka_properties) if args.kafka_properties else {}
        properties.update(parse_property(option) for option in args.kafka_property)
    except ConfigError as error:
        parser.error(str(error))

    if args.command == "create-topics":
        wanted = {}
        for spec in args.topics:
            name, _, partitions = spec.partition(":")
            wanted[name] = int(partitions or 1)
        create_topics(args.bootstrap, wanted, properties)
    elif args.command == "produce":
        from pipelines.tools.files import read_lines

        report = produce_signals(args.bootstrap, args.topic, read_lines(args.file), args.format, properties,
                                 key_by=args.key_by)
        if args.report:
            with open(args.report, "w") as sink:
                json.dump({"records": report.records, "end_offsets": report.end_offsets}, sink)
        print(report.stop_offsets())
    else:
        count = 0
        for _, value in read_topic(args.bootstrap, args.topic, properties):
            count += 1
            if not args.count:
                try:
                    sys.stdout.buffer.write(value + b"\n")
                except BrokenPipeError:  # the reader (head, say) has seen enough
                    break
        if args.count:
            print(count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
