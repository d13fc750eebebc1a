"""The journey job's Python operators. Each stays thin: read state once, call the core in
journeys.*, write state once, register the timers the core asks for, emit what it returns."""
from __future__ import annotations

import time

import orjson
from pyflink.common import Row
from pyflink.common.time import Time
from pyflink.datastream import KeyedProcessFunction, OutputTag, ProcessFunction, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor, StateTtlConfig, ValueStateDescriptor

from journeys.contract import Rejection
from journeys.keyed import CUSTOMER, ROUTE, VISITOR, element_timer
from journeys.ontology import Ontology
from journeys.reference import build_intake, build_roles
from journeys.settings import JourneySettings
from journeys.state import decode, encode
from journeys.transitions import DECISION, JOURNEY
from pipelines import wire

VISITOR_ITEMS = OutputTag("visitor-items", wire.TIMESTAMPED_KEYED_ITEM)
DEAD_LETTERS = OutputTag("dead-letters", wire.RECORD)
JOURNEY_LOG = OutputTag("journey-log", wire.RECORD)
LATE_SIGNALS = OutputTag("late-signals", wire.RECORD)
DECISIONS = OutputTag("decisions", wire.RECORD)

# An element with an empty key and item only moves event time forward on a path that has been
# quiet: the two paths get their watermarks separately, and a path with no data would hold the
# customer operator's watermark back.
HEARTBEAT = Row("", "")
HEARTBEAT_AFTER = 200


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ParseSignals(ProcessFunction):
    """Raw lines in; items for the visitor or customer path out; rejections to the dead letters."""

    def __init__(self, ontology: Ontology, settings: JourneySettings):
        self.ontology = ontology
        self.settings = settings

    def open(self, runtime_context: RuntimeContext):
        self.intake = build_intake(self.ontology, self.settings)
        self.quiet = {VISITOR: 0, CUSTOMER: 0}

    def process_element(self, line: str, ctx: ProcessFunction.Context):
        now = _now_ms()
        taken = self.intake.take(line.encode(wire.RAW_LINE_CHARSET), now, now)
        if isinstance(taken, Rejection):
            yield DEAD_LETTERS, taken.to_json()
            return
        role, key, item, event_time = taken
        element = (Row(key, item), event_time)
        quiet = self.quiet
        quiet[role] = 0
        other = CUSTOMER if role == VISITOR else VISITOR
        quiet[other] += 1
        if quiet[other] >= HEARTBEAT_AFTER:
            quiet[other] = 0
            heartbeat = (HEARTBEAT, self.intake.latest)
            yield (VISITOR_ITEMS, heartbeat) if other == VISITOR else heartbeat
        yield (VISITOR_ITEMS, element) if role == VISITOR else element


class MapJourneys(KeyedProcessFunction):
    """One keyed role of the journey core (journeys.keyed) over RocksDB keyed state.

    An element is only appended to the key's arrivals and given a timer at its event time, so
    arrivals cost no state read. The timer reads the key's state and arrivals once, hands them to
    the core, and writes the new state back once."""

    def __init__(self, role: str, ontology: Ontology, settings: JourneySettings, end_clock: int | None):
        self.role = role
        self.ontology = ontology
        self.settings = settings
        self.end_clock = end_clock

    def open(self, runtime_context: RuntimeContext):
        self.keyed = build_roles(self.ontology, self.settings)[self.role]
        state_descriptor = ValueStateDescriptor("journey", wire.KEY_STATE)
        arrivals_descriptor = ListStateDescriptor("arrivals", wire.ITEM)
        if self.settings.state_ttl_ms > 0:
            ttl = StateTtlConfig.new_builder(Time.milliseconds(self.settings.state_ttl_ms)).build()
            state_descriptor.enable_time_to_live(ttl)
            arrivals_descriptor.enable_time_to_live(ttl)
        self.state = runtime_context.get_state(state_descriptor)
        self.arrivals = runtime_context.get_list_state(arrivals_descriptor)

    def process_element(self, item: str, ctx: KeyedProcessFunction.Context):
        if item:
            self.arrivals.add(item)
            ctx.timer_service().register_event_time_timer(element_timer(item))

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        timer_service = ctx.timer_service()
        arrivals = list(self.arrivals.get() or ())
        if arrivals:
            self.arrivals.clear()
        state, out, register, delete = self.keyed.on_timer(decode(self.state.value()), arrivals, timestamp,
                                                           timer_service.current_watermark(), self.end_clock)
        if state is None:
            self.state.clear()
        else:
            self.state.update(encode(state))
        for at in delete:
            timer_service.delete_event_time_timer(at)
        for at in register:
            timer_service.register_event_time_timer(at)
        return self._emit(out)

    def _emit(self, out: list):
        # Every call into Java releases and retakes the GIL that all Python operators share, so
        # the records of one call leave as one newline-joined element per output.
        journey_lines, decision_lines, late_lines = [], [], []
        for entry in out:
            kind = entry[0]
            if kind == JOURNEY:
                (late_lines if entry[1]["kind"] == "late" else journey_lines).append(orjson.dumps(entry[1]).decode())
            elif kind == DECISION:
                record = entry[1]
                ingested_at = record.pop("_ingested_at", None)
                if ingested_at is not None:
                    record["latency_ms"] = _now_ms() - ingested_at
                decision_lines.append(orjson.dumps(record).decode())
            elif kind == ROUTE:
                yield Row(entry[1], entry[2])
        if journey_lines:
            yield JOURNEY_LOG, "\n".join(journey_lines)
        if decision_lines:
            yield DECISIONS, "\n".join(decision_lines)
        if late_lines:
            yield LATE_SIGNALS, "\n".join(late_lines)

__all__ = ["ParseSignals", "MapJourneys", "VISITOR_ITEMS", "DEAD_LETTERS", "JOURNEY_LOG", "LATE_SIGNALS", "DECISIONS"]
