"""What one keyed journey operator does, without an engine: intake, event-time order, identity.

Two roles share this code. The visitor role is keyed by anonymous_id and holds the journeys of
visitors who have not identified; the customer role is keyed by customer_id. A visitor's
identifying signal (login, identify, signup with both ids) hands the visitor's journey to the
customer role in one record, where it merges atomically into the customer's journey; later
anonymous signals of that visitor are forwarded to the customer.

An operator keeps two things per key: the key's state (KeyState, one value) and the items that
arrived since its last timer (a list it only appends to). It calls:

    element_timer(item)                                       -> the timer to register
    on_timer(state, arrivals, fired_at, watermark, end_clock) -> (state, outputs, register, delete)

An arriving item is only appended and gets a timer at its event time: no state is read, which
keeps arrivals cheap. When the watermark passes, the timer takes the arrivals in
(event_time, event_id) order: duplicates and late signals are told apart from the rest, and
what is due is applied, so the result does not depend on arrival order. A signal is late when
intake marked it so, or when its key has already been processed past its event time: it goes
to the journey log as `late`, counts as accepted, and does not change the journey.
"""
from __future__ import annotations

from bisect import bisect_right
from typing import NamedTuple

from journeys.outputs import JourneyLog, LogKind, Routed
from journeys.state import (AT, EVENT_ID, HANDOFF, INGESTED_AT, KEY, KIND, LATE, SIGNAL, Journey, KeyState,
                            item_head, item_payload, make_item)
from journeys.timers import MAX_WATERMARK
from journeys.transitions import Transitions

VISITOR = "visitor"
CUSTOMER = "customer"


def _order(head: list):
    return head[AT], head[EVENT_ID]


class TimerCall(NamedTuple):
    """What one call of a keyed role gives back to its operator."""

    state: KeyState | None  # the key's state to write back (None: clear it)
    out: list               # outputs, as journeys.outputs records
    register: list[int]     # event-time timers to register
    delete: list[int]       # timers made idle by this call


_call = tuple.__new__  # TimerCall(...) at C speed: this runs once per timer


def route(signal: dict, identify_signals) -> tuple[str, str]:
    """Which operator and key a signal goes to first: (VISITOR, anonymous_id) or (CUSTOMER, customer_id)."""
    anonymous_id = signal["anonymous_id"]
    customer_id = signal["customer_id"]
    if anonymous_id is not None and (customer_id is None or signal["event_type"] in identify_signals):
        return VISITOR, anonymous_id
    return CUSTOMER, customer_id


def intake_item(signal: dict, key: str, ingested_at: int | None, late: bool) -> str:
    return make_item([signal["event_time"], signal["event_id"], SIGNAL, late, ingested_at, key], signal)


def element_timer(item: str) -> int:
    """The event time of an item, read from the start of its head without parsing the rest."""
    return int(item[1:item.index(",")])


