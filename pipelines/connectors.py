"""Sources and sinks by address. Only the drivers in jobs/ use this module: the pipeline itself
takes streams and returns streams."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from pyflink.common import WatermarkStrategy
from pyflink.common.serialization import Encoder
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.connectors.file_system import (BucketAssigner, FileSink, FileSource, OutputFileConfig,
                                                       StreamFormat)

from pipelines import wire


class AddressError(ValueError):
    """An input or output address that the job cannot use; the message says why."""


def local_path(address: str) -> Path:
    """The filesystem path of a file:// address or a plain path."""
    parsed = urlparse(address)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme else address)
        return path.resolve()
    if parsed.scheme == "kafka":
        raise AddressError(f"{address}: kafka:// addresses are not supported by this release yet; use file://")
    raise AddressError(f"{address}: unsupported address scheme {parsed.scheme!r}; use file:///path")


def signal_source(env: StreamExecutionEnvironment, address: str) -> DataStream:
    """Raw signal lines from a JSON-lines file or a directory of them."""
    path = local_path(address)
    if not path.exists():
        raise AddressError(f"{address}: no such file or directory")
    source = FileSource.for_record_stream_format(StreamFormat.text_line_format(wire.RAW_LINE_CHARSET), str(path)).build()
    return env.from_source(source, WatermarkStrategy.no_watermarks(), "read_signals").uid("read-signals")


def record_sink(records: DataStream, address: str, name: str) -> None:
    """JSON-lines part files in a directory; files become visible when a checkpoint commits them."""
    path = local_path(address)
    sink = (FileSink.for_row_format(str(path), Encoder.simple_string_encoder())
            .with_bucket_assigner(BucketAssigner.base_path_bucket_assigner())
            .with_output_file_config(OutputFileConfig.builder().with_part_prefix(name).with_part_suffix(".jsonl").build())
            .build())
    records.sink_to(sink).name(f"write_{name.replace('-', '_')}").uid(f"write-{name}")
