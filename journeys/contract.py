"""The signal, decision and dead-letter contracts: Avro schemas, read with fastavro, and their encodings.

Signals arrive as JSON lines or as Avro (single-object encoding for messages, object container
files for archives), written with schema version 1 or 2. Every accepted signal becomes one
normalized form: a plain dict shaped like the v2 record. Anything that cannot be decoded or
validated becomes a Rejection carrying a machine-readable reason and the exact bytes received.

Unknown top-level JSON fields are ignored, as Avro schema resolution ignores unknown writer
fields, so producers can add fields before readers know them.

Between Flink operators a signal travels as its JSON encoding in a STRING field (see
pipelines/flink/wire.py for the Flink type information): measured on this project, a STRING crossing
costs about 11 microseconds less per event than a ROW with a map field.
"""
from __future__ import annotations

import base64
import io
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from typing import Any, BinaryIO, Iterable, Iterator

import fastavro
import orjson
from fastavro.schema import fingerprint, to_parsing_canonical_form

from journeys.privacy import Masker
from journeys.yamlconf import ConfigError, where
from journeys.timeutil import MINUTE, format_duration, iso, parse_duration, parse_instant, zone

SUPPORTED_SIGNAL_VERSIONS = (1, 2)
CURRENT_SIGNAL_VERSION = 2
AVRO_SINGLE_OBJECT_MAGIC = b"\xc3\x01"
DECISION_VERSION = 6
DECISION_SCHEMA = f"decision.v{DECISION_VERSION}"  # what the job writes; readers of Avro decisions name it

# Machine-readable rejection reasons. Each one is documented in the README's contract section.
REJECTION_REASONS = (
    "empty_record",
    "record_too_large",
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "invalid_avro",
    "unknown_schema_fingerprint",
    "missing_field",
    "wrong_type",
    "unsupported_schema_version",
    "empty_field",
    "field_too_long",
    "unknown_channel",
    "missing_identity",
    "too_many_attributes",
    "event_time_in_future",
    "event_time_too_old",
    "unknown_timezone",
    "invalid_number",
    "internal_error",
    "duplicate_key",
    "invalid_identifier",
    "trailing_bytes",
    "invalid_event_type",
)

# Attributes the core reads as numbers. Each must be a plain decimal (no NaN, no infinity, no
# digit groups) of at most MAX_NUMBER in size, or the signal is rejected: a non-finite amount
# would sit in the journey's state and break every later sum.
NUMERIC_ATTRIBUTES = ("cart_value",)
MAX_NUMBER = 1e12
IDENTIFIERS = ("event_id", "customer_id", "anonymous_id")
_IDS = ("event_id", "customer_id", "anonymous_id", "session_hint")  # all pseudonymized; the first three checked
# An event type is a name: letters, digits, spaces and _ . : / - (page_view, Page View, cart:add).
_EVENT_TYPE = re.compile(r"[\w .:/-]+")
_EVENT_TYPES_CHECKED = 4096  # names remembered as good; a producer sends a few dozen
# Every key in JSON text is a string followed by a colon; string values holding '":' only make this
# count too high, which sends the record to the exact (slower) duplicate check.
_KEY_ENDS = re.compile(rb'"\s*:')
_GAP_BEFORE_COLON = re.compile(rb'"\s+:')
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_PYTHON_TYPES = {"string": str, "enum": str, "long": int, "int": int, "map": dict}
_EXPECTED = {str: "a string", int: "an integer", dict: "an object of strings"}


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """A parsed schema by file stem: 'signal.v1', 'signal.v2', 'decision.v1', 'dead_letter.v1'."""
    text = resources.files("journeys.schemas").joinpath(f"{name}.avsc").read_text()
    return fastavro.parse_schema(json.loads(text))


def signal_schema(version: int) -> dict:
    return load_schema(f"signal.v{version}")


