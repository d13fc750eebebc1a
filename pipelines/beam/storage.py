"""What the replay reads (JSON lines, Avro container files, parquet written by pyarrow) and the
parquet tables it writes, with their schemas."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import apache_beam as beam
import orjson
import pyarrow as pa
from apache_beam.io.parquetio import WriteToParquet

from pipelines.tools.files import input_files

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".txt": "jsonl", ".avro": "avro",
           ".parquet": "parquet"}


def input_format(files: list[Path], given: str | None) -> str:
    if given:
        return given
    kinds = {FORMATS.get(f.suffix.lower()) for f in files}
    if None in kinds or len(kinds) != 1:
        raise ValueError(f"cannot tell the input format from the file names ({', '.join(sorted({f.suffix for f in files}))}): "
                         "give --format jsonl, avro or parquet")
    return kinds.pop()


def list_inputs(path: str) -> list[str]:
    """A file, or the visible files of a directory; on a shared file system (gs://, s3://, hdfs://
    ... whatever Beam's FileSystems know), a file, a glob, or a folder ending in /."""
    if "://" not in path:
        return [str(f) for f in input_files(path)]
    from apache_beam.io.filesystems import FileSystems

    pattern = path + "*" if path.endswith("/") else path
    found = [m.path for result in FileSystems.match([pattern]) for m in result.metadata_list]
    return sorted(f for f in found if not Path(f.rsplit("/", 1)[-1]).name.startswith((".", "_")))


class ReadSignals(beam.PTransform):
    """Every record of a file or a directory of files (hidden and _-prefixed files skipped), as
    (position, record): the position is (the file's place among the files in name order, the
    record's place in its file), the order the replay applies each key's signals in."""

    def __init__(self, path: str, fmt: str | None = None):
        super().__init__()
        self.files = list_inputs(path)
        if not self.files:
            raise ValueError(f"{path}: no input files")
        self.format = input_format([Path(f) for f in self.files], fmt)

    def expand(self, pipeline):
        reader = {"jsonl": _jsonl_records, "avro": _avro_records, "parquet": _parquet_records}[self.format]
        return (pipeline | "InputFiles" >> beam.Create(list(enumerate(self.files))) | "Reshuffle" >> beam.Reshuffle()
                | f"Read{self.format.title()}" >> beam.FlatMap(_positioned, reader)
                | "SpreadRecords" >> beam.Reshuffle())


def _positioned(indexed_path: tuple[int, str], reader):
    index, path = indexed_path
    for number, record in enumerate(reader(path)):
        yield (index, number), record


def _jsonl_records(path: str):
    from apache_beam.io.filesystems import FileSystems

    from pipelines.tools.files import split_lines

    with FileSystems.open(path) as source:
        yield from split_lines(source)


def _avro_records(path: str):
    """Decoded signals, or rejections with the record's own Avro bytes."""
    import time

    from apache_beam.io.filesystems import FileSystems

    from journeys.contract import SignalDecoder

    with FileSystems.open(path) as source:
        # Masking happens in the replay's intake (take_signal), as for JSON.
        yield from SignalDecoder().read_avro_container(source, int(time.time() * 1000))


def _parquet_records(path: str):
    """Each row as the JSON object it stands for, so it is validated (and dead-lettered) as JSON is."""
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as handle:
        source = pq.ParquetFile(handle)
        maps = {field.name for field in source.schema_arrow if pa.types.is_map(field.type)}
        for batch in source.iter_batches(batch_size=10_000):
            for row in batch.to_pylist():
                yield orjson.dumps({name: _plain(value, name in maps) for name, value in row.items()}, default=str)


def _plain(value, is_map: bool):
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return int(value.timestamp() * 1000)
    if is_map and value is not None:
        return dict(value)  # pyarrow reads a map as (key, value) pairs
    return value


# -- outputs --------------------------------------------------------------------------------------
MS = pa.int64()  # epoch milliseconds, as in the signal and decision contracts

SCHEMAS = {
    "journeys": pa.schema([
        ("journey", pa.string()), ("anonymous", pa.bool_()), ("stage", pa.string()), ("stage_since", MS),
        ("stage_rule", pa.string()), ("first_seen", MS), ("last_activity", MS),
        ("signal_counts", pa.map_(pa.string(), pa.int64())), ("sessions_closed", pa.int64()),
        ("session_open", pa.bool_()), ("aliases", pa.list_(pa.string()))]),
    "stage_history": pa.schema([
        ("journey", pa.string()), ("anonymous", pa.bool_()), ("at", MS), ("kind", pa.string()),
        ("from_stage", pa.string()), ("stage", pa.string()), ("rule", pa.string()), ("event_id", pa.string()),
        ("reason", pa.string())]),
    "sessions": pa.schema([
        ("session_id", pa.string()), ("journey", pa.string()), ("anonymous", pa.bool_()), ("start", MS), ("end", MS),
        ("signals", pa.int64()), ("channels", pa.list_(pa.string())), ("event_types", pa.map_(pa.string(), pa.int64())),
        ("stage_at_start", pa.string()), ("stage", pa.string()), ("open", pa.bool_())]),
    "decisions": pa.schema([
        ("decision_id", pa.string()), ("journey", pa.string()), ("customer_id", pa.string()),
        ("anonymous_id", pa.string()), ("trigger", pa.string()), ("event_id", pa.string()), ("decided_at", MS),
        ("stage", pa.string()), ("action", pa.string()), ("channel", pa.string()), ("agent", pa.string()),
        ("acted", pa.bool_()), ("control", pa.bool_()), ("mandatory", pa.bool_()), ("fast_path", pa.bool_()),
        ("rule", pa.string()), ("justification", pa.string()), ("event_ids", pa.list_(pa.string())),
        ("candidates", pa.string()), ("suppressions", pa.string()), ("policy", pa.string()),
        ("policy_version", pa.string()), ("rollout_arm", pa.string()), ("model_arm", pa.string()),
        ("features", pa.string()), ("feature_source", pa.string()),
        ("models", pa.string()), ("shadow", pa.string()), ("mapped_stage", pa.string()),
        ("schema_version", pa.int32())]),
    "dead_letters": pa.schema([
        ("reason", pa.string()), ("detail", pa.string()), ("event_id", pa.string()), ("original", pa.binary())]),
    # The layout of the Feast repository's journey_activity_history source (features/data_sources.py).
    "feature_history": pa.schema([
        ("customer_id", pa.string()), ("events_last_hour", pa.int64()), ("events_last_day", pa.int64()),
        ("cart_value", pa.float64()), ("last_channel", pa.string()), ("support_contacts_7d", pa.int64()),
        ("event_timestamp", pa.timestamp("ms", tz="UTC"))]),
    # What the training set's customers did between its decision points: signals by type and channel.
    "signal_mix": pa.schema([("event_type", pa.string()), ("channel", pa.string()), ("signals", pa.int64())]),
    "training_set": pa.schema([
        ("customer_id", pa.string()), ("event_timestamp", pa.timestamp("ms", tz="UTC")), ("decision_id", pa.string()),
        ("stage", pa.string()), ("trigger", pa.string()), ("action", pa.string()), ("channel", pa.string()),
        ("last_event_id", pa.string()),
        ("events_last_hour", pa.int64()), ("events_last_day", pa.int64()), ("cart_value", pa.float64()),
        ("last_channel", pa.string()), ("support_contacts_7d", pa.int64()),
        ("lifetime_value", pa.float64()), ("segment", pa.string()), ("tenure_days", pa.int64()),
        ("preferred_channel", pa.string()), ("converted", pa.bool_()),
        ("churned", pa.bool_()), ("escalated", pa.bool_()), ("label_horizon_ms", pa.int64()),
        ("label_complete", pa.bool_())]),
}


def decision_row(record: dict) -> dict:
    row = {name: record.get(name) for name in SCHEMAS["decisions"].names}
    for name, empty in (("features", {}), ("models", []), ("shadow", []), ("candidates", []), ("suppressions", {})):  # JSON text: their shapes vary
        row[name] = orjson.dumps(record.get(name) or empty, option=orjson.OPT_SORT_KEYS).decode()
    return row


def dead_letter_row(record: dict) -> dict:
    return {"reason": record["reason"], "detail": record["detail"], "event_id": record["event_id"],
            "original": record["original"]}


def _timestamped(row: dict) -> dict:
    return row | {"event_timestamp": dt.datetime.fromtimestamp(row["event_timestamp"] / 1000, tz=dt.timezone.utc)}


def _feature_history_row(row: dict) -> dict:
    return _timestamped({name: row.get(name) for name in SCHEMAS["feature_history"].names})


ROW_SHAPES = {"decisions": decision_row, "dead_letters": dead_letter_row, "feature_history": _feature_history_row,
              "training_set": _timestamped}
SOURCES = {"feature_history": "feature_rows", "training_set": "training_rows"}


def write_table(rows, name: str, out_dir: str, single_file: str | None = None):
    """One table as parquet part files in out_dir/name/ (or one file at single_file), with pyarrow."""
    shape = ROW_SHAPES.get(name)
    if shape is not None:
        rows = rows | f"Shape{name.title()}" >> beam.Map(shape)
    if single_file:
        sink = WriteToParquet(single_file, SCHEMAS[name], num_shards=1, shard_name_template="")
    else:
        sink = WriteToParquet(f"{out_dir.rstrip('/')}/{name}/part", SCHEMAS[name], file_name_suffix=".parquet")
    return rows | f"Write{name.title().replace('_', '')}" >> sink
