"""journeys import: a third-party clickstream (CSV, TSV or JSON lines) turned into signals.

A mapping YAML says where each signal field comes from. Every row becomes a signal that passes
the signal contract, or a dead-letter line with the row number, the reason and the row as read.

    format: csv                 # csv | tsv | jsonl
    delimiter: ","              # optional
    header: true                # when false, give columns: [...]
    fields:
      event_id: id              # optional; without it, a stable id is derived from the row
      customer_id: user_id      # a column name
      anonymous_id: session_id
      event_type: behavior
      event_time: {column: ts, format: unix_seconds}  # unix_seconds | unix_millis | iso8601 | a strftime pattern
      channel: {value: web}     # a constant
      attributes: [item_id, category_id]              # or {attribute name: column}
    values:
      event_type: {pv: page_view, buy: purchase}      # values not listed pass through unchanged
    null_values: ["", "NA"]
"""
from __future__ import annotations

import csv
import hashlib
import io
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import orjson

from journeys.contract import CURRENT_SIGNAL_VERSION, Rejection, SignalDecoder
from journeys.yamlconf import ConfigError, where
from pipelines.config import read_yaml

FORMATS = ("csv", "tsv", "jsonl")
TIME_FORMATS = ("unix_seconds", "unix_millis", "iso8601")
SIGNAL_FIELDS = ("event_id", "customer_id", "anonymous_id", "event_type", "event_time", "channel",
                 "session_hint", "attributes", "timezone")
REQUIRED_FIELDS = ("event_type", "event_time", "channel")
IMPORT_REASONS = ("missing_column", "missing_value", "bad_event_time", "unreadable_row")


@dataclass(frozen=True)
class FieldSource:
    column: str | None = None
    value: str | None = None
    time_format: str | None = None
    tz: str = "UTC"


@dataclass(frozen=True)
class Mapping:
    format: str
    delimiter: str | None
    header: bool
    columns: tuple[str, ...]
    fields: dict[str, FieldSource]
    attributes: dict[str, str]  # attribute name -> column
    values: dict[str, dict[str, str]]
    null_values: frozenset[str]
    encoding: str = "utf-8"
    schema_version: int = CURRENT_SIGNAL_VERSION
    source: str = field(default="<mapping>", compare=False)