@lru_cache(maxsize=None)
def schema_fingerprint(name: str) -> bytes:
    """CRC-64-AVRO fingerprint, in the little-endian byte order of the single-object encoding."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(load_schema(name)), "CRC-64-AVRO"))


@dataclass(frozen=True)
class IntakeLimits:
    max_record_bytes: int = 64 * 1024
    max_future_skew_ms: int = 5 * MINUTE
    min_event_time_ms: int = parse_instant("2000-01-01T00:00:00Z")
    max_id_length: int = 128
    max_event_type_length: int = 64
    max_attributes: int = 64
    max_attribute_value_length: int = 2048
    max_attribute_key_length: int = 128

    @classmethod
    def from_config(cls, section: dict) -> "IntakeLimits":
        def size(key: str) -> int:
            value = section.get(key, getattr(cls, key))
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{where(section, key)}: intake.{key} must be a whole number above 0, not {value!r}")
            return value

        def checked(key: str, parse, default):
            try:
                return parse(section.get(key, default))
            except ValueError as error:
                raise ConfigError(f"{where(section, key)}: intake.{key}: {error}") from None

        return cls(max_record_bytes=size("max_record_bytes"),
                   max_future_skew_ms=checked("max_future_skew", parse_duration, "5m"),
                   min_event_time_ms=checked("min_event_time", parse_instant, "2000-01-01T00:00:00Z"),
                   max_attributes=size("max_attributes"))


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str
    original: bytes
    event_id: str | None = None

    def to_record(self) -> dict:
        return {
            "reason": self.reason,
            "detail": self.detail,
            "event_id": self.event_id,
            "original": base64.b64encode(self.original).decode("ascii"),
            "schema_version": 1,
        }

    def to_json(self) -> str:
        return orjson.dumps(self.to_record()).decode()


def internal_error(raw: bytes, error: Exception) -> Rejection:
    """A record that made intake raise: a dead letter like any other. The detail names only the
    exception's class, since its message may quote the record."""
    return Rejection("internal_error", f"intake raised {type(error).__name__}", raw)


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    kind: str  # string | long | int | enum | map
    required: bool
    nullable: bool
    default: Any
    symbols: frozenset[str] = frozenset()


def _field_specs(schema: dict) -> tuple[_FieldSpec, ...]:
    specs = []
    for field in schema["fields"]:
        avro_type = field["type"]
        nullable = isinstance(avro_type, list) and "null" in avro_type
        if isinstance(avro_type, list):
            avro_type = next(t for t in avro_type if t != "null")
        symbols: frozenset[str] = frozenset()
        if isinstance(avro_type, dict):
            kind = avro_type["type"]
            if kind == "enum":
                symbols = frozenset(avro_type["symbols"])
        else:
            kind = avro_type
        specs.append(_FieldSpec(field["name"], kind, "default" not in field, nullable, field.get("default"), symbols))
    return tuple(specs)


@lru_cache(maxsize=None)
def signal_channels() -> tuple[str, ...]:
    """The channels of the signal contract."""
    return tuple(next(s.symbols for s in _field_specs(signal_schema(2)) if s.name == "channel"))


