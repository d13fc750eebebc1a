"""What one keyed journey operator does, without an engine: arrival order, lateness per journey,
identity, and time.

Two roles share this code. The visitor role is keyed by anonymous_id: every signal that carries
one comes here first. It holds the journeys of visitors who have not identified. A visitor's
identifying signal (login, identify, signup with both ids) hands the visitor's journey to the
customer role in one record, where it merges into the customer's journey. The visitor's later
signals are forwarded to the customer, and so are signals that name their customer: passing every
signal of a visitor through one key keeps them in their order on the way to the customer. The
customer role is keyed by customer_id and also gets the signals that carry no anonymous id.

An operator keeps one value per key, the key's KeyState, and calls

    on_signal(state, item)                          -> KeyCall   an item arrived
    on_timer(state, fired_at, end_clock, wall_time) -> KeyCall   the key's timer fired

Each call reads the state once, and gives back the new state, the outputs, and the timers to
register and delete.

Order. A journey applies its items in the order they reach it, at once: a decision leaves with
the signal that caused it. The journey's clock is the latest event time it has come to, through
signals applied or time passed. A signal at or after the clock applies in order: the
time-driven events due until then happen first. A signal behind the clock by at most the bound
(event_time.max_out_of_orderness) applies with its own event time to the journey as it stands: it
counts, takes its place among the touchpoints and joins the open session, and the time-driven
events that already happened stay. A signal further behind is late: it goes to the journey log as
`late`, whole, counts as accepted, and changes nothing of the path; it still withdraws the
consent it withdraws, counts for the session rules of the open session it happened in, cancels
the follow-ups whose goal it reaches and reports the decisions it makes stale (Transitions.late).
A visitor's handoff is never late: the visitor's journey always joins, and only its identifying
signal can be late.

Time. Time-driven events (a session gap, a stage time-out, a plan due, a visitor's expiry) happen
when the key's next signal arrives, and otherwise when its one timer fires (journeys.timers):
at the end of a bounded input, or, live, at its next due time told in wall-clock time by the key's
lag (the wall clock minus the event time, at the key's newest signal). A live key's timer is only
moved earlier, never later: a timer that fires early finds nothing due and sets the next one.
"""
from __future__ import annotations

from typing import NamedTuple

from journeys.outputs import JourneyLog, LogKind, Routed
from journeys.state import (AT, DIRECT, EVENT_ID, HANDOFF, INGESTED_AT, KEY, KIND, SIGNAL, Journey, KeyState, item_head,
                            item_payload, make_item)
from journeys.timers import BOUNDED, END_OF_TIME, LIVE
from journeys.transitions import Transitions

VISITOR = "visitor"
CUSTOMER = "customer"


class KeyCall(NamedTuple):
    """What one call of a keyed role gives back to its operator."""

    state: KeyState | None  # the key's state to write back (None: clear it)
    out: list               # outputs, as journeys.outputs records
    register: list[int]     # timers to register (event time when bounded, wall-clock time when live)
    delete: list[int]       # timers to delete


_call = tuple.__new__  # KeyCall(...) at C speed: this runs once per signal


def route(signal: dict) -> tuple[str, str]:
    """Which operator and key a signal goes to first: (VISITOR, anonymous_id) or (CUSTOMER, customer_id)."""
    anonymous_id = signal["anonymous_id"]
    if anonymous_id is not None:
        return VISITOR, anonymous_id
    return CUSTOMER, signal["customer_id"]


def intake_item(signal: dict, role: str, key: str, ingested_at: int | None) -> str:
    kind = SIGNAL if role == VISITOR else DIRECT
    return make_item([signal["event_time"], signal["event_id"], kind, False, ingested_at, key], signal)


def passes_through(item: str, head: list | None = None) -> str | None:
    """The customer an item reaching the visitor role only passes on to, unchanged, or None: an
    engine that sends every item through the visitor role first, to keep each customer's items in
    one ordered stream, hands these on without reading the visitor's state. head: the item's
    head, where the caller has read it already."""
    if head is None:
        head = item_head(item)
    return head[KEY] if head[KIND] == DIRECT else None


def item_time(item: str) -> int:
    """The event time of an item, read from the start of its head without parsing the rest."""
    return int(item[1:item.index(",")])


