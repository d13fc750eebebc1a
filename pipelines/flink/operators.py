"""The journey job's Python operators. Each stays thin: read state once, call the core in
journeys.*, write state once, register the timers the core asks for, emit what it returns."""
from __future__ import annotations

import base64
import os
import sys
import time
from dataclasses import dataclass

import orjson
from pyflink.common import Row
from pyflink.common.time import Time
from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, ProcessFunction, RuntimeContext
from pyflink.datastream.functions import KeyedBroadcastProcessFunction
from pyflink.datastream.state import ListStateDescriptor, MapStateDescriptor, StateTtlConfig, ValueStateDescriptor
from pyflink.datastream.time_domain import TimeDomain

from journeys.assembly import build_intake, build_roles
from journeys.intake import Taken
from journeys.contract import DECISION_SCHEMA, Rejection, encode_record_avro
from journeys.keyed import CUSTOMER, VISITOR, KeyCall, passes_through
from journeys.ontology import Ontology
from journeys.outputs import JourneyLog, LogKind, OutputName, SortedOutputs, feature_row_record, sort_outputs
from journeys.policy import loads_policy
from journeys.policy_updates import CANARY, CHAMPION, PolicyInForce, read_stop, update_record
from journeys.rollback import MODEL, POLICY, Canary, TaskClock, tallies
from journeys.settings import JourneySettings
from journeys.state import KEY, decode, encode, item_head
from journeys.timers import BOUNDED, END_OF_TIME
from pipelines.feast.store import FeatureSettings
from pipelines.flink import wire
from pipelines.flink.state_cache import MISSING, RecentStates
from pipelines.flink.metrics import (FLUSH_S, CounterBatch, DecisionMetrics, DriftMetrics, FeatureMetrics,
                                     IntakeMetrics, JourneyMetrics, ModelMetrics, journeys_group)
from pipelines.mlflow.serving import ModelServingSettings
from pipelines.progress import Progress
from pipelines.quiet import hush_third_party_warnings

@dataclass(frozen=True)
class OutputSpec:
    """How records leave for one output.

    keyed=False: the records of one operator call as one element of newline-joined JSON lines,
    for file sinks (every call into Java hands over the GIL that all Python operators share, so
    fewer elements is faster). keyed=True: one Row(key, value) per record, for Kafka, keyed by
    the journey. encoding: json, or avro (single-object, Latin-1 characters standing for bytes)
    for decisions and dead letters."""

    keyed: bool = False
    encoding: str = "json"

    def type_info(self):
        return wire.KEYED_RECORD if self.keyed else wire.RECORD


def state_ttl(ttl_ms: int) -> StateTtlConfig:
    """State TTL with expired entries removed by RocksDB's compaction filter.

    The strategy is named explicitly because PyFlink 2.3 builds its default one with
    Duration.of_days(30), which needs a Py4J gateway: there is one in a local run, but none inside
    a cluster's TaskManager, where the job then fails at start. PyFlink hands only the entry count
    to Java, so Java's own periodic compaction default applies either way."""
    builder = StateTtlConfig.new_builder(Time.milliseconds(ttl_ms)).disable_cleanup_in_background()
    return builder.cleanup_in_rocksdb_compact_filter(1000, periodic_compaction_time=_JAVA_DEFAULT).build()


_JAVA_DEFAULT = "java default"


def output_tag(name: str, spec: OutputSpec) -> OutputTag:
    return OutputTag(name, spec.type_info())


def _subtask_index(runtime_context: RuntimeContext) -> int:
    """PyFlink 2.3's get_index_of_this_subtask calls a method Flink 2 removed from the Java
    RuntimeContext (now getTaskInfo().getIndexOfThisSubtask()); in thread mode the Java object is at hand."""
    java = getattr(runtime_context, "_runtime_context", None)
    if java is not None and hasattr(java, "getTaskInfo"):
        return java.getTaskInfo().getIndexOfThisSubtask()
    return runtime_context.get_index_of_this_subtask()


