"""The journey job and the replay in one Python process, with no engine: the reference the engines
are held to, and the pure core's benchmark.

ReferenceRun plays signals through the same intake, the same two keyed roles and the same timers
as the Flink job, with the watermark following the data exactly: the Flink job must produce the
same journey log and the same decisions. replay_lines does, key by key, what the Beam replay does
in parallel (journeys.replay).

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
from journeys.keyed import CUSTOMER, VISITOR, element_timer
from journeys.ontology import Ontology
from journeys.outputs import SortedOutputs, feature_row_record, sort_outputs
from journeys.replay import replay_key
from journeys.scoring import ModelSource
from journeys.settings import JourneySettings
from journeys.timers import MAX_WATERMARK, MIN_WATERMARK, TimerQueue, end_clock
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
        self.intake = build_intake(ontology, settings)
        self.roles = build_roles(ontology, settings, policy or settings_policy(settings), time.perf_counter, profiles,
                                 models, push_features=True)
        self.end_clock = end_clock
        self.now_ms = now_ms
        self.states: dict[str, dict] = {role: {} for role in ROLES}
        self._timers = {role: TimerQueue() for role in ROLES}
        self._arrivals: dict[str, dict[str, list[str]]] = {role: {} for role in ROLES}
        self.watermark = MIN_WATERMARK
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
            self._accept(role, key, item)
            watermark = self.intake.watermark()
            if watermark > self.watermark:
                self._advance(watermark)
        return self

    def finish(self) -> "ReferenceRun":
        self._advance(MAX_WATERMARK)
        return self

    def _accept(self, role: str, key: str, item: str) -> None:
        self._arrivals[role].setdefault(key, []).append(item)
        self._timers[role].register(element_timer(item), key)

    def _advance(self, watermark: int) -> None:
        self.watermark = watermark
        # Visitors first: their handoffs and forwards reach the customers before the customers
        # see this watermark, as in the job, where an operator emits before passing the watermark on.
        for role in ROLES:
            timers, states, arrivals, keyed = self._timers[role], self.states[role], self._arrivals[role], self.roles[role]
            while (due := timers.pop_due(watermark)) is not None:
                fired_at, key = due
                state, out, register, delete = keyed.on_timer(states.get(key), arrivals.pop(key, []), fired_at,
                                                              watermark, self.end_clock)
                if state is None:
                    states.pop(key, None)
                else:
                    states[key] = state
                for at in delete:
                    timers.delete(at, key)
                for at in register:
                    timers.register(at, key)
                self._emit(sort_outputs(out))

    def _emit(self, outputs: SortedOutputs) -> None:
        self.take(outputs)
        for routed in outputs.routed:
            self._accept(CUSTOMER, routed.key, routed.item)
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
    intake = build_intake(ontology, settings, late_by_source_order=False)
    roles = build_roles(ontology, settings, settings_policy(settings), time.perf_counter, profiles, push_features=True)
    now = now_ms if now_ms is not None else _wall_clock_ms()
    run = ReplayRun(end_clock=end_clock)
    items: dict[str, dict[str, list[str]]] = {VISITOR: {}, CUSTOMER: {}}
    latest = None
    for raw in lines:
        taken = intake.take(raw, now)
        if isinstance(taken, Rejection):
            run.dead_letters.append(taken.to_record())
            continue
        role, key, item, at = taken
        items[role].setdefault(key, []).append(item)
        latest = at if latest is None else max(latest, at)
    if run.end_clock is None:
        run.end_clock = end_clock_of(latest, settings)
    for role in ROLES:
        for key in sorted(items[role]):
            replayed = replay_key(roles[role], items[role][key], run.end_clock)
            run.states[(role, key)] = replayed.state
            outputs = sort_outputs(replayed.out)
            run.take(outputs)
            for routed in outputs.routed:
                items[CUSTOMER].setdefault(routed.key, []).append(routed.item)
            run.feature_rows.extend(feature_row_record(row) for row in outputs.feature_rows)
    return run


def end_clock_of(latest: int | None, settings: JourneySettings) -> int | None:
    return end_clock(latest, settings.max_out_of_orderness_ms)