class SignalDecoder:
    """Turns raw bytes into normalized signals, or into rejections. One per task; cheap to call."""

    def __init__(self, limits: IntakeLimits | None = None, masker: Masker | None = None):
        self.limits = limits or IntakeLimits()
        self.masker = masker
        self._specs = {version: _field_specs(signal_schema(version)) for version in SUPPORTED_SIGNAL_VERSIONS}
        # Per field: (name, Python type, required, default, enum symbols or None), for the hot path.
        self._checks = {version: tuple((spec.name, _PYTHON_TYPES[spec.kind], spec.required, spec.default,
                                        spec.symbols if spec.kind == "enum" else None) for spec in specs)
                        for version, specs in self._specs.items()}
        self._v2_defaults = {s.name: s.default for s in self._specs[2] if not s.required}
        self._writer_by_fingerprint = {
            schema_fingerprint(f"signal.v{version}"): version for version in SUPPORTED_SIGNAL_VERSIONS
        }
        self.channels = next(s.symbols for s in self._specs[2] if s.name == "channel")
        self._good_event_types: set[str] = set()

    # -- JSON lines -------------------------------------------------------------------------
    def decode_json(self, raw: bytes, now_ms: int) -> dict | Rejection:
        try:
            return self._decode_json(raw, now_ms)
        except Exception as error:  # noqa: BLE001 - whatever one record does, it becomes a rejection
            return internal_error(raw, error)

    def _decode_json(self, raw: bytes, now_ms: int) -> dict | Rejection:
        if len(raw) > self.limits.max_record_bytes:
            return Rejection("record_too_large", f"{len(raw)} bytes; the limit is {self.limits.max_record_bytes}", raw)
        if not raw.strip():
            return Rejection("empty_record", "the line is empty", raw)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as utf_error:
                return Rejection("invalid_utf8", f"not UTF-8 at byte {utf_error.start}", raw)
            return Rejection("invalid_json", str(error), raw)
        if type(obj) is not dict:
            return Rejection("not_an_object", f"a JSON {type(obj).__name__}, not an object", raw)
        try:
            _no_duplicate_keys(raw, obj)
            return self._normalize(obj, now_ms)
        except _Invalid as invalid:
            return Rejection(invalid.reason, invalid.detail, raw, self._shown_event_id(obj.get("event_id")))

    # -- Avro --------------------------------------------------------------------------------
    def decode_avro(self, raw: bytes, now_ms: int) -> dict | Rejection:
        """One Avro single-object-encoded signal (magic C3 01, schema fingerprint, body)."""
        try:
            return self._decode_avro(raw, now_ms)
        except Exception as error:  # noqa: BLE001 - whatever one record does, it becomes a rejection
            return internal_error(raw, error)

    def _decode_avro(self, raw: bytes, now_ms: int) -> dict | Rejection:
        if len(raw) > self.limits.max_record_bytes:
            return Rejection("record_too_large", f"{len(raw)} bytes; the limit is {self.limits.max_record_bytes}", raw)
        if len(raw) < 10 or raw[:2] != AVRO_SINGLE_OBJECT_MAGIC:
            return Rejection("invalid_avro", "no Avro single-object header (C3 01 and an 8-byte fingerprint)", raw)
        version = self._writer_by_fingerprint.get(raw[2:10])
        if version is None:
            return Rejection("unknown_schema_fingerprint", f"schema fingerprint {raw[2:10].hex()} is not signal v1 or v2", raw)
        body = io.BytesIO(raw[10:])
        try:
            record = fastavro.schemaless_reader(body, signal_schema(version), signal_schema(2))
        except Exception as error:  # fastavro raises many types for truncated or corrupt bodies
            return Rejection("invalid_avro", f"cannot read the body as signal v{version}: {type(error).__name__}", raw)
        if body.tell() != len(raw) - 10:
            return Rejection("trailing_bytes", f"{len(raw) - 10 - body.tell()} bytes after the signal's body", raw)
        return self.decode_avro_record(record, raw, now_ms)

    def decode_avro_record(self, record: dict, original: bytes, now_ms: int) -> dict | Rejection:
        """A record already read by fastavro (from a message or a container file)."""
        moment = record.get("event_time")
        if isinstance(moment, datetime):
            record = dict(record, event_time=(moment - _EPOCH) // _ONE_MS)
        try:
            return self._normalize(record, now_ms)
        except _Invalid as invalid:
            return Rejection(invalid.reason, invalid.detail, original, self._shown_event_id(record.get("event_id")))

    def _check_event_type(self, event_type: str) -> None:
        """An event type reaches the journey log and the summary, so it must be a name, and one
        in which the privacy scan finds nothing (no phone number sent as an event type)."""
        if _EVENT_TYPE.fullmatch(event_type) is None or event_type.isspace():
            raise _Invalid("invalid_event_type", "event_type may hold only letters, digits, spaces and _ . : / -")
        if self.masker is not None and self.masker.finds(event_type):
            raise _Invalid("invalid_event_type", "event_type holds what the privacy scan masks")
        if len(self._good_event_types) < _EVENT_TYPES_CHECKED:
            self._good_event_types.add(event_type)

    def _shown_event_id(self, value) -> str | None:
        """A rejected record's event id, for finding it again, where it is a plain id: not one
        that is too long, holds invisible characters, or holds what the privacy scan would mask.
        The original bytes keep it either way."""
        if type(value) is not str or not 0 < len(value) <= self.limits.max_id_length or not value.isprintable():
            return None
        if self.masker is not None and self.masker.finds(value):
            return None
        return value

    def read_avro_container(self, source: BinaryIO, now_ms: int) -> Iterator[dict | Rejection]:
        """Every signal in an Avro object container file written with signal schema v1 or v2."""
        reader = fastavro.reader(source, reader_schema=signal_schema(2))
        writer = reader.writer_schema
        for record in reader:
            yield self.decode_avro_record(record, _encode_single(record, writer), now_ms)

    # -- validation ---------------------------------------------------------------------------
    def _normalize(self, obj: dict, now_ms: int) -> dict:
        version = obj.get("schema_version")
        if version is None:
            raise _Invalid("missing_field", "schema_version is required")
        if type(version) is not int:
            raise _Invalid("wrong_type", f"schema_version must be an integer, got {type(version).__name__}")
        checks = self._checks.get(version)
        if checks is None:
            raise _Invalid("unsupported_schema_version", f"schema_version {version}; this reader accepts {SUPPORTED_SIGNAL_VERSIONS}")
        signal = {}
        for name, kind, required, default, symbols in checks:
            value = obj.get(name)
            if value is None:
                if required:
                    raise _Invalid("missing_field", f"{name} is required")
                value = {} if kind is dict else default
            elif type(value) is not kind:
                raise _Invalid("wrong_type", f"{name} must be {_EXPECTED[kind]}, got {type(value).__name__}")
            elif symbols is not None and value not in symbols:
                raise _Invalid(f"unknown_{name}", f"{name} is not one of {sorted(symbols)}")  # the value may be anything
            elif kind is dict:
                for key, item in value.items():
                    if type(item) is not str:
                        raise _Invalid("wrong_type", f"{name} values must be strings, got {type(item).__name__}")
            signal[name] = value
        if version != CURRENT_SIGNAL_VERSION:
            for name, default in self._v2_defaults.items():
                signal.setdefault(name, default)
            # Version 1 had no time zone: its signals say nothing of where the customer is, and
            # the schema's default (UTC) would claim they said UTC, which quiet hours would believe.
            signal["timezone"] = ""
        self._check_content(signal, now_ms)
        if self.masker is not None:
            signal["attributes"] = self.masker.mask_attributes(signal["attributes"])
        return signal

    def _check_content(self, signal: dict, now_ms: int) -> None:
        limits = self.limits
        event_id = signal["event_id"]
        if not event_id:
            raise _Invalid("empty_field", "event_id is empty")
        if len(event_id) > limits.max_id_length:
            raise _Invalid("field_too_long", f"event_id has {len(event_id)} characters; the limit is {limits.max_id_length}")
        if not signal["event_type"]:
            raise _Invalid("empty_field", "event_type is empty")
        if len(signal["event_type"]) > limits.max_event_type_length:
            raise _Invalid("field_too_long", f"event_type has {len(signal['event_type'])} characters")
        if signal["event_type"] not in self._good_event_types:
            self._check_event_type(signal["event_type"])
        masker = self.masker
        pseudonyms = masker.pseudonyms if masker is not None and masker.pseudonymize_ids else None
        for name in _IDS:
            value = signal[name]
            if value is None:
                continue
            if value == "" and name != "event_id":
                signal[name] = None
                continue
            if len(value) > limits.max_id_length:
                raise _Invalid("field_too_long", f"{name} has {len(value)} characters; the limit is {limits.max_id_length}")
            # Unrelated customers must not merge: no blank ids, and none told apart only by
            # characters nobody sees (control, zero-width and other format characters, NUL).
            if name in IDENTIFIERS and (not value.isprintable() or value.isspace()):
                raise _Invalid("invalid_identifier", f"{name} is blank or holds control or invisible characters")
            if pseudonyms is not None:
                # An e-mail address or phone number used as an id would become a state key, a
                # Kafka key and a Feast entity; its keyed pseudonym does all that as well.
                known = pseudonyms.get(value)
                signal[name] = known if known is not None else masker.pseudonym(value)
        if signal["customer_id"] is None and signal["anonymous_id"] is None:
            raise _Invalid("missing_identity", "a signal needs customer_id, anonymous_id or both")
        attributes = signal["attributes"]
        if len(attributes) > limits.max_attributes:
            raise _Invalid("too_many_attributes", f"{len(attributes)} attributes; the limit is {limits.max_attributes}")
        for key, value in attributes.items():
            if len(key) > limits.max_attribute_key_length:
                raise _Invalid("field_too_long", f"an attribute name has {len(key)} characters; the limit is "
                                                 f"{limits.max_attribute_key_length}")
            if len(value) > limits.max_attribute_value_length:
                raise _Invalid("field_too_long", f"an attribute value has {len(value)} characters; the limit is "
                                                 f"{limits.max_attribute_value_length}")
        for name in NUMERIC_ATTRIBUTES:
            number = attributes.get(name)
            if number and not _a_number(number):
                raise _Invalid("invalid_number", f"attributes.{name} is not a decimal number of at most {MAX_NUMBER:g} in size")
        if signal["timezone"] and zone(signal["timezone"]) is None:  # "" says nothing, as it always has
            raise _Invalid("unknown_timezone", f"timezone is not an IANA time zone ({len(signal['timezone'])} characters)")
        event_time = signal["event_time"]
        if event_time > now_ms + limits.max_future_skew_ms:
            raise _Invalid("event_time_in_future", f"event_time {event_time} ({iso(event_time)}) is more than "
                                                   f"{format_duration(limits.max_future_skew_ms)} ahead of the intake clock")
        if event_time < limits.min_event_time_ms:
            raise _Invalid("event_time_too_old", f"event_time {event_time} ({iso(event_time)}) is before "
                                                 f"{iso(limits.min_event_time_ms)}: seconds where milliseconds belong?")


def _no_duplicate_keys(raw: bytes, obj: dict) -> None:
    """orjson keeps the last of two equal keys; the contract allows one. The count of key ends is
    never below the keys in the text, so when it matches the keys decoded, there is no repeat."""
    # The keys of the object and of the objects in it (attributes, and such unknown fields as a
    # simulator's truth); anything deeper takes the exact check.
    decoded = len(obj)
    for value in obj.values():
        if type(value) is dict:
            decoded += len(value)
    colons = raw.count(b":")
    if colons == decoded:
        return  # every colon ends a key, and there are no more keys than decoded
    if raw.count(b'":') == decoded and _GAP_BEFORE_COLON.search(raw) is None:
        return  # every key is directly followed by its colon, so the plain count counted them all
    if len(_KEY_ENDS.findall(raw)) == decoded:
        return
    json.loads(raw, object_pairs_hook=_unique_pairs)


def _unique_pairs(pairs: list) -> dict:
    decoded = dict(pairs)
    if len(decoded) != len(pairs):
        seen = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        # A key outside the contract could be anything a person typed: name only the contract's own.
        what = repeated if repeated in _CONTRACT_FIELDS else f"a key of {len(repeated)} characters"
        raise _Invalid("duplicate_key", f"{what} appears twice in one object")
    return decoded


_CONTRACT_FIELDS = frozenset({"event_id", "event_time", "channel", "event_type", "customer_id", "anonymous_id",
                              "session_hint", "attributes", "schema_version", "timezone"})


def _a_number(text: str) -> bool:
    return _DECIMAL.fullmatch(text) is not None and abs(float(text)) <= MAX_NUMBER


_ONE_MS = datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=timezone.utc) - _EPOCH


