"""Journey state and its compact, versioned wire form.

The state of one key lives in one Flink ValueState<STRING>: read once and written once per
call. The wire form is JSON with short keys and a format version `v`; `decode` upgrades older
versions, so a savepoint written by an older release still restores. Nothing is pickled. Keys a
release adds to the journey (the decision memory: time zone, contacts, complaint, plans, decisions
awaiting outcomes, responses, consent withdrawals, the arm) are optional, so journeys written before them read as having none.

A key's state has three parts:
- its bookkeeping: the event ids seen lately, the clock up to which the key has come, its one
  registered timer, its lag behind the wall clock, and the earliest event time it has applied
  (journeys.keyed);
- the journey itself (None once a journey closes);
- for an anonymous id, its links to customers once the visitor has identified.

The wire form keeps them in sections, so that a call that does not touch the journey (a
duplicate, a forward) does not parse it:

    <meta JSON> RS <journey JSON, or empty> RS <item> GS <item> ...

RS and GS are the ASCII record and group separators, which JSON text can only contain escaped.
The items section is empty from version 2 on; a version-1 state (which buffered items until the
watermark passed them) keeps its buffered items there, and the key applies them at its next call.

An item is one signal (or visitor handoff) on its way through a keyed operator:

    <head JSON> US <payload JSON>,  head = [event_time, event_id, kind, late, ingested_at, key]

`late` is kept for the items of version-1 states, and is false in new items. `ingested_at` is
the wall-clock time intake took the signal, or None.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from journeys.features import Activity

WIRE_VERSION = 4
SECTION = "\x1e"
ITEM_SEPARATOR = "\x1d"
HEAD_SEPARATOR = "\x1f"

SIGNAL = "s"    # payload: a normalized signal
DIRECT = "d"    # payload: a normalized signal that carries no anonymous id, for the customer role
HANDOFF = "h"   # payload: {"journey": <journey wire or None>, "signal": <the identifying signal>}

# Positions in an item head.
AT, EVENT_ID, KIND, LATE, INGESTED_AT, KEY = range(6)


def make_item(head: list, payload) -> str:
    return orjson.dumps(head).decode() + HEAD_SEPARATOR + orjson.dumps(payload).decode()


def item_head(item: str) -> list:
    return orjson.loads(item[:item.index(HEAD_SEPARATOR)])


def item_payload(item: str):
    return orjson.loads(item[item.index(HEAD_SEPARATOR) + 1:])


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
    late_types: list[str] = field(default_factory=list)  # types of signals in the session too late to apply

    def to_wire(self) -> list:
        return [self.id, self.start, self.last, self.signals, self.channels, self.counts, self.hints, self.stage_at_start,
                self.late_types]

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
    touchpoints: list[list] = field(default_factory=list)  # [event_time, channel, event_type]
    session: Session | None = None
    sessions_closed: int = 0
    escalated: dict[str, int] = field(default_factory=dict)  # escalation rule -> last fired
    aliases: list[str] = field(default_factory=list)  # anonymous ids merged into this journey
    activity: Activity = field(default_factory=Activity)  # for the behavioural features
    timezone: str | None = None  # the customer's, from their own devices' latest signal that said (None: none has)
    # acted decisions, for the caps and cross-channel consistency: [decided_at, channel, action,
    # decision_id, stage, stale] (journeys.consistency; the last two missing in older states)
    contacts: list[list] = field(default_factory=list)
    complaint_at: int | None = None  # the latest complaint, for the policy's cooldown
    complaint_open: bool = False     # until an escalation is resolved
    plans: list[list] = field(default_factory=list)  # agents' follow-ups, as FollowUp.to_wire()
    awaiting: dict[str, list] = field(default_factory=dict)  # decision id -> [decided_at, action, channel, agent, control]
    responses: dict[str, int] = field(default_factory=dict)  # outcome -> count (responsiveness)
    withdrawn: dict[str, int] = field(default_factory=dict)  # channel ("*": every channel) -> when consent was withdrawn
    # The identity whose hash places the person in the control group or not (journeys.policy), as
    # [its first decision point (event time; None: none yet), first seen, identity]; stitching keeps
    # the arm already used (journeys.identity). None in states written before it was kept.
    arm: list | None = None

    @property
    def identified(self) -> bool:
        return not self.anonymous

    def arm_identity(self) -> list:
        """The journey's arm (see `arm`), set where a state written before it was kept has none: its
        own key, as first seen and first decided when the journey began."""
        if self.arm is None:
            began = self.first_seen if self.first_seen is not None else 0
            self.arm = [began, began, self.key]
        return self.arm

    def to_wire(self) -> dict:
        return {
            "k": self.key, "a": self.anonymous, "st": self.stage, "ss": self.stage_since, "ev": self.evidence,
            "fs": self.first_seen, "la": self.last_activity, "n": self.counts, "r": self.recent,
            "tp": self.touchpoints, "se": self.session.to_wire() if self.session else None,
            "ns": self.sessions_closed, "x": self.escalated, "al": self.aliases, "ac": self.activity.to_wire(),
            "tz": self.timezone, "co": self.contacts, "ca": self.complaint_at, "cx": self.complaint_open,
            "pl": self.plans, "aw": self.awaiting, "rs": self.responses, "wd": self.withdrawn, "am": self.arm,
        }

    @classmethod
    def from_wire(cls, wire: dict) -> "Journey":
        session = wire["se"]
        return cls(wire["k"], wire["a"], wire["st"], wire["ss"], wire["ev"], wire["fs"], wire["la"], wire["n"],
                   wire["r"], wire["tp"], Session.from_wire(session) if session else None, wire["ns"], wire["x"], wire["al"],
                   Activity.from_wire(wire.get("ac")), wire.get("tz"), wire.get("co", []), wire.get("ca"),
                   wire.get("cx", False), wire.get("pl", []), wire.get("aw", {}), wire.get("rs", {}), wire.get("wd", {}),
                   wire.get("am"))


_UNREAD = object()


class KeyState:
    """One key's state. The journey is decoded from the wire only when something reads it."""

    __slots__ = ("key", "seen", "clock", "timers", "ended", "links", "link_activity", "lag", "first_seen", "backlog",
                 "_journey", "_journey_text")

    def __init__(self, key: str, seen=None, clock=None, timers=None, ended=False, links=None, link_activity=None,
                 lag=None, first_seen=None, backlog=None, journey: Journey | None = None, journey_text: str | None = None):
        self.key = key
        self.seen: dict[str, int] = seen if seen is not None else {}  # event id -> event time, for dedup
        self.clock: int | None = clock          # the latest event time the key has come to
        self.timers: list[int] = timers if timers is not None else []  # its registered timer (at most one)
        self.ended: bool = ended                # the end-of-input flush has run
        self.links: list[list] = links if links is not None else []  # anonymous ids only: [event_time, customer_id]
        self.link_activity: int | None = link_activity  # last signal forwarded through the links
        self.lag: int | None = lag              # wall clock minus event time, at its newest signal
        # The earliest event time the key has applied, across its journeys: which of two identities
        # of one person was seen first. Version 2 states knew it only for the journey they held.
        self.first_seen: int | None = first_seen
        self.backlog: list[str] = backlog if backlog is not None else []  # items a version-1 state buffered
        self._journey = _UNREAD if journey_text else journey
        self._journey_text = journey_text

    @property
    def journey(self) -> Journey | None:
        if self._journey is _UNREAD:
            self._journey = Journey.from_wire(orjson.loads(self._journey_text))
        return self._journey

    @journey.setter
    def journey(self, value: Journey | None) -> None:
        self._journey = value
        self._journey_text = None

    def journey_wire(self) -> str:
        if self._journey is _UNREAD:
            return self._journey_text
        return "" if self._journey is None else orjson.dumps(self._journey.to_wire()).decode()

    def has_journey(self) -> bool:
        return self._journey is _UNREAD or self._journey is not None

    def is_empty(self) -> bool:
        return not self.has_journey() and not self.links and not self.backlog