class KeyedJourneys:
    def __init__(self, transitions: Transitions, role: str, dedupe_horizon_ms: int, dedupe_max_ids: int):
        self.transitions = transitions
        self.role = role
        self.anonymous = role == VISITOR
        self.dedupe_horizon_ms = dedupe_horizon_ms
        self.dedupe_max_ids = dedupe_max_ids
        self.link_expiry_ms = transitions.ontology.anonymous_expiry_ms
        self._identify = transitions.ontology.identify_signals

    # -- what an operator calls ----------------------------------------------------------------
    def on_timer(self, state: KeyState | None, arrivals: list[str], fired_at: int, watermark: int,
                 end_clock: int | None = None) -> TimerCall:
        """The key's new state, its outputs, and the timers to register and delete.

        Afterwards the key has its arrival timers for items not yet due, and one timer at its
        next wake-up; timers made idle by this call are deleted rather than left to fire."""
        out: list = []
        handled_times: set[int] = set()
        if arrivals:
            heads = sorted(((item_head(item), item) for item in arrivals), key=lambda pair: _order(pair[0]))
            if state is None:
                state = KeyState(heads[0][0][KEY])
            for head, item in heads:
                if self._intake(state, head, item, out):
                    handled_times.add(head[AT])
        if state is None:
            return _call(TimerCall, (None, out, [], []))
        state.timers = [t for t in state.timers if t != fired_at]
        previous_timers = state.timers
        state = self._release(state, watermark, end_clock, out, handled_times)
        wakeup = None if watermark >= MAX_WATERMARK or state is None else self.next_wakeup(state)
        stale = {t for t in previous_timers if t != wakeup}
        stale.update(t for t in handled_times if t <= watermark and t != fired_at and t != wakeup)
        register = [wakeup] if wakeup is not None and wakeup not in previous_timers else []
        if state is not None:
            state.timers = [wakeup] if wakeup is not None else []
        return _call(TimerCall, (state, out, register, sorted(stale)))

    def next_wakeup(self, state: KeyState | None) -> int | None:
        if state is None or state.ended:
            return None
        candidates = []
        if state.pending:
            candidates.append(state.pending[0][AT])
        due = self.transitions.next_due(state.journey) if state.has_journey() else None
        if due is not None:
            candidates.append(due)
        if state.links and state.link_activity is not None:
            candidates.append(state.link_activity + self.link_expiry_ms)
        return min(candidates) if candidates else None

    # -- intake --------------------------------------------------------------------------------
    def _intake(self, state: KeyState, head: list, item: str, out: list) -> bool:
        """Buffer an arrived item, or report it as a duplicate or late. True when it needs no more waiting."""
        key = state.key
        at, event_id = head[AT], head[EVENT_ID]
        if head[KIND] == SIGNAL:
            if event_id in state.seen or any(p[EVENT_ID] == event_id and p[KIND] == SIGNAL for p in state.pending):
                out.append(JourneyLog({"kind": LogKind.DUPLICATE, "journey": key, "anonymous": self.anonymous,
                                       "at": at, "event_id": event_id}))
                return True
            if head[LATE] or (state.clock is not None and at <= state.clock):
                state.seen[event_id] = head[LATE] or (at if state.clock is None else max(at, state.clock))
                out.append(JourneyLog({"kind": LogKind.LATE, "journey": key, "anonymous": self.anonymous, "at": at,
                                       "event_id": event_id, "late_by": "intake" if head[LATE] else "journey_clock",
                                       "signal": item_payload(item)}))
                return True
        position = bisect_right(state.pending, _order(head), key=_order)
        state.pending.insert(position, head)
        state.items.insert(position, item)
        return False

    # -- the watermark passed ------------------------------------------------------------------
    def _release(self, state: KeyState, watermark: int, end_clock: int | None, out: list,
                 released_times: set[int]) -> KeyState | None:
        if state.ended:
            return state
        at_end = watermark >= MAX_WATERMARK
        pending = state.pending
        count = len(pending) if at_end else 0
        if not at_end:
            while count < len(pending) and pending[count][AT] <= watermark:
                count += 1
        if count:
            heads, items = pending[:count], state.items[:count]
            del pending[:count]
            del state.items[:count]
            for head, item in zip(heads, items):
                payload = item_payload(item)
                if self.anonymous:
                    self._release_visitor_item(state, head, payload, out)
                else:
                    self._release_customer_item(state, head, payload, out)
                at = head[AT]
                released_times.add(at)
                state.clock = at if state.clock is None else max(state.clock, at)
                if head[KIND] == SIGNAL:
                    state.seen[head[EVENT_ID]] = at
            if not self.anonymous:  # one feature row per call: the store only keeps the latest
                row = self.transitions.feature_row(state.journey)
                if row is not None:
                    out.append(row)
        horizon = end_clock if at_end else watermark
        if horizon is not None:
            if state.links and state.link_activity is not None and state.link_activity + self.link_expiry_ms <= horizon:
                state.links = []
                state.link_activity = None
            if state.has_journey():
                state.journey, ticked = self.transitions.tick(state.journey, horizon)
                out.extend(ticked)
            state.clock = horizon if state.clock is None else max(state.clock, horizon)
        if at_end:
            out.extend(self.transitions.end_of_input(state.journey))
            state.ended = True
        self._forget_old_ids(state)
        if state.is_empty() and not at_end:
            return None
        return state

    # -- the two roles -------------------------------------------------------------------------
    def _release_customer_item(self, state: KeyState, head: list, payload, out: list) -> None:
        key = state.key
        if head[KIND] == HANDOFF:
            visitor = Journey.from_wire(payload["journey"]) if payload["journey"] else None
            state.journey, produced = self.transitions.merge(state.journey, visitor, payload["signal"], key,
                                                             head[INGESTED_AT])
        else:
            state.journey, produced = self.transitions.apply(state.journey, payload, key, False, head[INGESTED_AT])
        out.extend(produced)

    def _release_visitor_item(self, state: KeyState, head: list, signal: dict, out: list) -> None:
        at = head[AT]
        customer_id = signal["customer_id"]
        identifies = customer_id is not None and signal["event_type"] in self._identify
        if state.links:
            if identifies and customer_id != state.links[-1][1]:
                state.links = (state.links + [[at, customer_id]])[-8:]
            target = customer_id if identifies else state.links[-1][1]
            state.link_activity = at
            out.append(Routed(target, make_item([at, head[EVENT_ID], SIGNAL, False, head[INGESTED_AT], target], signal)))
        elif identifies:
            journey = state.journey
            if journey is not None:
                journey, ticked = self.transitions.tick(journey, at)
                out.extend(ticked)
            handoff = {"journey": journey.to_wire() if journey is not None else None, "signal": signal}
            out.append(Routed(customer_id, make_item([at, head[EVENT_ID], HANDOFF, False, head[INGESTED_AT], customer_id],
                                                     handoff)))
            state.journey = None
            state.links = [[at, customer_id]]
            state.link_activity = at
        else:
            state.journey, produced = self.transitions.apply(state.journey, signal, state.key, True, head[INGESTED_AT])
            out.extend(produced)

    def _forget_old_ids(self, state: KeyState) -> None:
        seen = state.seen
        if not seen or state.clock is None:
            return
        cutoff = state.clock - self.dedupe_horizon_ms
        if len(seen) > self.dedupe_max_ids or min(seen.values()) < cutoff:
            kept = sorted((at, event_id) for event_id, at in seen.items() if at >= cutoff)[-self.dedupe_max_ids:]
            state.seen = {event_id: at for at, event_id in kept}


__all__ = ["KeyedJourneys", "TimerCall", "route", "intake_item", "element_timer", "VISITOR", "CUSTOMER"]
