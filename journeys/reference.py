"""The journey job's semantics in one Python process, with no engine.

Signals go through the same intake, the same two keyed roles and the same timers as in the
Flink job, with the watermark following the data exactly. The Flink job must produce the same
journey log and the same decisions (tests/test_flink_job.py checks it); the benchmark uses this
runner for the pure-core throughput; the batch replay can reuse it.
"""
from __future__ import annotations

import heapq
import time
from typing import Iterable

from journeys.contract import Rejection, SignalDecoder
from journeys.intake import Intake
from journeys.keyed import CUSTOMER, MAX_WATERMARK, ROUTE, VISITOR, KeyedJourneys, element_timer
from journeys.ontology import Ontology
from journeys.privacy import Masker
from journeys.settings import JourneySettings
from journeys.scoring import ModelSource
from journeys.features import ProfileSource
from journeys.transitions import DECISION, FEATURES, JOURNEY, JourneyModel

MIN_WATERMARK = -(2 ** 63)


def build_roles(ontology: Ontology, settings: JourneySettings, profiles: ProfileSource | None = None,
                push_features: bool = False, models: ModelSource | None = None,
                policy=None) -> dict[str, KeyedJourneys]:
    model = JourneyModel(ontology, settings, profiles, push_features, models, policy)
    return {role: KeyedJourneys(model, role, settings.dedupe_horizon_ms, settings.dedupe_max_ids)
            for role in (VISITOR, CUSTOMER)}


def build_intake(ontology: Ontology, settings: JourneySettings, encoding: str = "json",
                 late_by_source_order: bool = True) -> Intake:
    decoder = SignalDecoder(settings.intake, Masker(settings.privacy))
    return Intake(decoder, ontology.identify_signals, settings.max_out_of_orderness_ms, encoding, late_by_source_order)


class ReferenceRun:
    def __init__(self, ontology: Ontology, settings: JourneySettings, end_clock: int | None = None,
                 now_ms: int | None = None, profiles: ProfileSource | None = None, models: ModelSource | None = None,
                 policy=None):
        self.intake = build_intake(ontology, settings)
        self.roles = build_roles(ontology, settings, profiles, push_features=True, models=models, policy=policy)
        self.end_clock = end_clock
        self.now_ms = now_ms
        self.states: dict[str, dict] = {VISITOR: {}, CUSTOMER: {}}
        self._timers: dict[str, list] = {VISITOR: [], CUSTOMER: []}
        self._registered: dict[str, set] = {VISITOR: set(), CUSTOMER: set()}
        self._arrivals: dict[str, dict[str, list[str]]] = {VISITOR: {}, CUSTOMER: {}}
        self.watermark = MIN_WATERMARK
        self.journey_records: list[dict] = []
        self.decisions: list[dict] = []      # what the decisions sink gets: the actions taken
        self.decision_log: list[dict] = []   # every decision point, acted on or not, for audit
        self.dead_letters: list[dict] = []
        self.feature_rows: dict[str, dict] = {}  # customer -> the last behavioural feature row
        self.lines_in = 0

    def feed(self, lines: Iterable[bytes]) -> "ReferenceRun":
        now = self.now_ms if self.now_ms is not None else int(time.time() * 1000)
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
        self._register(role, key, [element_timer(item)], [])

    def _register(self, role: str, key: str, timers: list[int], deleted: list[int]) -> None:
        registered = self._registered[role]
        for at in deleted:
            registered.discard((key, at))  # its heap entry is skipped when it comes up
        for at in timers:
            if (key, at) not in registered:  # like Flink: one timer per key and timestamp
                registered.add((key, at))
                heapq.heappush(self._timers[role], (at, key))

    def _advance(self, watermark: int) -> None:
        self.watermark = watermark
        # Visitors first: their handoffs and forwards reach the customers before the customers
        # see this watermark, as in the job, where an operator emits before passing the watermark on.
        for role in (VISITOR, CUSTOMER):
            timers = self._timers[role]
            registered = self._registered[role]
            states = self.states[role]
            arrivals = self._arrivals[role]
            keyed = self.roles[role]
            while timers and timers[0][0] <= watermark:
                fired_at, key = heapq.heappop(timers)
                if (key, fired_at) not in registered:
                    continue
                registered.discard((key, fired_at))
                state, out, register, delete = keyed.on_timer(states.get(key), arrivals.pop(key, []), fired_at,
                                                              watermark, self.end_clock)
                if state is None:
                    states.pop(key, None)
                else:
                    states[key] = state
                self._register(role, key, register, delete)
                self._emit(out)

    def _emit(self, out: list) -> None:
        for entry in out:
            kind = entry[0]
            if kind == JOURNEY:
                entry[1].pop("_ingested_at", None)
                self.journey_records.append(entry[1])
            elif kind == DECISION:
                record = dict(entry[1])
                record.pop("_ingested_at", None)
                self.decision_log.append(record)
                if record["acted"]:
                    self.decisions.append(record)
            elif kind == ROUTE:
                self._accept(CUSTOMER, entry[1], entry[2])
            elif kind == FEATURES:
                self.feature_rows[entry[1]] = entry[2]