def encode(state: KeyState) -> str:
    meta = orjson.dumps({
        "v": WIRE_VERSION, "k": state.key, "sn": state.seen, "c": state.clock, "t": state.timers, "e": state.ended,
        "l": state.links, "lx": state.link_activity, "g": state.lag, "fs": state.first_seen,
    }).decode()
    return meta + SECTION + state.journey_wire() + SECTION + ITEM_SEPARATOR.join(state.backlog)


def decode(text: str | None) -> KeyState | None:
    if not text:
        return None
    meta_text, _, rest = text.partition(SECTION)
    journey_text, _, items_text = rest.partition(SECTION)
    meta = orjson.loads(meta_text)
    if meta.get("v") != WIRE_VERSION:
        meta, journey_text = _upgrade(meta, meta.get("v"), journey_text)
    backlog = items_text.split(ITEM_SEPARATOR) if items_text else []
    return KeyState(meta["k"], meta["sn"], meta["c"], meta["t"], meta["e"], meta["l"], meta["lx"], meta["g"],
                    meta["fs"], backlog, journey_text=journey_text or None)


def _upgrade(meta: dict, version, journey_text: str) -> tuple[dict, str]:
    """Each version after the first adds one step here that turns the previous version into the
    next, so every state ever written can still be read: (meta, journey text)."""
    if version == 1:
        # Version 1 buffered items until the watermark passed them ("p": their heads, in the items
        # section) and knew no lag; the buffered items stay in the items section as the backlog.
        meta = {key: value for key, value in meta.items() if key != "p"} | {"v": 2, "g": None}
        version = 2
    if version == 2:
        # Version 2 kept no first sight of the key: the journey it holds began it, or its clock
        # (a visitor that has handed its journey on) is the earliest time known.
        first_seen = orjson.loads(journey_text)["fs"] if journey_text else meta["c"]
        meta = meta | {"v": 3, "fs": first_seen}
        version = 3
    if version == 3:
        # Version 3 took the customer's time zone from any signal, answers and system channels
        # stamped UTC included: it is not known to be the customer's, so the profile's counts until
        # a device reports one. Its journeys keep their own key's arm (Journey.arm_identity).
        if journey_text:
            journey = orjson.loads(journey_text)
            journey.pop("tz", None)
            journey_text = orjson.dumps(journey).decode()
        meta = meta | {"v": 4}
        version = 4
    if version != WIRE_VERSION:
        raise ValueError(f"journey state wire version {version!r} is not known to this release (it reads up to {WIRE_VERSION})")
    return meta, journey_text
