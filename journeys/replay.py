"""Batch replay of the keyed role, one key at a time, with no engine.

The stream job's keyed operators see a key's items as they arrive and act when the watermark
passes their timers. A replay knows every item of a key in advance, so it runs the same
`KeyedJourneys.on_timer` calls itself: each timer fires in event-time order with the watermark at
its own time, handing over the items due by then; when the input ends, one last call with the
watermark at the end of time flushes the key, as the stream job's end of input does. Time stops
at the end clock, as in the stream job's bounded runs.

The one defined difference from the stream job: a replay has the whole history, so nothing is
late. Signals the stream job found later than the allowed lateness (and reported as `late`
without applying them) are applied in their place here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from journeys.keyed import KeyedJourneys, element_timer
from journeys.state import AT, EVENT_ID, KeyState, item_head
from journeys.timers import MAX_WATERMARK, TimerQueue


@dataclass
class KeyReplay:
    state: KeyState | None
    out: list = field(default_factory=list)


def replay_key(keyed: KeyedJourneys, items: Iterable[str], end_clock: int) -> KeyReplay:
    """Every item of one key (signals, handoffs, forwards) -> the key's final state and outputs."""
    heads = sorted(((item_head(item), item) for item in items), key=lambda pair: (pair[0][AT], pair[0][EVENT_ID]))
    ordered = [item for _, item in heads]
    timers = TimerQueue()
    for item in ordered:
        timers.register(element_timer(item))
    state, out, handed = None, [], 0
    while (due_timer := timers.pop_due(end_clock)) is not None:
        fired_at = due_timer[0]
        due = handed
        while due < len(ordered) and element_timer(ordered[due]) <= fired_at:
            due += 1
        state, produced, new_timers, deleted = keyed.on_timer(state, ordered[handed:due], fired_at, fired_at, end_clock)
        handed = due
        out.extend(produced)
        for at in deleted:
            timers.delete(at)
        for at in new_timers:
            timers.register(at)
    if timers or handed < len(ordered):
        # The input ended: the watermark jumps to the end of time and the key's next timer fires.
        fired_at = timers.earliest() if timers else element_timer(ordered[handed])
        state, produced, _, _ = keyed.on_timer(state, ordered[handed:], fired_at, MAX_WATERMARK, end_clock)
        out.extend(produced)
    return KeyReplay(state, out)