def _subtask_count(runtime_context: RuntimeContext) -> int:
    """As _subtask_index, for get_number_of_parallel_subtasks."""
    java = getattr(runtime_context, "_runtime_context", None)
    if java is not None and hasattr(java, "getTaskInfo"):
        return java.getTaskInfo().getNumberOfParallelSubtasks()
    return runtime_context.get_number_of_parallel_subtasks()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class LineIntake:
    """Raw lines read by a task: intake, its counts, its progress line, and its dead letters."""

    def __init__(self, settings: JourneySettings, encoding: str, dead_letters: OutputSpec, metrics: bool,
                 progress_s: float | None):
        self.settings, self.encoding, self.dead_letters = settings, encoding, dead_letters
        self.metrics_enabled, self.progress_s = metrics, progress_s

    def open(self, runtime_context: RuntimeContext, reader: str, counts: CounterBatch | None = None) -> None:
        """counts: the batch the intake counters join (None: they count straight into Flink)."""
        self.intake = build_intake(self.settings, self.encoding)
        tasks = _subtask_count(runtime_context)
        task = f" ({reader} {_subtask_index(runtime_context) + 1} of {tasks})" if tasks > 1 else ""
        # The standard output: in a local run the TaskManager's standard error does not reach the terminal.
        self.progress = Progress(f"journey_job{task}", self.progress_s, out=sys.stdout)
        self.tag = OutputTag(OutputName.DEAD_LETTERS)
        self.metrics = IntakeMetrics(journeys_group(runtime_context, self.metrics_enabled, counts))

    def take(self, line: str):
        """The line as a Taken, or as (dead-letter tag, dead-letter value) when intake rejects it."""
        self.progress.tick()
        now = _now_ms()
        taken = self.intake.take(line.encode(wire.RAW_LINE_CHARSET), now, now)
        if isinstance(taken, Rejection):
            self.metrics.rejected(taken.reason)
            if self.dead_letters.encoding == "avro":
                return self.tag, encode_record_avro(taken.to_record(), "dead_letter.v1").decode(wire.RAW_LINE_CHARSET)
            return self.tag, taken.to_json()
        self.metrics.taken()
        return taken


class ParseSignals(ProcessFunction):
    """Raw lines in; items for the journey operators out, each keyed by its first id (the anonymous
    id, else the customer id), with a timestamp; rejections to the dead letters. (For JSON lines
    read in order, the visitor operator takes the lines itself: see pipelines.flink.pipeline.)

    The timestamp is the signal's event time, or with positions, the record's place in what this
    task has read (its first record is 1): a bounded run at parallelism above 1 puts each
    customer's items back in that order (see _JourneyOperator)."""

    def __init__(self, settings: JourneySettings, encoding: str = "json", dead_letters: OutputSpec = OutputSpec(),
                 metrics: bool = True, progress_s: float | None = None, positions: bool = False):
        """progress_s: say every so many seconds how many signals this task has read (None: never)."""
        self.positions = positions
        self.lines = LineIntake(settings, encoding, dead_letters, metrics, progress_s)

    def open(self, runtime_context: RuntimeContext):
        hush_third_party_warnings()
        # Counts wait in Python only where the input is bounded (positions): this operator has no
        # timer to hand them over in a live stream's silence.
        self.counts = CounterBatch() if self.positions else None
        self.lines.open(runtime_context, "parser", self.counts)
        self.read = 0

    def process_element(self, line: str, ctx: ProcessFunction.Context):
        self.read += 1
        taken = self.lines.take(line)
        if self.counts is not None:
            self.counts.flush_if_due()
        if not isinstance(taken, Taken):
            yield taken
            return
        _, key, item, event_time = taken
        yield Row(key, item), self.read if self.positions else event_time

    def close(self):
        if self.counts is not None:
            self.counts.flush()


KEY_TOKEN_SEPARATOR = " "  # between a raw line and its key token (base64 has no space; see key_token)


