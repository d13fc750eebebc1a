"""The journey job and the replay in one Python process, with no engine: the reference the engines
are held to, and the pure core's benchmark.

ReferenceRun plays signals through the same intake and the same two keyed roles as the Flink
job's bounded runs: each item applies as it arrives, what the visitor role hands on reaches the
customer role at once, and when the input ends every key's time moves to the end clock. Each
key's state is kept in its wire form and decoded and encoded on every call, as the operators do
with RocksDB, so that the core's benchmark pays what the job pays. The Flink
job must produce the same journey log and the same decisions. replay_lines does, key by key, what
the Beam replay does in parallel (journeys.replay), with each line's place in the input as its
position.

Both build the core with journeys.assembly and sort its outputs with journeys.outputs, as the
engines do.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable

from journeys.assembly import ROLES, build_intake, build_roles
from journeys.contract import Rejection
from journeys.features import ProfileSource
from journeys.keyed import CUSTOMER, VISITOR
from journeys.ontology import Ontology
from journeys.outputs import SortedOutputs, feature_row_record, sort_outputs
from journeys.replay import replay_key
from journeys.scoring import ModelSource
from journeys.settings import JourneySettings
from journeys.state import decode, encode
from journeys.timers import END_OF_TIME, end_clock
from pipelines.config import settings_policy


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class RunOutputs:
    """What a run's sinks would hold."""

    journey_records: list = field(default_factory=list)  # the journey log, late signals included
    decisions: list = field(default_factory=list)        # the actions taken
    decision_log: list = field(default_factory=list)     # every decision point, acted on or not, for audit
    dead_letters: list = field(default_factory=list)

    def take(self, outputs: SortedOutputs) -> None:
        self.journey_records.extend(outputs.journeys)
        self.journey_records.extend(outputs.late)
        self.decision_log.extend(outputs.decision_log)
        self.decisions.extend(outputs.decisions)


class ReferenceRun(RunOutputs):
    def __init__(self, ontology: Ontology, settings: JourneySettings, end_clock: int | None = None,
                 now_ms: int | None = None, profiles: ProfileSource | None = None, models: ModelSource | None = None,
                 policy=None):
        """now_ms: the intake clock (the wall clock by default). policy: the policy at start, or a
        PolicyInForce to update during the run (the settings' policy by default)."""
        super().__init__()
        self.intake = build_intake(settings)
        self.roles = build_roles(ontology, settings, policy or settings_policy(settings), time.perf_counter, profiles,
                                 models, push_features=True)
        self.end_clock = end_clock
        self.now_ms = now_ms
        self.states: dict[str, dict[str, str]] = {role: {} for role in ROLES}  # role -> key -> state wire form
        self.feature_rows: dict[str, dict] = {}  # customer -> the last behavioural feature row
        self.lines_in = 0

    def feed(self, lines: Iterable[bytes]) -> "ReferenceRun":
        now = self.now_ms if self.now_ms is not None else _wall_clock_ms()
        for raw in lines:
            self.lines_in += 1
            taken = self.intake.take(raw, now)
            if isinstance(taken, Rejection):
                self.dead_letters.append(taken.to_record())
                continue
            role, key, item, _ = taken
            self._arrive(role, key, item)
        return self

    def finish(self) -> "ReferenceRun":
        """The input ended: every key's one timer fires, visitors first, as the job's end of input does."""
        for role in ROLES:
            states, keyed = self.states[role], self.roles[role]
            for key in list(states):
                state, out, _, _ = keyed.on_timer(decode(states[key]), END_OF_TIME, self.end_clock)
                self._keep(role, key, state)
                self._emit(sort_outputs(out))
        return self

    def _arrive(self, role: str, key: str, item: str) -> None:
        state, out, _, _ = self.roles[role].on_signal(decode(self.states[role].get(key)), item)
        self._keep(role, key, state)
        self._emit(sort_outputs(out))

    def _keep(self, role: str, key: str, state) -> None:
        if state is None:
            self.states[role].pop(key, None)
        else:
            self.states[role][key] = encode(state)

    def state_of(self, role: str, key: str):
        """A key's state as the core sees it (None when it has none)."""
        return decode(self.states[role].get(key))

    def _emit(self, outputs: SortedOutputs) -> None:
        self.take(outputs)
        for routed in outputs.routed:
            self._arrive(CUSTOMER, routed.key, routed.item)
        for row in outputs.feature_rows:
            self.feature_rows[row.customer_id] = row.row


@dataclass
class ReplayRun(RunOutputs):
    """The whole replay in one process, key by key: what the Beam pipeline does in parallel, and
    what tests hold it to."""

    end_clock: int | None = None
    feature_rows: list = field(default_factory=list)
    states: dict = field(default_factory=dict)  # (role, key) -> final KeyState


def replay_lines(ontology: Ontology, settings: JourneySettings, lines: Iterable[bytes], end_clock: int | None = None,
                 profiles: ProfileSource | None = None, now_ms: int | None = None) -> ReplayRun:
    """Replay raw JSON lines. end_clock: by default the latest accepted event time minus the bound."""
    intake = build_intake(settings)
    roles = build_roles(ontology, settings, settings_policy(settings), time.perf_counter, profiles, push_features=True)
    now = now_ms if now_ms is not None else _wall_clock_ms()
    run = ReplayRun(end_clock=end_clock)
    items: dict[str, dict[str, list]] = {VISITOR: {}, CUSTOMER: {}}
    for position, raw in enumerate(lines):
        taken = intake.take(raw, now)
        if isinstance(taken, Rejection):
            run.dead_letters.append(taken.to_record())
            continue
        role, key, item, _ = taken
        items[role].setdefault(key, []).append((position, item))
    if run.end_clock is None:
        run.end_clock = end_clock_of(intake.latest, settings)
    for role in ROLES:
        for key in sorted(items[role]):
            replayed = replay_key(roles[role], items[role][key], run.end_clock)
            run.states[(role, key)] = replayed.state
            outputs = sort_outputs(replayed.out)
            run.take(outputs)
            for position, routed in replayed.routed:
                items[CUSTOMER].setdefault(routed.key, []).append((position, routed.item))
            run.feature_rows.extend(feature_row_record(row) for row in outputs.feature_rows)
    return run


def end_clock_of(latest: int | None, settings: JourneySettings) -> int | None:
    return end_clock(latest, settings.max_out_of_orderness_ms)
