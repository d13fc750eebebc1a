"""Reading signal files the way the Flink file source reads them, for counts and for the end clock."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

from journeys.contract import Rejection, SignalDecoder


def input_files(path: str | Path) -> list[Path]:
    """A file, or every visible file below a directory, in name order."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts))


def read_lines(path: str | Path, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Lines without terminators, split on \\n, \\r or \\r\\n as java.io.BufferedReader.readLine does."""
    for file in input_files(path):
        with open(file, "rb") as source:
            yield from split_lines(source, chunk_size)


def split_lines(source: BinaryIO, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The lines of an open binary file, as read_lines splits them."""
    buffer = b""
    for chunk in iter(lambda: source.read(chunk_size), b""):
        buffer += chunk
        # A final \r may be the first half of \r\n: keep it for the next chunk.
        cut = len(buffer) - 1 if buffer.endswith(b"\r") else len(buffer)
        body, rest = buffer[:cut], buffer[cut:]
        pieces = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        buffer = pieces.pop() + rest
        yield from pieces
    if buffer.endswith(b"\r"):
        yield buffer[:-1]
    elif buffer:
        yield buffer


@dataclass(frozen=True)
class InputScan:
    lines: int
    accepted: int
    latest_event_time: int | None


def scan_signals(path: str | Path, decoder: SignalDecoder | None = None, now_ms: int | None = None) -> InputScan:
    """How many records a bounded input file holds, and the latest event time the intake will accept."""
    decoder = decoder or SignalDecoder()
    return scan_records(read_lines(path), decoder.decode_json, now_ms)


def scan_records(records: Iterable[bytes], decode: Callable[[bytes, int], dict | Rejection],
                 now_ms: int | None = None) -> InputScan:
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    lines = accepted = 0
    latest = None
    for raw in records:
        lines += 1
        decoded = decode(raw, now)
        if isinstance(decoded, Rejection):
            continue
        accepted += 1
        at = decoded["event_time"]
        if latest is None or at > latest:
            latest = at
    return InputScan(lines, accepted, latest)