def _avro_ready(signal: dict) -> dict:
    return {key: value for key, value in signal.items() if not key.startswith("_")}


def _encode_single(record: dict, schema: dict) -> bytes:
    buffer = io.BytesIO()
    buffer.write(AVRO_SINGLE_OBJECT_MAGIC)
    buffer.write(bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")))
    fastavro.schemaless_writer(buffer, schema, record)
    return buffer.getvalue()


def encode_json(signal: dict) -> bytes:
    return orjson.dumps(signal)


def encode_avro(signal: dict, version: int = CURRENT_SIGNAL_VERSION) -> bytes:
    """Single-object encoding, as a Kafka message value would carry it."""
    record = _avro_ready(signal)
    record["schema_version"] = version
    return _encode_single(record, signal_schema(version))


def decode_record_avro(raw: bytes, schema_name: str) -> dict:
    """A decision or dead letter written by encode_record_avro, back as the JSON-shaped dict."""
    if raw[:2] != AVRO_SINGLE_OBJECT_MAGIC or raw[2:10] != schema_fingerprint(schema_name):
        raise ValueError(f"not a single-object encoded {schema_name} record")
    schema = load_schema(schema_name)
    record = fastavro.schemaless_reader(io.BytesIO(raw[10:]), schema, schema)
    for key, value in record.items():
        if isinstance(value, datetime):
            record[key] = (value - _EPOCH) // _ONE_MS
        elif isinstance(value, bytes):
            record[key] = base64.b64encode(value).decode("ascii")
    return record


def encode_record_avro(record: dict, schema_name: str) -> bytes:
    """A decision ('decision.v1') or dead letter ('dead_letter.v1') in single-object encoding."""
    if schema_name == "dead_letter.v1" and isinstance(record.get("original"), str):
        record = dict(record, original=base64.b64decode(record["original"]))
    return _encode_single(_avro_ready(record), load_schema(schema_name))


def write_avro_container(signals: Iterable[dict], sink: BinaryIO, version: int = CURRENT_SIGNAL_VERSION) -> int:
    count = 0

    def records():
        nonlocal count
        for signal in signals:
            count += 1
            record = _avro_ready(signal)
            record["schema_version"] = version
            yield record

    fastavro.writer(sink, signal_schema(version), records(), codec="deflate")
    return count