class _Unmappable(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def load_mapping(path: str | Path) -> Mapping:
    return parse_mapping(read_yaml(path), str(path))


def parse_mapping(doc, source: str = "<mapping>") -> Mapping:
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: a mapping file must be a YAML mapping")
    allowed = {"format", "delimiter", "header", "columns", "fields", "values", "null_values", "encoding", "schema_version"}
    for key in doc:
        if key not in allowed:
            raise ConfigError(f"{where(doc, key)}: unknown key {key!r}; expected one of {', '.join(sorted(allowed))}")
    fmt = doc.get("format", "csv")
    if fmt not in FORMATS:
        raise ConfigError(f"{where(doc, 'format')}: format {fmt!r}; use one of {', '.join(FORMATS)}")
    header = bool(doc.get("header", True))
    columns = tuple(str(c) for c in (doc.get("columns") or ()))
    if fmt != "jsonl" and not header and not columns:
        raise ConfigError(f"{where(doc, 'header')}: header is false, so list the columns under 'columns'")
    raw_fields = doc.get("fields")
    if not isinstance(raw_fields, dict):
        raise ConfigError(f"{where(doc, 'fields')}: 'fields' must map signal fields to columns or values")
    fields: dict[str, FieldSource] = {}
    attributes: dict[str, str] = {}
    for name, spec in raw_fields.items():
        if name not in SIGNAL_FIELDS:
            raise ConfigError(f"{where(raw_fields, name)}: {name!r} is not a signal field ({', '.join(SIGNAL_FIELDS)})")
        if name == "attributes":
            if isinstance(spec, (list, tuple)):
                attributes = {str(column): str(column) for column in spec}
            elif isinstance(spec, dict):
                attributes = {str(attribute): str(column) for attribute, column in spec.items()}
            else:
                raise ConfigError(f"{where(raw_fields, name)}: attributes must be a list of columns or a mapping")
            continue
        fields[name] = _field_source(raw_fields, name, spec)
    for name in REQUIRED_FIELDS:
        if name not in fields:
            raise ConfigError(f"{where(doc, 'fields')}: fields must say where {name} comes from")
    if "customer_id" not in fields and "anonymous_id" not in fields:
        raise ConfigError(f"{where(doc, 'fields')}: fields need customer_id, anonymous_id or both")
    values = {}
    for name, table in (doc.get("values") or {}).items():
        if name not in SIGNAL_FIELDS or not isinstance(table, dict):
            raise ConfigError(f"{where(doc.get('values'), name)}: values.{name} must be a mapping of source value to signal value")
        values[name] = {str(k): str(v) for k, v in table.items()}
    delimiter = doc.get("delimiter")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        raise ConfigError(f"{where(doc, 'delimiter')}: delimiter must be one character")
    return Mapping(fmt, delimiter, header, columns, fields, attributes, values,
                   frozenset(str(v) for v in (doc.get("null_values") or [""])), str(doc.get("encoding", "utf-8")),
                   int(doc.get("schema_version", CURRENT_SIGNAL_VERSION)), source)


def _field_source(parent, name, spec) -> FieldSource:
    if isinstance(spec, str):
        return FieldSource(column=spec)
    if not isinstance(spec, dict) or ("column" in spec) == ("value" in spec):
        raise ConfigError(f"{where(parent, name)}: {name} takes a column name, {{column: ...}} or {{value: ...}}")
    for key in spec:
        if key not in ("column", "value", "format", "timezone"):
            raise ConfigError(f"{where(spec, key)}: unknown key {key!r} for {name}")
    time_format = spec.get("format")
    if name == "event_time" and "column" in spec:
        time_format = time_format or "iso8601"
        if time_format not in TIME_FORMATS and "%" not in time_format:
            raise ConfigError(f"{where(spec, 'format')}: event_time format {time_format!r}; use {', '.join(TIME_FORMATS)} or a strftime pattern")
    elif time_format is not None:
        raise ConfigError(f"{where(spec, 'format')}: only event_time takes a format")
    return FieldSource(column=str(spec["column"]) if "column" in spec else None,
                       value=str(spec["value"]) if "value" in spec else None,
                       time_format=time_format, tz=str(spec.get("timezone", "UTC")))


@dataclass
class ImportResult:
    rows: int = 0
    signals: int = 0
    dead_letters: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    behind: int = 0     # signals further back in time than the bound, behind their key's latest (in file order)
    sorted: bool = False


class OrderCheck:
    """How many signals go back in time, within their key (the anonymous id, else the customer id),
    by more than the bound: the job would find them late (docs/time.md)."""

    def __init__(self, bound_ms: int):
        self.bound_ms = bound_ms
        self.latest: dict[str, int] = {}
        self.behind = 0

    def see(self, signal: dict) -> None:
        key = signal["anonymous_id"] or signal["customer_id"]
        at, latest = signal["event_time"], self.latest.get(key)
        if latest is None or at > latest:
            self.latest[key] = at
        elif at < latest - self.bound_ms:
            self.behind += 1


class Importer:
    def __init__(self, mapping: Mapping, decoder: SignalDecoder | None = None):
        self.mapping = mapping
        self.decoder = decoder or SignalDecoder()

    def rows(self, source: io.TextIOBase) -> Iterator[tuple[int, dict | None, str, str | None]]:
        """(row number, row as a dict or None, the row as read, why it could not be read)."""
        mapping = self.mapping
        if mapping.format == "jsonl":
            for number, line in enumerate(source, start=1):
                text = line.rstrip("\r\n")
                try:
                    row = orjson.loads(text)
                except orjson.JSONDecodeError as error:
                    yield number, None, text, f"not JSON: {error}"
                    continue
                if not isinstance(row, dict):
                    yield number, None, text, "not a JSON object"
                    continue
                yield number, row, text, None
            return
        delimiter = mapping.delimiter or ("\t" if mapping.format == "tsv" else ",")
        reader = csv.reader(source, delimiter=delimiter)
        columns = list(mapping.columns)
        if mapping.header:
            header = next(reader, None)
            if header is None:
                return
            columns = columns or header
        for values in reader:
            if not values:
                continue
            text = _as_csv(values, delimiter)
            if len(values) != len(columns):
                yield reader.line_num, None, text, f"{len(values)} values for {len(columns)} columns"
                continue
            yield reader.line_num, dict(zip(columns, values)), text, None

    def signal(self, row: dict, number: int, source_name: str) -> dict:
        mapping = self.mapping
        signal: dict = {"schema_version": mapping.schema_version}
        for name, spec in mapping.fields.items():
            value = self._value(row, spec, name)
            if name == "event_time" and value is not None and spec.column is not None:
                value = _parse_time(value, spec)
            signal[name] = value
        for name in REQUIRED_FIELDS:
            if signal.get(name) is None:
                raise _Unmappable("missing_value", f"no value for {name}")
        attributes = {}
        for attribute, column in mapping.attributes.items():
            value = self._value(row, FieldSource(column=column), f"attributes.{attribute}", required=False)
            if value is not None:
                attributes[attribute] = value
        signal["attributes"] = attributes
        if signal.get("event_id") is None:
            digest = hashlib.blake2b(f"{source_name}\x1f{number}\x1f".encode() + orjson.dumps(row, option=orjson.OPT_SORT_KEYS),
                                     digest_size=12).hexdigest()
            signal["event_id"] = f"imp-{digest}"
        return signal

    def _value(self, row: dict, spec: FieldSource, name: str, required: bool = True) -> str | None:
        if spec.value is not None:
            raw = spec.value
        else:
            if spec.column not in row:
                if required:
                    raise _Unmappable("missing_column", f"column {spec.column!r} (for {name}) is not in the row")
                return None
            raw = row[spec.column]
            if raw is None:
                return None
            raw = raw if isinstance(raw, str) else (orjson.dumps(raw).decode() if isinstance(raw, (dict, list)) else str(raw))
            if raw in self.mapping.null_values:
                return None
        table = self.mapping.values.get(name.split(".")[0])
        return table.get(raw, raw) if table else raw

    def run(self, in_path: str | Path, out_path: str | Path, dead_letter_path: str | Path, sort: bool = False,
            bound_ms: int = 120_000) -> ImportResult:
        """sort: write the signals in event-time order (stable, so ties keep the file's order).
        bound_ms: the lateness bound the order check holds signals to, when not sorting."""
        result = ImportResult(sorted=sort)
        order, kept = OrderCheck(bound_ms), []
        now = int(time.time() * 1000)
        source_name = Path(in_path).name
        with open(in_path, encoding=self.mapping.encoding, errors="replace", newline="") as source, \
                open(out_path, "wb") as out, open(dead_letter_path, "wb") as dead:
            for number, row, text, problem in self.rows(source):
                result.rows += 1
                reason, detail = None, problem
                if row is None:
                    reason = "unreadable_row"
                else:
                    try:
                        encoded = orjson.dumps(self.signal(row, number, source_name))
                    except _Unmappable as error:
                        reason, detail = error.reason, error.detail
                    else:
                        checked = self.decoder.decode_json(encoded, now)
                        if isinstance(checked, Rejection):
                            reason, detail = checked.reason, checked.detail
                        else:
                            if sort:
                                kept.append((checked["event_time"], encoded))
                            else:
                                order.see(checked)
                                out.write(encoded + b"\n")
                            result.signals += 1
                            continue
                result.dead_letters += 1
                result.reasons[reason] = result.reasons.get(reason, 0) + 1
                dead.write(orjson.dumps({"row": number, "reason": reason, "detail": detail, "original": text}) + b"\n")
            kept.sort(key=_event_time_of)
            out.writelines(encoded + b"\n" for _, encoded in kept)
        result.behind = order.behind
        return result


def convert_avro_archive(in_path: str | Path, out_path: str | Path, dead_letter_path: str | Path) -> ImportResult:
    """An Avro container file of signals (schema v1 or v2) as JSON lines; rejected records, with
    their original Avro bytes, to the dead-letter file."""
    result = ImportResult()
    decoder, now = SignalDecoder(), int(time.time() * 1000)
    with open(in_path, "rb") as source, open(out_path, "wb") as out, open(dead_letter_path, "wb") as dead:
        for decoded in decoder.read_avro_container(source, now):
            result.rows += 1
            if isinstance(decoded, Rejection):
                dead.write(orjson.dumps(decoded.to_record()) + b"\n")
                result.dead_letters += 1
                result.reasons[decoded.reason] = result.reasons.get(decoded.reason, 0) + 1
            else:
                out.write(orjson.dumps(decoded) + b"\n")
                result.signals += 1
    return result


def _event_time_of(kept: tuple[int, bytes]) -> int:
    return kept[0]


def _as_csv(values: list[str], delimiter: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="").writerow(values)
    return buffer.getvalue()


def _parse_time(raw: str, spec: FieldSource) -> int:
    fmt = spec.time_format
    try:
        if fmt == "unix_seconds":
            return int(round(float(raw) * 1000))
        if fmt == "unix_millis":
            return int(float(raw))
        if fmt == "iso8601":
            text = raw.strip()
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        else:
            moment = datetime.strptime(raw, fmt)
    except (ValueError, OverflowError) as error:
        raise _Unmappable("bad_event_time", f"{raw!r} is not a {fmt} time: {error}") from None
    if moment.tzinfo is None:
        from zoneinfo import ZoneInfo
        moment = moment.replace(tzinfo=timezone.utc if spec.tz == "UTC" else ZoneInfo(spec.tz))
    return int(moment.timestamp() * 1000)
