"""Journey state and its compact, versioned wire form.

The state of one key lives in one Flink ValueState<STRING>: read once and written once per
call. The wire form is JSON with short keys and a format version `v`; `decode` upgrades older
versions, so a savepoint written by an older release still restores. Nothing is pickled.

A key's state has three parts:
- the buffer: signals waiting for the watermark, the event ids seen lately, and the clock up to
  which the key has been processed;
- the journey itself (None once a journey closes);
- for an anonymous id, its links to customers once the visitor has identified.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import orjson

WIRE_VERSION = 1

# A buffered item: [event_time, event_id, kind, payload, ingested_at, late]
SIGNAL = "s"    # payload: a normalized signal
HANDOFF = "h"   # payload: {"journey": <journey wire or None>, "signal": <the identifying signal>}


@dataclass(slots=True)
class Session:
    id: str
    start: int
    last: int
    signals: int = 0
    channels: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    hints: list[str] = field(default_factory=list)
    stage_at_start: str = ""

    def to_wire(self) -> list:
        return [self.id, self.start, self.last, self.signals, self.channels, self.counts, self.hints, self.stage_at_start]

    @classmethod
    def from_wire(cls, wire: list) -> "Session":
        return cls(*wire)


@dataclass(slots=True)
class Journey:
    key: str
    anonymous: bool
    stage: str
    stage_since: int
    evidence: list  # [rule id, event id or None, event time]
    first_seen: int | None = None
    last_activity: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    recent: dict[str, list[int]] = field(default_factory=dict)
    touchpoints: list[list] = field(default_factory=list)  # [event_time, channel, event_type, event_id]
    session: Session | None = None
    sessions_closed: int = 0
    escalated: dict[str, int] = field(default_factory=dict)  # escalation rule -> last fired
    aliases: list[str] = field(default_factory=list)  # anonymous ids merged into this journey

    @property
    def identified(self) -> bool:
        return not self.anonymous

    def to_wire(self) -> dict:
        return {
            "k": self.key, "a": self.anonymous, "st": self.stage, "ss": self.stage_since, "ev": self.evidence,
            "fs": self.first_seen, "la": self.last_activity, "n": self.counts, "r": self.recent,
            "tp": self.touchpoints, "se": self.session.to_wire() if self.session else None,
            "ns": self.sessions_closed, "x": self.escalated, "al": self.aliases,
        }

    @classmethod
    def from_wire(cls, wire: dict) -> "Journey":
        session = wire["se"]
        return cls(wire["k"], wire["a"], wire["st"], wire["ss"], wire["ev"], wire["fs"], wire["la"], wire["n"],
                   wire["r"], wire["tp"], Session.from_wire(session) if session else None, wire["ns"], wire["x"], wire["al"])


@dataclass(slots=True)
class KeyState:
    pending: list[list] = field(default_factory=list)  # buffered items, sorted by (event_time, event_id)
    seen: dict[str, int] = field(default_factory=dict)  # event id -> event time, for deduplication
    clock: int | None = None  # event time up to which this key has been processed
    timer_at: int | None = None  # earliest event-time timer registered and not yet fired
    ended: bool = False  # the end-of-input flush has run
    journey: Journey | None = None
    links: list[list] = field(default_factory=list)  # anonymous ids only: [event_time, customer_id]
    link_activity: int | None = None  # last signal forwarded through the links

    def is_empty(self) -> bool:
        return self.journey is None and not self.pending and not self.links


def encode(state: KeyState) -> str:
    return orjson.dumps({
        "v": WIRE_VERSION, "p": state.pending, "sn": state.seen, "c": state.clock, "t": state.timer_at,
        "e": state.ended, "j": state.journey.to_wire() if state.journey else None, "l": state.links, "lx": state.link_activity,
    }).decode()


def decode(text: str | None) -> KeyState | None:
    if text is None:
        return None
    wire = orjson.loads(text)
    version = wire.get("v")
    if version != WIRE_VERSION:
        wire = _upgrade(wire, version)
    journey = wire["j"]
    return KeyState(wire["p"], wire["sn"], wire["c"], wire["t"], wire["e"],
                    Journey.from_wire(journey) if journey else None, wire["l"], wire["lx"])


def _upgrade(wire: dict, version) -> dict:
    # Version 1 is the first wire format. Each later version adds one step here that turns the
    # previous version into the next, so every state ever written can still be read.
    raise ValueError(f"journey state wire version {version!r} is not known to this release (it reads up to {WIRE_VERSION})")
