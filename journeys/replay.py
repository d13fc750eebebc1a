"""Batch replay of the keyed role, one key at a time, with no engine.

The stream job applies a key's items in the order they reach it, which for one ordered source is
the order of the source. A replay has every item of a key at once, each with its position in the
source (a line's place in its file, a record's partition and offset), and applies them in that
order, as the stream job's bounded runs do: the key's time moves as its signals arrive, and when
the input ends, to the end clock. Items the visitor role hands to the customer role take the
position of the signal they came from, so the customer role gets them where the stream would.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from journeys.keyed import KeyedJourneys
from journeys.outputs import Routed
from journeys.state import KeyState
from journeys.timers import END_OF_TIME


@dataclass
class KeyReplay:
    state: KeyState | None
    out: list = field(default_factory=list)      # the key's outputs, as journeys.outputs records
    routed: list = field(default_factory=list)   # (position, Routed): items for the customer role


def replay_key(keyed: KeyedJourneys, items: Iterable[tuple[Any, str]], end_clock: int | None) -> KeyReplay:
    """Every item of one key, as (position, item), in any order -> the key's final state and outputs."""
    replayed = KeyReplay(None)
    state = None
    for position, item in sorted(items, key=_position):
        state, produced, _, _ = keyed.on_signal(state, item)
        for record in produced:
            if type(record) is Routed:
                replayed.routed.append((position, record))
            else:
                replayed.out.append(record)
    state, produced, _, _ = keyed.on_timer(state, END_OF_TIME, end_clock)
    replayed.out.extend(produced)
    replayed.state = state
    return replayed


def _position(positioned: tuple) -> Any:
    return positioned[0]