def key_token(key: str) -> str:
    """What a raw line's key comes as, after the line: Flink SQL's TO_BASE64 of the key, a form that
    cannot contain the separator, so the line before it stays byte for byte what was read."""
    return base64.b64encode(key.encode()).decode()


# The key token of a line whose first id may hold personal data, and how the keys such lines share
# begin (pipelines.flink.pipeline). No id that is its own key holds an @ (PERSONAL_ID_HINT finds
# every @), and base64 has none, so SHARED and a journey's key make a cache key no other state has.
SHARED = "@"


class SharedKeys:
    """The journeys of one task that share Flink keys: each visitor's state in map state under its
    key as intake made it (its pseudonym), and the timers the core asked for, by time, with the
    journeys each one is for. A shared key's Flink timer is never deleted: one of its other
    journeys may want that time too, and a timer no journey wants finds none due."""

    def __init__(self, runtime_context: RuntimeContext, ttl_ms: int):
        states = MapStateDescriptor("journeys-sharing-a-key", Types.STRING(), wire.KEY_STATE)
        due = MapStateDescriptor("journeys-due-sharing-a-key", Types.LONG(), Types.STRING())
        if ttl_ms > 0:
            states.enable_time_to_live(state_ttl(ttl_ms))
            due.enable_time_to_live(state_ttl(ttl_ms))
        self.states = runtime_context.get_map_state(states)
        self.due = runtime_context.get_map_state(due)

    def schedule(self, journey: str, register: list[int], delete: list[int], timer_service, wall_timers: bool) -> None:
        for at in delete:
            waiting = self._waiting(at)
            if journey in waiting:
                waiting.remove(journey)
                self._keep(at, waiting)
        for at in register:
            waiting = self._waiting(at)
            if journey not in waiting:
                self._keep(at, waiting + [journey])
            if wall_timers:
                timer_service.register_processing_time_timer(at)
            else:
                timer_service.register_event_time_timer(at)

    def take_due(self, at: int) -> list[str]:
        """The journeys whose timer is at this time, which no longer wait for it."""
        waiting = self._waiting(at)
        if waiting:
            self.due.remove(at)
        return waiting

    def _waiting(self, at: int) -> list[str]:
        joined = self.due.get(at)
        return joined.split("\n") if joined else []  # intake takes no id with a line break

    def _keep(self, at: int, journeys: list[str]) -> None:
        if journeys:
            self.due.put(at, "\n".join(journeys))
        else:
            self.due.remove(at)


POSITION_SEPARATOR = "\x1c"  # between a buffered item's read position and the item (JSON has it only escaped)


# The policy in force, as broadcast state: the records of the accepted updates that make it (the
# policy in force, and a canary rolled out beside it), so that a task restored from a checkpoint
# decides with the policies that were in force when it was taken.
POLICY_STATE = MapStateDescriptor("policy-in-force", Types.STRING(), Types.STRING())
BROADCAST_KEYS = {CHAMPION: "current", CANARY: "canary"}  # "current": the key releases before canaries used
STOPPED_MODEL_CANARIES = "stopped-model-canaries"  # JSON [[model, version], ...] whose canaries the job stopped
# While a canary is in force, the journey operators' decision points go to its judge as tallies
# (journeys.rollback): Row(JUDGE_KEY, JSON lines: the task's clock, then its tallies), at most one
# element per operator call.
TALLIES = "canary-tallies"
TALLIES_SPEC = OutputSpec(keyed=True)
JUDGE_KEY = "canary"


