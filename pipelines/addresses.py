"""Input and output addresses of the journey job.

    file:///data/signals.jsonl            a file, or a directory of part files
    /data/signals.jsonl                   the same, as a plain path
    kafka://broker-1:9092,broker-2:9092/signals?format=avro

A Kafka address names the bootstrap servers and one topic; `format` is json (the default) or
avro (single-object encoded with the project's schemas). Hostnames live in these addresses and
in client property files, never in code.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

FORMATS = ("json", "avro")


class AddressError(ValueError):
    """An input or output address that the job cannot use; the message says why."""


@dataclass(frozen=True)
class FileAddress:
    path: Path

    @property
    def uri(self) -> str:
        return self.path.as_uri()

    def __str__(self) -> str:
        return self.uri


@dataclass(frozen=True)
class KafkaAddress:
    bootstrap_servers: str
    topic: str
    format: str = "json"

    def __str__(self) -> str:
        suffix = "" if self.format == "json" else f"?format={self.format}"
        return f"kafka://{self.bootstrap_servers}/{self.topic}{suffix}"


def parse_address(address: str) -> FileAddress | KafkaAddress:
    parsed = urlparse(address)
    if parsed.scheme in ("", "file"):
        if parsed.query:
            raise AddressError(f"{address}: file addresses take no options")
        return FileAddress(Path(unquote(parsed.path) if parsed.scheme else address).resolve())
    if parsed.scheme == "kafka":
        servers = parsed.netloc
        topic = parsed.path.lstrip("/")
        if not servers or not topic or "/" in topic:
            raise AddressError(f"{address}: a Kafka address is kafka://host:port[,host:port...]/topic")
        for server in servers.split(","):
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                raise AddressError(f"{address}: {server!r} is not host:port")
        options = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        unknown = set(options) - {"format"}
        if unknown:
            raise AddressError(f"{address}: unknown option {sorted(unknown)[0]!r}; Kafka addresses take format=json|avro")
        fmt = options.get("format", "json")
        if fmt not in FORMATS:
            raise AddressError(f"{address}: format {fmt!r}; use json or avro")
        return KafkaAddress(servers, topic, fmt)
    raise AddressError(f"{address}: unsupported scheme {parsed.scheme!r}; use file:///path or kafka://host:port/topic")
