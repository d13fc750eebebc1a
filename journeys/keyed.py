"""What one keyed journey operator does, without an engine: intake, event-time order, identity.

Two roles share this code. The visitor role is keyed by anonymous_id and holds the journeys of
visitors who have not identified; the customer role is keyed by customer_id. A visitor's
identifying signal (login, identify, signup with both ids) hands the visitor's journey to the
customer role in one record, where it merges atomically into the customer's journey; later
anonymous signals of that visitor are forwarded to the customer.

    on_element(state, key, item)                       -> (state, outputs, timers to register)
    on_timer(state, key, fired_at, watermark, end_clock) -> (state, outputs, timers to register)

An operator calls one of these per element or timer, with the state it read, and writes back
the state it gets (None: clear it). `accept`, `release` and `next_wakeup` are the parts.

Items wait until the watermark passes them and are then applied in (event_time, event_id)
order, so the result does not depend on arrival order. An item that arrives when its key has
already been processed past its event time, or that intake marked late, is late: it goes to the
journey log as `late`, is counted among the accepted, and does not change the journey.
"""
from __future__ import annotations

from bisect import insort

from journeys.state import HANDOFF, SIGNAL, Journey, KeyState
from journeys.transitions import DECISION, JOURNEY, JourneyModel

ROUTE = "route"
MAX_WATERMARK = 2 ** 63 - 1  # Flink's Long.MAX_VALUE: the end of a bounded input

VISITOR = "visitor"
CUSTOMER = "customer"


def _order(item: list):
    return item[0], item[1]


def route(signal: dict, identify_signals) -> tuple[str, str]:
    """Which operator and key a signal goes to first: (VISITOR, anonymous_id) or (CUSTOMER, customer_id)."""
    anonymous_id = signal["anonymous_id"]
    customer_id = signal["customer_id"]
    if anonymous_id is not None and (customer_id is None or signal["event_type"] in identify_signals):
        return VISITOR, anonymous_id
    return CUSTOMER, customer_id


def intake_item(signal: dict, ingested_at: int | None, late: bool) -> list:
    return [signal["event_time"], signal["event_id"], SIGNAL, signal, ingested_at, late]