class KeyedJourneys:
    def __init__(self, transitions: Transitions, role: str, dedupe_horizon_ms: int, dedupe_max_ids: int,
                 bound_ms: int, time_mode: str = BOUNDED):
        """bound_ms: how far behind its journey's clock a signal may be and still apply.
        time_mode: journeys.timers.BOUNDED or LIVE."""
        if time_mode not in (BOUNDED, LIVE):
            raise ValueError(f"time_mode must be {BOUNDED!r} or {LIVE!r}, not {time_mode!r}")
        self.transitions = transitions
        self.role = role
        self.anonymous = role == VISITOR
        self.dedupe_horizon_ms = dedupe_horizon_ms
        self.dedupe_max_ids = dedupe_max_ids
        self.bound_ms = bound_ms
        self.live = time_mode == LIVE
        self.link_expiry_ms = transitions.ontology.anonymous_expiry_ms
        self._identify = transitions.ontology.identify_signals

    # -- what an operator calls ----------------------------------------------------------------
    def on_signal(self, state: KeyState | None, item: str, head: list | None = None) -> KeyCall:
        """head: the item's head, where the caller has read it already (item_head)."""
        if head is None:
            head = item_head(item)
        if state is None:
            state = KeyState(head[KEY])
        out: list = []
        if state.backlog:
            self._catch_up(state, out)
        self._arrive(state, head, item_payload(item), out)
        return self._finish(state, out)

    def on_timer(self, state: KeyState | None, fired_at: int, end_clock: int | None = None,
                 wall_time: bool = False) -> KeyCall:
        """fired_at: the timer's time, in wall-clock time for a live key's timer (wall_time), else
        in event time. end_clock: where time stops when a bounded input ends (None: it does not)."""
        if state is None:
            return _call(KeyCall, (None, [], [], []))
        state.timers = [t for t in state.timers if t != fired_at]
        out: list = []
        if state.backlog:
            self._catch_up(state, out)
        if wall_time:
            self._pass_time(state, fired_at - (state.lag or 0), out)
        elif fired_at >= END_OF_TIME:
            self._end(state, end_clock, out)
        return self._finish(state, out)

    def next_due(self, state: KeyState | None) -> int | None:
        """The event time of the key's next time-driven event, or None."""
        if state is None or state.ended:
            return None
        due = self.transitions.next_due(state.journey) if state.has_journey() else None
        if state.links and state.link_activity is not None:
            expiry = state.link_activity + self.link_expiry_ms
            due = expiry if due is None else min(due, expiry)
        return due

    # -- one item ------------------------------------------------------------------------------
    def _arrive(self, state: KeyState, head: list, payload, out: list) -> None:
        if head[KIND] == HANDOFF:
            self._merge(state, head, payload, out)
            return
        if head[KIND] == DIRECT and self.anonymous:
            out.append(Routed(head[KEY], make_item(head, payload)))
            return
        at, event_id = head[AT], head[EVENT_ID]
        if event_id in state.seen:
            out.append(JourneyLog({"kind": LogKind.DUPLICATE, "journey": state.key, "anonymous": self.anonymous,
                                   "at": at, "event_id": event_id}))
            return
        if self.anonymous and self._forward(state, head, payload, out):
            state.seen[event_id] = at  # so that a duplicate is dropped here, as it would be had it stayed
            return
        if self._is_late(state, at):
            self._late(state, head, payload, out)
            return
        if self.anonymous:
            self._visitor_signal(state, head, payload, out)
        else:
            state.journey, produced = self.transitions.apply(state.journey, payload, state.key, False, head[INGESTED_AT],
                                                             state.first_seen)
            out.extend(produced)
        self._applied(state, head, out)

    def _is_late(self, state: KeyState, at: int) -> bool:
        return state.clock is not None and at < state.clock - self.bound_ms

    def _late(self, state: KeyState, head: list, signal: dict, out: list) -> None:
        at = head[AT]
        state.seen[head[EVENT_ID]] = max(at, state.clock)  # remembered from the clock on, not its own old time
        out.append(JourneyLog({"kind": LogKind.LATE, "journey": state.key, "anonymous": self.anonymous, "at": at,
                               "event_id": head[EVENT_ID], "late_by": "journey_clock",
                               "behind_ms": state.clock - at, "signal": signal}))
        if state.has_journey():
            out.extend(self.transitions.late(state.journey, signal))

    def _applied(self, state: KeyState, head: list, out: list) -> None:
        at = head[AT]
        state.seen[head[EVENT_ID]] = at
        if state.first_seen is None or at < state.first_seen:
            state.first_seen = at
        if state.clock is None or at >= state.clock:
            state.clock = at
            if head[INGESTED_AT] is not None:
                state.lag = head[INGESTED_AT] - at
        if not self.anonymous:  # one feature row per call: the store only keeps the latest
            row = self.transitions.feature_row(state.journey)
            if row is not None:
                out.append(row)

    # -- the customer role ---------------------------------------------------------------------
    def _merge(self, state: KeyState, head: list, handoff: dict, out: list) -> None:
        """A visitor's journey joins; its identifying signal applies unless it is late or a duplicate."""
        link = handoff["signal"]
        visitor = Journey.from_wire(handoff["journey"]) if handoff["journey"] else None
        seen = head[EVENT_ID] in state.seen
        late = not seen and self._is_late(state, head[AT])
        state.journey, produced = self.transitions.merge(state.journey, visitor, link, state.key, head[INGESTED_AT],
                                                         apply_link=not (seen or late), since=state.first_seen)
        out.extend(produced)
        if late:
            self._late(state, head, link, out)
        elif not seen:
            self._applied(state, head, out)

    # -- the visitor role ----------------------------------------------------------------------
    def _forward(self, state: KeyState, head: list, signal: dict, out: list) -> bool:
        """Send a signal on to its customer: one that names its customer without identifying the
        visitor, or any signal of a visitor already linked. True when it went."""
        customer_id = signal["customer_id"]
        identifies = customer_id is not None and signal["event_type"] in self._identify
        if not identifies and customer_id is not None:
            target = customer_id
        elif state.links:
            if identifies and customer_id != state.links[-1][1]:
                state.links = (state.links + [[head[AT], customer_id]])[-8:]
            target = customer_id if identifies else state.links[-1][1]
            state.link_activity = head[AT] if state.link_activity is None else max(state.link_activity, head[AT])
        else:
            return False
        out.append(Routed(target, make_item([head[AT], head[EVENT_ID], SIGNAL, False, head[INGESTED_AT], target], signal)))
        return True

    def _visitor_signal(self, state: KeyState, head: list, signal: dict, out: list) -> None:
        at = head[AT]
        customer_id = signal["customer_id"]
        if customer_id is None:
            state.journey, produced = self.transitions.apply(state.journey, signal, state.key, True, head[INGESTED_AT],
                                                             state.first_seen)
            out.extend(produced)
            return
        journey = state.journey  # the visitor identifies: its journey goes to the customer
        if journey is not None:
            journey, ticked = self.transitions.tick(journey, at)
            out.extend(ticked)
        handoff = {"journey": journey.to_wire() if journey is not None else None, "signal": signal}
        out.append(Routed(customer_id, make_item([at, head[EVENT_ID], HANDOFF, False, head[INGESTED_AT], customer_id],
                                                 handoff)))
        state.journey = None
        state.links = [[at, customer_id]]
        state.link_activity = at

    # -- time ----------------------------------------------------------------------------------
    def _pass_time(self, state: KeyState, now: int, out: list) -> None:
        """A live key's time moves on to `now` without signals."""
        if state.ended or (state.clock is not None and now <= state.clock):
            return
        self._tick(state, now, out)
        state.clock = now

    def _end(self, state: KeyState, end_clock: int | None, out: list) -> None:
        """The bounded input ended: time moves to the end clock, and open sessions are reported."""
        if state.ended:
            return
        if end_clock is not None and (state.clock is None or end_clock > state.clock):
            self._tick(state, end_clock, out)
            state.clock = end_clock
        out.extend(self.transitions.end_of_input(state.journey))
        state.ended = True

    def _tick(self, state: KeyState, now: int, out: list) -> None:
        if state.links and state.link_activity is not None and state.link_activity + self.link_expiry_ms <= now:
            state.links = []
            state.link_activity = None
        if state.has_journey():
            state.journey, ticked = self.transitions.tick(state.journey, now)
            out.extend(ticked)

    def _catch_up(self, state: KeyState, out: list) -> None:
        """Items a version-1 state had buffered apply first, in the event-time order it kept them in."""
        backlog, state.backlog = state.backlog, []
        for head, item in sorted(((item_head(item), item) for item in backlog), key=lambda p: (p[0][AT], p[0][EVENT_ID])):
            self._arrive(state, head, item_payload(item), out)

    # -- after every call ----------------------------------------------------------------------
    def _finish(self, state: KeyState, out: list) -> KeyCall:
        self._forget_old_ids(state)
        if state.is_empty():
            return _call(KeyCall, (None, out, [], []))  # a timer still registered finds no state, and does nothing
        current = state.timers[0] if state.timers else None
        wanted = self._timer(state, current)
        if wanted == current:
            return _call(KeyCall, (state, out, [], []))
        state.timers = [wanted]
        return _call(KeyCall, (state, out, [wanted], [] if current is None else [current]))

    def _timer(self, state: KeyState, current: int | None) -> int | None:
        if not self.live:
            return END_OF_TIME if not state.ended else current
        due = self.next_due(state)
        if due is None:
            return current
        wanted = due + (state.lag or 0)
        return current if current is not None and current <= wanted else wanted

    def _forget_old_ids(self, state: KeyState) -> None:
        seen = state.seen
        if not seen or state.clock is None:
            return
        cutoff = state.clock - self.dedupe_horizon_ms
        if len(seen) > self.dedupe_max_ids or min(seen.values()) < cutoff:
            kept = sorted((at, event_id) for event_id, at in seen.items() if at >= cutoff)[-self.dedupe_max_ids:]
            state.seen = {event_id: at for at, event_id in kept}


__all__ = ["KeyedJourneys", "KeyCall", "route", "intake_item", "item_time", "passes_through", "VISITOR", "CUSTOMER"]