class _JourneyOperator:
    """One keyed role of the journey core (journeys.keyed) over RocksDB keyed state.

    Each call reads the key's state once, hands it to the core with what arrived (an item, or the
    key's timer), writes the new state back once, registers and deletes the timers the core names,
    and emits what it returns at once. Decisions that act go to "decisions"; every decision point,
    acted on or not, to "decision-log" when asked for.

    The visitor operator sees every item first and hands the customer's own ones on unread, so that
    each customer's items reach the customer operator in one ordered stream."""

    def __init__(self, role: str, ontology: Ontology, settings: JourneySettings, end_clock: int | None,
                 outputs: dict[str, OutputSpec], policy: tuple[str, str], features: FeatureSettings | None = None,
                 models: ModelServingSettings | None = None, metrics: bool = True, time_mode: str = BOUNDED,
                 lines: LineIntake | None = None, judge_every_ms: int | None = None,
                 canary: tuple[str, str, float] | None = None):
        """policy: (text, source) of the policy in force at start.
        judge_every_ms: while a canary is in force, send its judge tallies (on TALLIES) and this
        task's clock at each such mark (journeys.rollback); None: no judge.
        canary: (text, source, share) of a canary policy in force from the start.
        lines: the visitor operator takes raw lines (keyed by their first id in the JVM) and does
        intake itself, with this, rather than items from ParseSignals.
        metrics: register the Flink metrics (pipelines.flink.metrics).
        time_mode: how the keys' time moves (journeys.timers): event-time timers at the end of a
        bounded input, or processing-time timers live."""
        self.policy_text = policy
        self.metrics_enabled = metrics
        self.role = role
        self.ontology = ontology
        self.settings = settings
        self.end_clock = end_clock
        self.outputs = outputs  # for "journeys", "decisions", "late", and "feature-rows" when asked for
        self.features = features if role == CUSTOMER else None  # visitors have no customer features
        self.models = models  # both roles decide, so both score
        self.time_mode = time_mode
        self.lines = lines
        self.judge_every_ms = judge_every_ms
        self.canary_text = canary

    def open(self, runtime_context: RuntimeContext):
        hush_third_party_warnings()
        self.counts = CounterBatch()
        self.flush_tick: int | None = None  # the processing-time timer that hands the counts over in silence
        if self.lines is not None:
            self.lines.open(runtime_context, "reader", self.counts)
        group = journeys_group(runtime_context, self.metrics_enabled, self.counts)
        profiles, self.pusher = None, None
        if self.features is not None:
            from pipelines.feast.store import FeastProfiles, FeastPusher, open_store

            store = open_store(self.features)
            profiles = FeastProfiles(store, self.features)
            self.pusher = FeastPusher(store, self.features)
            self.feature_metrics = FeatureMetrics(group, profiles, self.pusher)
        self.model_source, self.model_metrics, self.drift_metrics = None, None, None
        if self.models is not None:
            from pipelines.mlflow.serving import RegistryModels, WatchedRegistry

            self.model_metrics = ModelMetrics(group)
            self.model_source = RegistryModels(self.models, WatchedRegistry(self.models), self.model_metrics.observe).start()
            self.model_metrics.watch(self.model_source)
            self.drift_metrics = DriftMetrics(group, self.model_source, self.models.drift_threshold)
        feature_rows = self.pusher is not None or "feature-rows" in self.outputs
        self.policy = PolicyInForce(loads_policy(*self.policy_text, os.environ), os.environ)
        if self.canary_text is not None:
            self.policy.apply_record(update_record(*self.canary_text))  # checked by the driver: it is accepted
        self.keyed = build_roles(self.ontology, self.settings, self.policy, time.perf_counter, profiles,
                                 self.model_source, push_features=feature_rows, time_mode=self.time_mode)[self.role]
        self.wall_timers = self.time_mode != BOUNDED
        self.first_task = _subtask_index(runtime_context) == 0
        self.task_clock = (TaskClock(f"{self.role}-{_subtask_index(runtime_context)}", _subtask_count(runtime_context),
                                     self.judge_every_ms, self.settings.max_out_of_orderness_ms)
                           if self.judge_every_ms else None)
        self.decision_metrics = DecisionMetrics(group, self.policy, models_configured=self.models is not None)
        self.journey_metrics = JourneyMetrics(group)
        state_descriptor = ValueStateDescriptor("journey", wire.KEY_STATE)
        # Items a release before this one buffered until the watermark passed them: read only when
        # one of that release's timers fires, after a restore.
        arrivals_descriptor = ListStateDescriptor("arrivals", wire.ITEM)
        if self.settings.state_ttl_ms > 0:
            ttl = state_ttl(self.settings.state_ttl_ms)
            state_descriptor.enable_time_to_live(ttl)
            arrivals_descriptor.enable_time_to_live(ttl)
        self.state = runtime_context.get_state(state_descriptor)
        self.shared = SharedKeys(runtime_context, self.settings.state_ttl_ms) if self.lines is not None else None
        self.recent = RecentStates(self.settings.state_cache_keys, self.settings.state_ttl_ms)
        self.earlier_arrivals = runtime_context.get_list_state(arrivals_descriptor)
        # A customer's items come from every visitor task: with more than one, a bounded run puts
        # them back in the order they were read (their timestamps are positions), which costs a
        # buffer; at parallelism 1 they arrive in that order, and live they apply as they arrive.
        self.in_read_order = (self.role == CUSTOMER and not self.wall_timers and _subtask_count(runtime_context) > 1)
        if self.in_read_order:
            ordered_descriptor = ListStateDescriptor("arrivals-in-read-order", wire.ITEM)
            if self.settings.state_ttl_ms > 0:
                ordered_descriptor.enable_time_to_live(state_ttl(self.settings.state_ttl_ms))
            self.unordered = runtime_context.get_list_state(ordered_descriptor)
        self.tags = {name: OutputTag(name) for name in self.outputs}
        hush_third_party_warnings()  # again, after Feast's and MLflow's imports

    def process_element(self, item: str, ctx: KeyedProcessFunction.Context):
        yield from self._element(item, ctx)
        self._counted(ctx)

    def _counted(self, ctx) -> None:
        """Hand the counts over when they are due; live, make sure they are even if nothing else comes."""
        self.counts.flush_if_due()
        if self.counts.dirty and self.wall_timers and self.flush_tick is None:
            self.flush_tick = _now_ms() + int(FLUSH_S * 1000)
            ctx.timer_service().register_processing_time_timer(self.flush_tick)

    def _element(self, item: str, ctx: KeyedProcessFunction.Context):
        journey = None  # the visitor's key, where its Flink key is shared
        if self.lines is not None:  # a raw line: intake first
            item, _, key = item.rpartition(KEY_TOKEN_SEPARATOR)
            taken = self.lines.take(item)
            if not isinstance(taken, Taken):
                yield from self._dead_letter(*taken)
                return
            role, customer, item, _ = taken
            if role == CUSTOMER:
                yield self._passed_on(customer, item)
                return
            if key == SHARED:
                journey, key = customer, SHARED + customer
            head = None
        else:
            head = item_head(item)
            customer = passes_through(item, head) if self.role == VISITOR else None
            if customer is not None:
                yield self._passed_on(customer, item)
                return
            key = head[KEY]  # an item's head names the key it was sent by
        if self.in_read_order:
            position = ctx.timestamp()
            self.unordered.add(f"{position}{POSITION_SEPARATOR}{item}")
            ctx.timer_service().register_event_time_timer(position)
            return
        call = self.keyed.on_signal(self._read(key, journey), item, head)
        yield from self._after(key, call, ctx, journey)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        yield from self._fired(timestamp, ctx)
        self._counted(ctx)

    def _fired(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        wall_time = ctx.time_domain() == TimeDomain.PROCESSING_TIME
        key = ctx.get_current_key()
        if self.lines is not None:
            if key.startswith(SHARED):
                yield from self._fired_shared(timestamp, ctx, wall_time)
                return
            key = key_token(key)
        state = self._read(key)
        if wall_time and timestamp == self.flush_tick:
            self.flush_tick = None
            self.counts.flush()
            if state is None or timestamp not in state.timers:  # only the counts' timer, not the key's own
                return
        if self.in_read_order:
            call = self._in_read_order(state, ctx.timer_service().current_watermark())
            if timestamp < END_OF_TIME:
                yield from self._after(key, call, ctx)
                return
            state, ordered_out = call.state, call.out
        else:
            ordered_out = []
        if not wall_time and timestamp < END_OF_TIME:
            state = self._with_earlier_arrivals(state)
        call = self.keyed.on_timer(state, timestamp, self.end_clock, wall_time)
        yield from self._after(key, call._replace(out=ordered_out + call.out), ctx)

    def _fired_shared(self, timestamp: int, ctx, wall_time: bool):
        """A shared key's timer: the counts' if it is theirs, and that of every journey due then."""
        if wall_time and timestamp == self.flush_tick:
            self.flush_tick = None
            self.counts.flush()
        for journey in self.shared.take_due(timestamp):
            key = SHARED + journey
            call = self.keyed.on_timer(self._read(key, journey), timestamp, self.end_clock, wall_time)
            yield from self._after(key, call, ctx, journey)

    def _in_read_order(self, state, watermark: int) -> KeyCall:
        """Apply the buffered items every visitor task has passed, in the order they were read."""
        ready, waiting = [], []
        for entry in self.unordered.get() or ():
            position, _, item = entry.partition(POSITION_SEPARATOR)
            (ready if int(position) <= watermark else waiting).append((int(position), item))
        if not ready:
            return KeyCall(state, [], [], [])
        if waiting:
            self.unordered.update([f"{position}{POSITION_SEPARATOR}{item}" for position, item in waiting])
        else:
            self.unordered.clear()
        out, register, delete = [], [], []
        for _, item in sorted(ready):
            state, produced, more, fewer = self.keyed.on_signal(state, item)
            out.extend(produced)
            register.extend(more)
            delete.extend(fewer)
        return KeyCall(state, out, [at for at in register if at not in delete], [at for at in delete if at not in register])

    def _with_earlier_arrivals(self, state):
        arrivals = list(self.earlier_arrivals.get() or ())
        if arrivals and state is not None:
            self.earlier_arrivals.clear()
            state.backlog.extend(arrivals)
        return state

    def _read(self, key: str, journey: str | None = None):
        """key: the state's cache key. journey: where the Flink key is shared, the journey's key in it."""
        encoded = self.recent.get(key)
        if encoded is MISSING:
            encoded = self.state.value() if journey is None else self.shared.states.get(journey)
        return decode(encoded)

    def _after(self, key: str, call, ctx, journey: str | None = None):
        state, out, register, delete = call
        if state is not None:
            encoded = encode(state)
            if journey is None:
                self.state.update(encoded)
            else:
                self.shared.states.put(journey, encoded)
            self.recent.put(key, encoded)
        elif self.recent.get(key) is not None:  # there may be a state to clear
            if journey is None:
                self.state.clear()
            else:
                self.shared.states.remove(journey)
            self.recent.put(key, None)
        if journey is not None and (register or delete):
            self.shared.schedule(journey, register, delete, ctx.timer_service(), self.wall_timers)
        elif register or delete:
            timer_service = ctx.timer_service()
            if self.wall_timers:
                for at in delete:
                    timer_service.delete_processing_time_timer(at)
                for at in register:
                    timer_service.register_processing_time_timer(at)
            else:
                for at in delete:
                    timer_service.delete_event_time_timer(at)
                for at in register:
                    timer_service.register_event_time_timer(at)
        if not out:
            return
        outputs = sort_outputs(out, _now_ms())
        if self.pusher is not None:
            for row in outputs.feature_rows:
                self.pusher.add(row.customer_id, row.row)
            self.pusher.flush_if_due()
            self.feature_metrics.update()
        if self.model_metrics is not None:
            self.model_metrics.update(outputs)
            self.drift_metrics.update(outputs)
        self.decision_metrics.update(outputs)
        self.journey_metrics.update(outputs)
        yield from self._emit(outputs)

    def close(self):
        self.counts.flush()
        if self.pusher is not None:
            self.pusher.flush()
            self.feature_metrics.update()
        if self.model_source is not None:
            self.model_source.stop()

    @staticmethod
    def _passed_on(key: str, item: str) -> Row:
        return Row(key, item)

    @staticmethod
    def _dead_letter(tag: OutputTag, value: str):
        yield tag, value

    def _emit(self, outputs: SortedOutputs):
        for routed in outputs.routed:
            yield Row(routed.key, routed.item)
        yield from self._records(OutputName.DECISIONS, outputs.decisions)
        yield from self._records(OutputName.DECISION_LOG, outputs.decision_log)
        yield from self._tallies(outputs)
        yield from self._records(OutputName.JOURNEYS, outputs.journeys)
        yield from self._records(OutputName.LATE, outputs.late)
        if outputs.feature_rows and OutputName.FEATURE_ROWS in self.outputs:
            yield from self._records(OutputName.FEATURE_ROWS, [feature_row_record(row) for row in outputs.feature_rows])

    def _tallies(self, outputs: SortedOutputs):
        """While a canary is in force: this call's tallies, after this task's clock, when there are
        any or the clock has passed a mark (journeys.rollback)."""
        if self.task_clock is None:
            return
        canaries = self._canaries()
        if not canaries:
            return
        found = [orjson.dumps(t).decode() for point in outputs.decision_log for t in tallies(point, canaries)]
        if self.task_clock.advance(outputs.journeys, outputs.decision_log) or found:
            drifting = self.drift_metrics.drifting() if self.drift_metrics is not None else None
            header = orjson.dumps(self.task_clock.header(drifting)).decode()
            yield self.tags[TALLIES], Row(JUDGE_KEY, "\n".join([header, *found]))

    def _canaries(self) -> list[Canary]:
        """The canaries in force in this task: the policy's, and each model's (journeys.rollback)."""
        canaries = [Canary(POLICY, self.policy.canary.version)] if self.policy.canary is not None else []
        if self.model_source is not None:
            canaries += [Canary(MODEL, c.scorer.version, c.scorer.name) for c in self.model_source.active().canaries]
        return canaries

    def _records(self, name: str, records: list[dict]):
        """One output's records: one Row(key, value) each where it is keyed, else one element of JSON lines."""
        spec = self.outputs.get(name)
        if not records or spec is None:
            return
        tag = self.tags[name]
        if not spec.keyed:
            yield tag, "\n".join(orjson.dumps(record).decode() for record in records)
            return
        for record in records:
            value = (encode_record_avro(record, DECISION_SCHEMA).decode(wire.RAW_LINE_CHARSET)
                     if spec.encoding == "avro" else orjson.dumps(record).decode())
            yield tag, Row(record.get("journey") or record.get("customer_id") or "", value)


class MapJourneys(_JourneyOperator, KeyedProcessFunction):
    """The journey operator with the policy it started with."""


class MapJourneysWithPolicyUpdates(_JourneyOperator, KeyedBroadcastProcessFunction):
    """The journey operator with a control stream of policy updates as its broadcast input.

    Every task gets every update. An accepted one is in force from the task's next operator call
    and is kept in broadcast state; an invalid one is rejected and logged (to the journey log, by
    the first task of each operator), and the policy in force stays.

    PyFlink 2.3 drops side outputs yielded from on_timer of a keyed broadcast function (its
    on_timer path skips the side-output routing that process_element gets), so this operator
    yields every record on its main output as Row(output, key, value), and RouteOutputs, the
    next operator, sends each to its output. (That costs one more Python operator on this path.)"""

    def open(self, runtime_context: RuntimeContext):
        super().open(runtime_context)
        self._restored = False

    def process_element(self, item: str, ctx):
        self._restore(ctx)
        return super().process_element(item, ctx)

    def on_timer(self, timestamp: int, ctx):
        self._restore(ctx)
        return super().on_timer(timestamp, ctx)

    def process_broadcast_element(self, line: str, ctx):
        self._restored = True
        stop = read_stop(line)
        if stop is not None and stop.model is not None:
            yield from self._stop_model_canary(stop, ctx)
            return
        result = self.policy.apply_record(line)
        if result.accepted:
            state = ctx.get_broadcast_state(POLICY_STATE)
            for arm, key in BROADCAST_KEYS.items():
                state.put(key, self.policy.records.get(arm, ""))
        self.decision_metrics.updated(result)
        self.counts.flush()  # rare, and watched for
        if self.first_task:
            record = result.to_record() | {"journey": "", "operator": self.role, "at": _now_ms()}
            yield from self._emit(sort_outputs([JourneyLog(record)]))

    def _stop_model_canary(self, stop, ctx):
        """A model canary's stop: this task's models score with the champion for everyone again;
        broadcast state keeps it, for a restored task."""
        stopped = self.model_source is not None and self.model_source.stop_canary(stop.model, stop.version)
        state = ctx.get_broadcast_state(POLICY_STATE)
        kept = orjson.loads(state.get(STOPPED_MODEL_CANARIES) or "[]")
        if [stop.model, stop.version] not in kept:
            state.put(STOPPED_MODEL_CANARIES, orjson.dumps((kept + [[stop.model, stop.version]])[-100:]).decode())
        if self.first_task:
            record = {"kind": LogKind.MODEL_CANARY, "journey": "", "operator": self.role, "at": _now_ms(),
                      "model": stop.model, "version": stop.version, "source": stop.source, "accepted": stopped,
                      "reason": f"canary of {stop.model} version {stop.version} stopped ({stop.reason}); its champion "
                                f"scores for everyone" if stopped else f"no canary of {stop.model} version "
                                                                        f"{stop.version} here ({stop.reason})"}
            yield from self._emit(sort_outputs([JourneyLog(record)]))

    @staticmethod
    def _passed_on(key: str, item: str) -> Row:
        return Row("", key, item)

    @staticmethod
    def _dead_letter(tag: OutputTag, value: str):
        yield Row(tag.tag_id, "", value)

    def _emit(self, outputs: SortedOutputs):
        for element in super()._emit(outputs):
            if isinstance(element, tuple):
                tag, value = element
                yield Row(tag.tag_id, *(value if isinstance(value, Row) else ("", value)))
            else:
                yield Row("", *element)

    def _restore(self, ctx) -> None:
        if self._restored:
            return
        self._restored = True
        state = ctx.get_broadcast_state(POLICY_STATE)
        records = {arm: state.get(key) for arm, key in BROADCAST_KEYS.items()}
        if any(value is not None for value in records.values()):
            self.policy.restore(records)
            self.decision_metrics.policy_changed()
        if self.model_source is not None:
            for model, version in orjson.loads(state.get(STOPPED_MODEL_CANARIES) or "[]"):
                self.model_source.stop_canary(model, version)


class RouteOutputs(ProcessFunction):
    """Row(output, key, value) in; each value out on its output, as a Row(key, value) where that
    output is keyed (and for the main output, which is keyed items), as the plain value elsewhere."""

    def __init__(self, outputs: dict[str, OutputSpec]):
        self.keyed = {name for name, spec in outputs.items() if spec.keyed}

    def open(self, runtime_context: RuntimeContext):
        self.tags: dict[str, OutputTag] = {}

    def process_element(self, element: Row, ctx: ProcessFunction.Context):
        output, key, value = element
        if not output:
            yield Row(key, value)
            return
        tag = self.tags.get(output)
        if tag is None:
            tag = self.tags[output] = OutputTag(output)
        yield tag, (Row(key, value) if output in self.keyed else value)


__all__ = ["LineIntake", "ParseSignals", "MapJourneys", "MapJourneysWithPolicyUpdates", "RouteOutputs", "POLICY_STATE",
           "TALLIES", "TALLIES_SPEC", "JUDGE_KEY",
           "OutputSpec", "output_tag"]