class KeyedJourneys:
    def __init__(self, model: JourneyModel, role: str, dedupe_horizon_ms: int, dedupe_max_ids: int):
        self.model = model
        self.role = role
        self.anonymous = role == VISITOR
        self.dedupe_horizon_ms = dedupe_horizon_ms
        self.dedupe_max_ids = dedupe_max_ids
        self.link_expiry_ms = model.ontology.anonymous_expiry_ms
        self._identify = model.ontology.identify_signals

    # -- what an operator calls ----------------------------------------------------------------
    def on_element(self, state: KeyState | None, key: str, item: list) -> tuple[KeyState, list, list[int]]:
        state, out = self.accept(state, key, item)
        timers = []
        at = item[0]
        buffered = not out  # accept only produces output for duplicates and late signals
        if buffered and (state.timer_at is None or at < state.timer_at):
            state.timer_at = at
            timers.append(at)
        return state, out, timers

    def on_timer(self, state: KeyState | None, key: str, fired_at: int, watermark: int,
                 end_clock: int | None = None) -> tuple[KeyState | None, list, list[int]]:
        if state is None:
            return None, [], []
        if state.timer_at is not None and fired_at >= state.timer_at:
            state.timer_at = None
        state, out = self.release(state, key, watermark, end_clock)
        timers = []
        if state is not None and watermark < MAX_WATERMARK:
            wakeup = self.next_wakeup(state)
            if wakeup is not None and (state.timer_at is None or wakeup < state.timer_at):
                state.timer_at = wakeup
                timers.append(wakeup)
        return state, out, timers

    # -- arrival -------------------------------------------------------------------------------
    def accept(self, state: KeyState | None, key: str, item: list) -> tuple[KeyState, list]:
        if state is None:
            state = KeyState()
        out: list = []
        at, event_id, kind = item[0], item[1], item[2]
        if kind == SIGNAL:
            if event_id in state.seen or any(p[1] == event_id and p[2] == SIGNAL for p in state.pending):
                out.append((JOURNEY, {"kind": "duplicate", "journey": key, "anonymous": self.anonymous,
                                      "at": at, "event_id": event_id}))
                return state, out
            behind = state.clock is not None and at <= state.clock
            if item[5] or behind:
                state.seen[event_id] = at if state.clock is None else max(at, state.clock)
                out.append((JOURNEY, {"kind": "late", "journey": key, "anonymous": self.anonymous, "at": at,
                                      "event_id": event_id, "late_by": "intake" if item[5] else "journey_clock",
                                      "signal": item[3]}))
                return state, out
        insort(state.pending, item, key=_order)
        return state, out

    # -- the watermark passed ------------------------------------------------------------------
    def release(self, state: KeyState | None, key: str, watermark: int,
                end_clock: int | None = None) -> tuple[KeyState | None, list]:
        out: list = []
        if state is None or state.ended:
            return state, out
        at_end = watermark >= MAX_WATERMARK
        pending = state.pending
        count = len(pending) if at_end else 0
        if not at_end:
            while count < len(pending) and pending[count][0] <= watermark:
                count += 1
        if count:
            ready = pending[:count]
            del pending[:count]
            for item in ready:
                if self.anonymous:
                    self._release_visitor_item(state, key, item, out)
                else:
                    self._release_customer_item(state, key, item, out)
                at = item[0]
                state.clock = at if state.clock is None else max(state.clock, at)
                if item[2] == SIGNAL:
                    state.seen[item[1]] = at
        horizon = end_clock if at_end else watermark
        if horizon is not None:
            if state.links and state.link_activity is not None and state.link_activity + self.link_expiry_ms <= horizon:
                state.links = []
                state.link_activity = None
            if state.journey is not None:
                state.journey, ticked = self.model.tick(state.journey, horizon)
                out.extend(ticked)
            state.clock = horizon if state.clock is None else max(state.clock, horizon)
        if at_end:
            out.extend(self.model.end_of_input(state.journey))
            state.ended = True
        self._forget_old_ids(state)
        if state.is_empty() and not at_end:
            return None, out
        return state, out

    def next_wakeup(self, state: KeyState | None) -> int | None:
        if state is None or state.ended:
            return None
        candidates = []
        if state.pending:
            candidates.append(state.pending[0][0])
        due = self.model.next_due(state.journey)
        if due is not None:
            candidates.append(due)
        if state.links and state.link_activity is not None:
            candidates.append(state.link_activity + self.link_expiry_ms)
        return min(candidates) if candidates else None

    # -- the two roles -------------------------------------------------------------------------
    def _release_customer_item(self, state: KeyState, key: str, item: list, out: list) -> None:
        if item[2] == HANDOFF:
            payload = item[3]
            visitor = Journey.from_wire(payload["journey"]) if payload["journey"] else None
            state.journey, produced = self.model.merge(state.journey, visitor, payload["signal"], key, item[4])
        else:
            state.journey, produced = self.model.apply(state.journey, item[3], key, False, item[4])
        out.extend(produced)

    def _release_visitor_item(self, state: KeyState, key: str, item: list, out: list) -> None:
        signal = item[3]
        at = item[0]
        customer_id = signal["customer_id"]
        identifies = customer_id is not None and signal["event_type"] in self._identify
        if state.links:
            if identifies and customer_id != state.links[-1][1]:
                state.links = (state.links + [[at, customer_id]])[-8:]
            target = customer_id if identifies else state.links[-1][1]
            state.link_activity = at
            out.append((ROUTE, target, [at, item[1], SIGNAL, signal, item[4], False]))
        elif identifies:
            journey = state.journey
            if journey is not None:
                journey, ticked = self.model.tick(journey, at)
                out.extend(ticked)
            handoff = {"journey": journey.to_wire() if journey is not None else None, "signal": signal}
            out.append((ROUTE, customer_id, [at, item[1], HANDOFF, handoff, item[4], False]))
            state.journey = None
            state.links = [[at, customer_id]]
            state.link_activity = at
        else:
            state.journey, produced = self.model.apply(state.journey, signal, key, True, item[4])
            out.extend(produced)

    def _forget_old_ids(self, state: KeyState) -> None:
        seen = state.seen
        if not seen or state.clock is None:
            return
        cutoff = state.clock - self.dedupe_horizon_ms
        if len(seen) > self.dedupe_max_ids or min(seen.values()) < cutoff:
            kept = sorted((at, event_id) for event_id, at in seen.items() if at >= cutoff)[-self.dedupe_max_ids:]
            state.seen = {event_id: at for at, event_id in kept}


__all__ = ["KeyedJourneys", "route", "intake_item", "ROUTE", "JOURNEY", "DECISION", "MAX_WATERMARK", "VISITOR", "CUSTOMER"]
