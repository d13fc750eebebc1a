"""A bounded run's summary, as the job driver writes it with --summary: the input scanned on its
own (how many records, the latest event time the intake accepts), the outputs read back from
their files or topics, and what summarize() makes of them."""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from journeys.contract import DECISION_SCHEMA, SignalDecoder, decode_record_avro
from journeys.outputs import OutputName
from journeys.settings import JourneySettings
from pipelines.addresses import FileAddress, KafkaAddress
from pipelines.kafka.settings import KafkaSettings
from pipelines.reports.summary import format_summary, read_records, read_truth, summarize
from pipelines.tools.files import InputScan, read_lines, scan_records

# The Avro schema of the outputs that may be written as Avro.
AVRO_SCHEMAS = {OutputName.DECISIONS: DECISION_SCHEMA, OutputName.DEAD_LETTERS: "dead_letter.v1"}


@dataclass(frozen=True)
class Runtime:
    job_seconds: float
    wall_seconds: float
    parallelism: int


def input_records(signals: FileAddress | KafkaAddress, kafka: KafkaSettings) -> Iterator[bytes]:
    if isinstance(signals, FileAddress):
        return read_lines(signals.path)
    from pipelines.kafka.tools import read_topic

    return (value for _, value in read_topic(signals.bootstrap_servers, signals.topic, kafka.client_properties(),
                                            stop_offsets=kafka.stop_offsets))


def scan_input(signals: FileAddress | KafkaAddress, kafka: KafkaSettings, settings: JourneySettings) -> InputScan:
    """The records of a bounded input, counted and decoded as the intake would, before the job runs."""
    decoder = SignalDecoder(settings.intake)
    avro = isinstance(signals, KafkaAddress) and signals.format == "avro"
    return scan_records(input_records(signals, kafka), decoder.decode_avro if avro else decoder.decode_json)


def output_records(address: FileAddress | KafkaAddress, kafka: KafkaSettings, name: str) -> Iterator[dict]:
    if isinstance(address, FileAddress):
        return read_records(address.path)
    import orjson

    from pipelines.kafka.tools import read_topic

    values = (value for _, value in read_topic(address.bootstrap_servers, address.topic, kafka.client_properties()))
    schema = AVRO_SCHEMAS.get(name)
    if address.format == "avro" and schema:
        return (decode_record_avro(value, schema) for value in values)
    return (orjson.loads(value) for value in values)


def write_run_summary(path: str | Path, signals: FileAddress | KafkaAddress, outputs: dict, kafka: KafkaSettings,
                      scan: InputScan, end_clock: int | None, runtime: Runtime) -> dict:
    """Summarize a finished bounded run, write the summary to path and print it. outputs: the
    addresses by output name (journeys.outputs.OutputName); the late signals may share the journey log's."""
    journey_log = output_records(outputs[OutputName.JOURNEYS], kafka, OutputName.JOURNEYS)
    late = outputs.get(OutputName.LATE)
    if late is not None and late != outputs[OutputName.JOURNEYS]:
        journey_log = itertools.chain(journey_log, output_records(late, kafka, OutputName.LATE))
    decided = OutputName.DECISION_LOG if OutputName.DECISION_LOG in outputs else OutputName.DECISIONS
    summary = summarize(scan.lines, journey_log, output_records(outputs[decided], kafka, decided),
                        output_records(outputs[OutputName.DEAD_LETTERS], kafka, OutputName.DEAD_LETTERS),
                        read_truth(input_records(signals, kafka)))
    summary["end_clock"] = end_clock
    summary["runtime"] = {"job_seconds": round(runtime.job_seconds, 2), "wall_seconds": round(runtime.wall_seconds, 2),
                          "events_per_second": round(scan.lines / runtime.job_seconds) if runtime.job_seconds else None,
                          "parallelism": runtime.parallelism}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary))
    print(f"  summary written to {path}")
    return summary
