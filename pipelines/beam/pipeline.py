"""Batch replay and backfill with Apache Beam: the journey core over a historical archive.

    raw records ─▶ intake ─┬─ visitor items ─▶ GroupByKey(anonymous_id) ─▶ replay visitors ─┐ handoffs,
                           │                                                                 ▼ forwards
                           ├─ customer items ───────────────────────▶ GroupByKey(customer_id) ─▶ replay customers
                           └─ dead letters
    Both replays emit journey log records, decisions, final states, and (customers) feature rows
    and training rows; the journey log gives the stage histories and session summaries.

Each record comes with its position in the input (pipelines.beam.storage.ReadSignals), and each
key's items apply in that order, handoffs and forwards at the position of the signal they came
from: the order the stream job's bounded runs apply them in. The same intake, the same keyed roles
and the same transitions as the stream job (journeys.replay), so the replay's journeys, sessions
and decisions are the stream job's.
ReplayJourneys is a composite PTransform: whichever runner runs it (DirectRunner here, the
FlinkRunner or another distributed runner elsewhere) gets the whole pipeline.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsSingleton, TaggedOutput

from journeys.assembly import build_intake, build_roles
from journeys.contract import Rejection
from journeys.keyed import CUSTOMER, VISITOR, item_time
from journeys.ontology import Ontology
from journeys.outputs import ACCEPTED_KINDS, LogKind, feature_row_record, sort_outputs
from journeys.policy import Policy
from journeys.replay import replay_key
from journeys.settings import JourneySettings
from journeys.timers import end_clock as end_clock_of
from pipelines.beam.rows import (Labels, journey_row, session_row, signal_of_a_customer, stage_history_row,
                                 training_rows)
from pipelines.config import settings_policy
from pipelines.progress import Progress

NAMESPACE = "journeys.replay"
DEAD, VISITORS, CUSTOMERS = "dead_letters", "visitors", "customers"
ROUTED, LOG, DECISIONS, STATES, FEATURE_ROWS, TRAINING = ("routed", "journey_log", "decisions", "journeys",
                                                          "feature_rows", "training_rows")


@dataclass(frozen=True)
class ReplayOptions:
    end_clock: int | None = None     # None: the latest accepted event time minus the out-of-orderness bound
    now_ms: int | None = None        # the intake clock for `event_time_in_future`; None: the wall clock
    labels: Labels | None = None     # emit training rows with these labels
    progress_s: float = 10.0         # seconds between progress lines of each worker (0: none)


class TakeSignals(beam.DoFn):
    """(position, record) in, where a record is a raw JSON line (bytes) or one already decoded
    from an Avro or parquet file; (key, (position, item)) out for each role, and rejections to the
    dead letters."""

    def __init__(self, ontology: Ontology, settings: JourneySettings, options: ReplayOptions):
        self.ontology, self.settings, self.options = ontology, settings, options
        self.read = Metrics.counter(NAMESPACE, "records_in")
        self.accepted = Metrics.counter(NAMESPACE, "accepted")
        self.rejected = Metrics.counter(NAMESPACE, "rejected")

    def setup(self):
        self.intake = build_intake(self.settings)
        self.progress = Progress("replay intake", self.options.progress_s)

    def process(self, positioned):
        position, record = positioned
        now = self.options.now_ms if self.options.now_ms is not None else int(time.time() * 1000)
        self.read.inc()
        self.progress.tick()
        if isinstance(record, (bytes, str)):
            taken = self.intake.take(record if isinstance(record, bytes) else record.encode("utf-8"), now)
        elif isinstance(record, Rejection):
            taken = record
        else:
            taken = self.intake.take_signal(record)
        if isinstance(taken, Rejection):
            self.rejected.inc()
            yield TaggedOutput(DEAD, taken.to_record() | {"original": taken.original})
            return
        self.accepted.inc()
        role, key, item, _ = taken
        yield TaggedOutput(VISITORS if role == VISITOR else CUSTOMERS, (key, (position, item)))


class ReplayKeys(beam.DoFn):
    """One role of the journey core over every item of a key, grouped by the runner."""

    def __init__(self, role: str, ontology: Ontology, settings: JourneySettings, policy: Policy, options: ReplayOptions,
                 profiles=None):
        self.role, self.ontology, self.settings, self.options, self.profiles = role, ontology, settings, options, profiles
        self.policy = policy
        self.keys = Metrics.counter(NAMESPACE, f"{role}_keys")
        self.decided = Metrics.counter(NAMESPACE, "decisions")
        self.accepted = Metrics.counter(NAMESPACE, "signals_accepted")  # applied, late, or an outcome
        self.duplicates = Metrics.counter(NAMESPACE, "duplicates")

    def setup(self):
        self.keyed = build_roles(self.ontology, self.settings, self.policy, time.perf_counter, self.profiles,
                                 push_features=True)[self.role]
        self.progress = Progress(f"replay of {self.role}s", self.options.progress_s, "signals replayed")

    def process(self, keyed_items, end_clock):
        key, items = keyed_items
        self.keys.inc()
        items = list(items)
        self.progress.tick(len(items))
        replayed = replay_key(self.keyed, items, end_clock)
        outputs = sort_outputs(replayed.out)
        log, decisions = outputs.journey_log(), outputs.decision_log
        for record in log:
            if record["kind"] in ACCEPTED_KINDS:
                self.accepted.inc()
            elif record["kind"] == LogKind.DUPLICATE:
                self.duplicates.inc()
            yield TaggedOutput(LOG, record)
        self.decided.inc(len(decisions))
        for record in decisions:
            yield TaggedOutput(DECISIONS, record)
        for position, routed in replayed.routed:
            yield TaggedOutput(ROUTED, (routed.key, (position, routed.item)))
        for row in outputs.feature_rows:
            yield TaggedOutput(FEATURE_ROWS, feature_row_record(row))
        row = journey_row(self.role, replayed.state)
        if row is not None:
            yield TaggedOutput(STATES, row)
        if self.role == CUSTOMER and self.options.labels is not None:
            for training_row in training_rows(key, decisions, log, self.options.labels, end_clock):
                yield TaggedOutput(TRAINING, training_row)


class ReplayJourneys(beam.PTransform):
    """(position, raw signal record) -> a dict of PCollections: journeys (final states), stage_history,
    sessions, decisions, dead_letters, feature_rows, journey_log, and training_rows when labels
    are given."""

    def __init__(self, ontology: Ontology, settings: JourneySettings, options: ReplayOptions = ReplayOptions(),
                 profiles=None, policy: Policy | None = None):
        """policy: the decision policy (the settings' by default)."""
        super().__init__()
        self.ontology, self.settings, self.options, self.profiles = ontology, settings, options, profiles
        self.policy = policy or settings_policy(settings)

    def expand(self, records):
        taken = records | "Intake" >> beam.ParDo(TakeSignals(self.ontology, self.settings, self.options)).with_outputs(
            DEAD, VISITORS, CUSTOMERS)
        end_clock = self._end_clock(records.pipeline, taken)
        outputs = (LOG, DECISIONS, STATES, FEATURE_ROWS, TRAINING)
        visitors = (taken[VISITORS]
                    | "GroupVisitors" >> beam.GroupByKey()
                    | "ReplayVisitors" >> beam.ParDo(ReplayKeys(VISITOR, self.ontology, self.settings, self.policy, self.options),
                                                     end_clock=end_clock).with_outputs(ROUTED, *outputs))
        customers = ((taken[CUSTOMERS], visitors[ROUTED])
                     | "CustomerItems" >> beam.Flatten()
                     | "GroupCustomers" >> beam.GroupByKey()
                     | "ReplayCustomers" >> beam.ParDo(ReplayKeys(CUSTOMER, self.ontology, self.settings, self.policy,
                                                                  self.options, self.profiles),
                                                       end_clock=end_clock).with_outputs(*outputs))

        def both(name):
            return (visitors[name], customers[name]) | f"All{name.title().replace('_', '')}" >> beam.Flatten()

        log = both(LOG)
        result = {
            "journey_log": log,
            "decisions": both(DECISIONS),
            "journeys": both(STATES),
            "feature_rows": customers[FEATURE_ROWS],
            "dead_letters": taken[DEAD],
            "stage_history": log | "StageHistory" >> beam.FlatMap(lambda r: [row] if (row := stage_history_row(r)) else []),
            "sessions": log | "Sessions" >> beam.FlatMap(lambda r: [row] if (row := session_row(r)) else []),
        }
        if self.options.labels is not None:
            result["training_rows"] = customers[TRAINING]
            result["signal_mix"] = (log
                                    | "CustomerSignals" >> beam.FlatMap(lambda r: [(r["event_type"], r["channel"])]
                                                                        if signal_of_a_customer(r) else [])
                                    | "CountSignals" >> beam.combiners.Count.PerElement()
                                    | "SignalMixRows" >> beam.MapTuple(lambda pair, count: {
                                        "event_type": pair[0], "channel": pair[1], "signals": count}))
        return result

    def _end_clock(self, pipeline, taken):
        if self.options.end_clock is not None:
            return AsSingleton(pipeline | "EndClock" >> beam.Create([self.options.end_clock]))
        bound = self.settings.max_out_of_orderness_ms
        times = ((taken[VISITORS], taken[CUSTOMERS])
                 | "AllItems" >> beam.Flatten()
                 | "EventTimes" >> beam.Map(lambda keyed: item_time(keyed[1][1])))
        # With no accepted signal there is nothing to replay; any clock will do.
        latest = times | "Latest" >> beam.CombineGlobally(lambda ts: max(ts, default=bound + 1))
        return AsSingleton(latest | "MinusBound" >> beam.Map(end_clock_of, bound))

