"""Simulated multi-channel customer journeys, with the ground truth the job never reads.

Each customer follows a hidden journey (discovery, consideration, intent, conversion, retention,
at_risk) and emits signals on the web, in the app, in stores, by e-mail and to the call centre.
The hidden stage after each signal is written into the record as `simulator_truth.stage`, a
field outside the signal contract, so the run summary can score the job's stage mapping.

On top of the clean stream the simulator adds what real feeds have: signals delivered out of
order (within the watermark bound), some delivered hours late, exact duplicates, and malformed
records of every kind the intake rejects. Output is JSON lines in delivery order.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterator

import orjson

from journeys.timeutil import DAY, HOUR, MINUTE, SECOND, parse_instant

DEFAULT_START = "2026-01-05T00:00:00Z"


@dataclass(frozen=True)
class SimulationSpec:
    customers: int = 2000
    days: int = 30
    seed: int = 7
    start: str = DEFAULT_START
    malformed_rate: float = 0.01
    duplicate_rate: float = 0.02
    late_rate: float = 0.003
    disorder_rate: float = 0.15
    max_disorder_ms: int = 90 * SECOND
    v1_share: float = 0.3
    cart_value_scale: float = 1.0  # a shifted population: carts this many times dearer (drift tests)


@dataclass(frozen=True)
class Persona:
    name: str
    share: float
    visits_per_week: float
    identifies: float  # chance of ever logging in
    interest: float  # chance a discovery visit turns into product interest
    cart: float  # chance a considering visit adds to cart
    buy: float  # chance an intent visit ends in a purchase
    churn_per_week: float
    service_per_week: float
    complaint_share: float


PERSONAS = (
    Persona("browser", 0.30, 2.0, 0.25, 0.35, 0.15, 0.25, 0.00, 0.02, 0.05),
    Persona("deal_seeker", 0.25, 4.0, 0.80, 0.60, 0.40, 0.35, 0.02, 0.05, 0.10),
    Persona("loyal", 0.25, 3.2, 1.00, 0.70, 0.45, 0.55, 0.00, 0.08, 0.05),
    Persona("service_heavy", 0.10, 2.4, 1.00, 0.50, 0.35, 0.40, 0.03, 0.60, 0.35),
    Persona("churner", 0.10, 2.8, 0.90, 0.55, 0.40, 0.40, 0.25, 0.10, 0.30),
)

_PAGES = ("/", "/deals", "/new", "/stores", "/help", "/blog", "/category/shoes", "/category/outdoor")
_CATEGORIES = ("shoes", "outdoor", "kitchen", "toys", "garden", "electronics")


@dataclass
class _Event:
    at: int
    channel: str
    event_type: str
    truth: str
    customer_id: str | None
    anonymous_id: str | None
    attributes: dict = field(default_factory=dict)
    session_hint: str | None = None


class _Customer:
    """One simulated person and the hidden stage of their journey."""

    def __init__(self, index: int, spec: SimulationSpec, start: int, rng: random.Random):
        self.rng = rng
        self.spec = spec
        self.start = start
        self.end = start + spec.days * DAY
        self.persona = _pick_persona(rng)
        self.customer_id = f"cust-{index:06d}"
        self.devices = [f"anon-{rng.getrandbits(48):012x}" for _ in range(1 if rng.random() < 0.8 else 2)]
        self.will_identify = rng.random() < self.persona.identifies
        self.identified = False
        self.stage = "discovery"
        self.last_activity = None
        self.stage_since = start
        self.churned = False
        self.events: list[_Event] = []
        self.timezone = rng.choice(("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"))
        self._hint: str | None = None

    # -- the hidden stage ----------------------------------------------------------------------
    def _set(self, stage: str, at: int) -> None:
        if stage != self.stage:
            self.stage = stage
            self.stage_since = at

    def _settle(self, at: int) -> None:
        """Stage changes that time alone makes, the same definitions the ontology uses."""
        if self.stage == "conversion" and at >= self.stage_since + 7 * DAY:
            self._set("retention", self.stage_since + 7 * DAY)
        if self.stage == "intent" and self.last_activity is not None and at >= self.last_activity + 3 * DAY:
            self._set("consideration", self.last_activity + 3 * DAY)

    def _emit(self, at: int, channel: str, event_type: str, anonymous: bool = False, **attributes) -> int:
        self._settle(at)
        device = self.devices[0] if channel == "web" else self.devices[-1]
        web_or_app = channel in ("web", "app")
        customer_id = None if anonymous or not self.identified else self.customer_id
        anonymous_id = device if web_or_app else None
        if customer_id is None and anonymous_id is None:
            return at
        self.events.append(_Event(at, channel, event_type, self.stage, customer_id, anonymous_id,
                                  {k: str(v) for k, v in attributes.items()}, self._hint if web_or_app else None))
        self.last_activity = at
        return at + self.rng.randint(15, 120) * SECOND

    # -- visits --------------------------------------------------------------------------------
    def run(self) -> list[_Event]:
        rng = self.rng
        at = self.start + int(rng.random() * self.spec.days * DAY * 0.6)
        rate = self.persona.visits_per_week / (7 * DAY)
        while at < self.end and not self.churned:
            self._maybe_service(at)
            self._maybe_email(at)
            self._maybe_churn(at)
            if self.churned:
                break
            self._visit(at)
            at += int(rng.expovariate(rate)) + 30 * MINUTE
        return [e for e in self.events if e.at < self.end]

    def _visit(self, at: int) -> None:
        rng = self.rng
        self._settle(at)
        channel = "store" if self.identified and rng.random() < 0.08 else ("app" if rng.random() < 0.4 else "web")
        self._hint = f"{channel}-{rng.getrandbits(32):08x}"
        if channel == "store":
            self._store_visit(at)
            return
        at = self._emit(at, channel, "app_open" if channel == "app" else "page_view", page=rng.choice(_PAGES))
        if self.will_identify and not self.identified and rng.random() < 0.45:
            at = self._login(at, channel)
        for _ in range(rng.randint(0, 3)):
            at = self._emit(at, channel, "page_view", page=rng.choice(_PAGES))
        if self.stage == "discovery":
            if rng.random() < self.persona.interest:
                self._set("consideration", at)
                at = self._browse_products(at, channel, rng.randint(1, 4))
        elif self.stage in ("consideration", "conversion", "retention", "at_risk"):
            at = self._browse_products(at, channel, rng.randint(1, 3))
            if rng.random() < self.persona.cart:
                at = self._add_to_cart(at, channel)
                if rng.random() < self.persona.buy:
                    self._purchase(at, channel)
        elif self.stage == "intent":
            at = self._browse_products(at, channel, rng.randint(0, 2))
            if rng.random() < self.persona.buy + 0.2:
                self._purchase(at, channel)

    def _browse_products(self, at: int, channel: str, views: int) -> int:
        for _ in range(views):
            sku = f"sku-{self.rng.randint(1, 500):04d}"
            kind = "search" if self.rng.random() < 0.2 else "product_view"
            at = self._emit(at, channel, kind, sku=sku, category=self.rng.choice(_CATEGORIES))
        return at

    def _add_to_cart(self, at: int, channel: str) -> int:
        self._set("intent", at)
        value = round(self.rng.randint(10, 400) * self.spec.cart_value_scale, 2)
        return self._emit(at, channel, "add_to_cart", sku=f"sku-{self.rng.randint(1, 500):04d}", cart_value=value)

    def _purchase(self, at: int, channel: str) -> int:
        if not self.will_identify:
            return at
        if not self.identified:
            at = self._login(at, channel, signup=True)
        at = self._emit(at, channel, "checkout_start")
        self._set("conversion", at)
        return self._emit(at, channel, "purchase", order_id=f"o-{self.rng.getrandbits(40):010x}",
                          amount=self.rng.randint(10, 400))

    def _login(self, at: int, channel: str, signup: bool = False) -> int:
        self.identified = True
        attributes = {"method": "password"}
        if signup:
            attributes["email"] = f"{self.customer_id}@example.com"
        return self._emit(at, channel, "signup" if signup else "login", **attributes)

    def _store_visit(self, at: int) -> None:
        at = self._emit(at, "store", "store_visit", store=f"store-{self.rng.randint(1, 40):02d}")
        if self.rng.random() < 0.35:
            self._set("conversion", at)
            self._emit(at, "store", "purchase", order_id=f"o-{self.rng.getrandbits(40):010x}",
                       amount=self.rng.randint(10, 400))

    def _maybe_service(self, at: int) -> None:
        rng = self.rng
        if not self.identified or rng.random() > self.persona.service_per_week / 2:
            return
        when = at - rng.randint(1, 48) * HOUR
        if when <= (self.last_activity or self.start):
            return
        self._settle(when)
        self._hint = None
        if rng.random() < self.persona.complaint_share and self.stage in ("consideration", "intent", "conversion", "retention"):
            self._set("at_risk", when)
            after = self._emit(when, "call_center", "complaint", phone=f"+49 30 {rng.randint(1000000, 9999999)}",
                               note="customer says card 4111 1111 1111 1111 was charged twice")
            # Resolved before the visit that comes next, so truth is assigned in time order.
            room = (at - after) // HOUR - 1
            if room >= 1 and rng.random() < 0.7:
                resolved = after + rng.randint(1, min(room, 72)) * HOUR
                self._settle(resolved)
                self._set("retention", resolved)
                self._emit(resolved, "call_center", "escalation_resolved")
            return
        channel = "call_center" if rng.random() < 0.6 else "web"
        kind = "support_call" if channel == "call_center" else "support_chat"
        after = self._emit(when, channel, kind, topic=rng.choice(("delivery", "returns", "billing", "sizing")))
        room = (at - after) // HOUR - 1
        if room >= 1 and rng.random() < 0.3:
            self._emit(after + rng.randint(1, min(room, 48)) * HOUR, "call_center", "support_call", topic="follow_up")

    def _maybe_email(self, at: int) -> None:
        rng = self.rng
        if not self.identified or rng.random() > 0.5:
            return
        when = at - rng.randint(1, 30) * HOUR
        if when <= (self.last_activity or self.start):
            return
        self._hint = None
        if rng.random() < 0.35:
            after = self._emit(when, "email", "email_open", campaign=f"c-{rng.randint(1, 12):02d}")
            if rng.random() < 0.3:
                self._emit(after, "email", "email_click", campaign=f"c-{rng.randint(1, 12):02d}")

    def _maybe_churn(self, at: int) -> None:
        rng = self.rng
        if self.stage not in ("conversion", "retention") or rng.random() > self.persona.churn_per_week / 2:
            return
        when = (self.last_activity or at) + rng.randint(1, 72) * HOUR
        self._settle(when)
        self._set("at_risk", when)
        self._hint = None
        if self.identified and rng.random() < 0.4:
            self._emit(when, "email", "unsubscribe")
        self.churned = True


def _pick_persona(rng: random.Random) -> Persona:
    roll = rng.random()
    for persona in PERSONAS:
        if roll < persona.share:
            return persona
        roll -= persona.share
    return PERSONAS[-1]


def _record(event: _Event, event_id: str, rng: random.Random, spec: SimulationSpec, persona: str, tz: str) -> dict:
    version = 1 if rng.random() < spec.v1_share else 2
    record = {
        "event_id": event_id, "event_time": event.at, "channel": event.channel, "event_type": event.event_type,
        "customer_id": event.customer_id, "anonymous_id": event.anonymous_id, "session_hint": event.session_hint,
        "attributes": event.attributes, "schema_version": version,
    }
    if version == 2:
        record["timezone"] = tz
    record["simulator_truth"] = {"stage": event.truth, "persona": persona}
    return record


def _malformed(rng: random.Random, template: dict, at: int) -> bytes:
    broken = dict(template)
    broken.pop("simulator_truth", None)
    broken["event_id"] = f"bad-{rng.getrandbits(48):012x}"
    kind = rng.randrange(12)
    if kind == 0:
        return orjson.dumps(broken)[: rng.randint(5, 40)]  # truncated JSON
    if kind == 1:
        del broken["event_id"]
    elif kind == 2:
        broken["event_time"] = str(broken["event_time"])
    elif kind == 3:
        broken["channel"] = rng.choice(("fax", "carrier_pigeon", "WEB"))
    elif kind == 4:
        broken["event_time"] = parse_instant("2100-01-01T00:00:00Z")
    elif kind == 5:
        broken["event_time"] = at // 1000  # seconds where milliseconds belong
    elif kind == 6:
        broken["customer_id"] = None
        broken["anonymous_id"] = None
    elif kind == 7:
        return b'{"event_id": "' + broken["event_id"].encode() + b'", "note": "caf\xe9 \xff"}'
    elif kind == 8:
        broken["attributes"] = {"amount": 42.5}
    elif kind == 9:
        return orjson.dumps([broken])
    elif kind == 10:
        return b""
    else:
        broken["schema_version"] = 9
    return orjson.dumps(broken)


# Profile features by persona: (segment, lifetime value range, consent shares e-mail/sms/push, channels it prefers)
_PROFILE_STYLE = {
    "browser": ("casual", (0, 150), (0.6, 0.2, 0.3), ("web", "app")),
    "deal_seeker": ("bargain_hunter", (80, 900), (0.85, 0.5, 0.6), ("email", "app", "web")),
    "loyal": ("loyal", (600, 4000), (0.9, 0.4, 0.7), ("email", "app", "store")),
    "service_heavy": ("high_touch", (200, 1500), (0.7, 0.6, 0.3), ("call_center", "email")),
    "churner": ("lapsing", (50, 700), (0.5, 0.2, 0.2), ("web", "email")),
}


def _profile(person: "_Customer", start: int, rng: random.Random) -> dict:
    segment, (low, high), (email, sms, push), channels = _PROFILE_STYLE[person.persona.name]
    return {
        "customer_id": person.customer_id,
        "lifetime_value": round(rng.uniform(low, high), 2),
        "segment": segment,
        "tenure_days": rng.randint(0, 2000),
        "preferred_channel": rng.choice(channels),
        "consent_email": rng.random() < email,
        "consent_sms": rng.random() < sms,
        "consent_push": rng.random() < push,
        "timezone": person.timezone,
        "event_timestamp": start - 24 * HOUR,
        "created": start - 24 * HOUR,
    }


def simulate(spec: SimulationSpec, profiles: list | None = None) -> Iterator[bytes]:
    """The simulated signals as JSON lines (without newlines), in delivery order. With a list
    for profiles, the CRM profile of every customer with an account is appended to it."""
    start = parse_instant(spec.start)
    rng = random.Random(spec.seed)
    profile_rng = random.Random(spec.seed + 1)
    deliveries: list[tuple[int, int, bytes]] = []
    sequence = 0
    for index in range(spec.customers):
        person = _Customer(index, spec, start, random.Random(rng.getrandbits(64)))
        if profiles is not None and person.will_identify:
            profiles.append(_profile(person, start, profile_rng))
        for event in person.run():
            bits = "%032x" % rng.getrandbits(128)
            event_id = f"{bits[:8]}-{bits[8:12]}-{bits[12:16]}-{bits[16:20]}-{bits[20:]}"
            line = orjson.dumps(_record(event, event_id, rng, spec, person.persona.name, person.timezone))
            delivered = event.at
            roll = rng.random()
            if roll < spec.late_rate:
                delivered += rng.randint(1, 6) * HOUR  # an offline app or a store till syncs hours later
            elif roll < spec.disorder_rate:
                delivered += rng.randint(1, spec.max_disorder_ms)
            sequence += 1
            deliveries.append((delivered, sequence, line))
            if rng.random() < spec.duplicate_rate:
                sequence += 1
                deliveries.append((delivered + rng.randint(1, 90) * SECOND, sequence, line))
            if rng.random() < spec.malformed_rate:
                sequence += 1
                deliveries.append((delivered, sequence, _malformed(rng, orjson.loads(line), event.at)))
    deliveries.sort()
    for _, _, line in deliveries:
        yield line


def write_simulation(spec: SimulationSpec, path, profiles_path=None) -> int:
    """Write the signals (JSON lines), and the customer profiles (parquet, for the feature store)."""
    count = 0
    profiles = [] if profiles_path else None
    with open(path, "wb") as sink:
        for line in simulate(spec, profiles):
            sink.write(line)
            sink.write(b"\n")
            count += 1
    if profiles_path:
        write_profiles(profiles, profiles_path)
    return count


def write_profiles(profiles: list[dict], path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(profiles, schema=pa.schema([
        ("customer_id", pa.string()), ("lifetime_value", pa.float64()), ("segment", pa.string()),
        ("tenure_days", pa.int64()), ("preferred_channel", pa.string()), ("consent_email", pa.bool_()),
        ("consent_sms", pa.bool_()), ("consent_push", pa.bool_()), ("timezone", pa.string()),
        ("event_timestamp", pa.timestamp("ms", tz="UTC")),
        ("created", pa.timestamp("ms", tz="UTC"))]))
    pq.write_table(table, path)


def read_profiles(path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()
