"""The journey job's Flink metrics, registered through each operator's metric group.

Everything sits in a user group `journeys`; what varies by value (a rejection reason, an agent
and action, a suppressing rule, a fallback kind) is a key/value group, so that reporters show it
as a label: Prometheus sees `flink_taskmanager_job_task_operator_journeys_agent_action_decisions
{agent="conversion",action="cart_reminder",...}`. README.md lists every name.

Two PyFlink thread-mode facts shape this module:
- `MetricGroup.distribution()` is a Java gauge holding the last value it was given, not a
  distribution. Latencies therefore go into a real Flink histogram (reporters show count and
  quantiles), made on the Java side of the metric group.
- A Python gauge is called back from the reporter's thread. Values that change (the policy and
  champion versions) are set from the operator's own thread instead, on a settable Java gauge.
- Every `counter.inc()` is a call into Java, and each such call hands over the GIL that all of a
  TaskManager's Python operators share. So counters count in Python (CounterBatch) and reach Flink
  together, at most FLUSH_S apart; the operator makes sure a batch is handed over in silence too.
"""
from __future__ import annotations

import logging
import time

from journeys.drift import RunningDrift
from journeys.features import FALLBACK
from journeys.outputs import ACCEPTED_KINDS, LogKind, SortedOutputs

log = logging.getLogger(__name__)

GROUP = "journeys"
HISTOGRAM_WINDOW = 10_000  # latest samples a histogram's quantiles are computed over
FLUSH_S = 1.0  # the longest a count waits in Python before Flink sees it


def journeys_group(runtime_context, enabled: bool = True, batch: "CounterBatch | None" = None):
    """The job's metric group, or one that registers nothing: PyFlink's thread mode ignores
    `python.metric.enabled: false`, so the job honours it here. With a batch, the group's counters
    count in Python until the batch is flushed."""
    if not enabled:
        return NO_METRICS
    group = runtime_context.get_metrics_group().add_group(GROUP)
    return group if batch is None else BatchedGroup(group, batch)


class CounterBatch:
    """The counts of one operator's counters not yet handed to Flink."""

    def __init__(self):
        self.counters: list[PendingCounter] = []
        self.dirty = False  # some counter has counted since the last flush
        self._flush_at = 0.0

    def flush(self) -> None:
        for counter in self.counters:
            counter.hand_over()
        self.dirty = False
        self._flush_at = time.monotonic() + FLUSH_S

    def flush_if_due(self) -> None:
        if self.dirty and time.monotonic() >= self._flush_at:
            self.flush()


class PendingCounter:
    """A Flink counter that counts in Python until its batch is flushed."""

    __slots__ = ("_counter", "_batch", "_pending")

    def __init__(self, counter, batch: CounterBatch):
        self._counter, self._batch, self._pending = counter, batch, 0

    def inc(self, by: int = 1) -> None:
        self._pending += by
        self._batch.dirty = True

    def hand_over(self) -> None:
        if self._pending:
            self._counter.inc(self._pending)
            self._pending = 0


class BatchedGroup:
    """A metric group whose counters join a CounterBatch; its other metrics are the group's own."""

    def __init__(self, group, batch: CounterBatch):
        self._group, self._batch = group, batch
        self._metrics = getattr(group, "_metrics", None)  # the Java group, for Histogram

    def add_group(self, name: str, extra: str | None = None) -> "BatchedGroup":
        group = self._group.add_group(name) if extra is None else self._group.add_group(name, extra)
        return BatchedGroup(group, self._batch)

    def counter(self, name: str) -> PendingCounter:
        counter = PendingCounter(self._group.counter(name), self._batch)
        self._batch.counters.append(counter)
        return counter

    def distribution(self, name: str):
        return self._group.distribution(name)


class _NoMetrics:
    """A metric group whose groups, counters and distributions do nothing."""

    def add_group(self, name: str, extra: str | None = None) -> "_NoMetrics":
        return self

    def counter(self, name: str) -> "_NoMetrics":
        return self

    distribution = counter

    def inc(self, by: int = 1) -> None:
        pass

    def update(self, value: int) -> None:
        pass


NO_METRICS = _NoMetrics()


class LabeledCounters:
    """Counters of one name told apart by label values, created on first use."""

    def __init__(self, group, name: str, *labels: str):
        self._group, self._name, self._labels = group, name, labels
        self._counters: dict[tuple, object] = {}

    def inc(self, *values: str, by: int = 1) -> None:
        counter = self._counters.get(values)
        if counter is None:
            group = self._group
            for label, value in zip(self._labels, values):
                group = group.add_group(label, value)
            counter = self._counters[values] = group.counter(self._name)
        counter.inc(by)


class LabeledSettings:
    """Settable gauges of one name told apart by label values, created on first use."""

    def __init__(self, group, name: str, *labels: str):
        self._group, self._name, self._labels = group, name, labels
        self._gauges: dict[tuple, Setting] = {}

    def set(self, *values: str, to: int) -> None:
        gauge = self._gauges.get(values)
        if gauge is None:
            group = self._group
            for label, value in zip(self._labels, values):
                group = group.add_group(label, value)
            gauge = self._gauges[values] = Setting(group, self._name)
        gauge.set(to)


class Histogram:
    """A Flink histogram (DescriptiveStatisticsHistogram over the latest samples) where the
    metric group is a Java one (thread mode); PyFlink's distribution elsewhere."""

    def __init__(self, group, name: str):
        java_group = getattr(group, "_metrics", None)
        if java_group is not None:
            from pemja import findClass

            histogram_class = findClass("org.apache.flink.runtime.metrics.DescriptiveStatisticsHistogram")
            self._metric = java_group.histogram(name, histogram_class(HISTOGRAM_WINDOW))
        else:
            self._metric = group.distribution(name)

    def update(self, value: int) -> None:
        self._metric.update(int(value))


class Setting:
    """A gauge whose value the operator sets (a settable Java gauge: see the module's note)."""

    def __init__(self, group, name: str):
        self._gauge = group.distribution(name)
        self._value = None

    def set(self, value: int) -> None:
        if value != self._value:
            self._value = value
            self._gauge.update(value)


class IntakeMetrics:
    """What the parser saw: every signal in, and the rejected ones by reason."""

    def __init__(self, group):
        self._in = group.counter("signals_in")
        self._rejected = LabeledCounters(group, "signals_rejected", "reason")

    def taken(self) -> None:
        self._in.inc()

    def rejected(self, reason: str) -> None:
        self._in.inc()
        self._rejected.inc(reason)


class JourneyMetrics:
    """Signals as a journey operator saw them (accepted, applied, deduplicated, late), outcomes
    joined to their decisions or not, and two histograms in milliseconds of wall clock: decision
    latency, and time-to-map, from a signal's intake to the journey update that reflects it.

    Accepted counts as the run summary does, so that signals_in = signals_accepted +
    signals_rejected + signals_deduplicated across the job's operators."""

    KINDS = {LogKind.SIGNAL: "signals_applied", LogKind.DUPLICATE: "signals_deduplicated", LogKind.LATE: "signals_late"}

    def __init__(self, group):
        self._counters = {name: group.counter(name) for name in
                          (*self.KINDS.values(), "signals_accepted", "outcomes_joined", "outcomes_unmatched")}
        self._stale = LabeledCounters(group, "decisions_stale", "signal_channel", "decision_channel")
        self._decision_latency = Histogram(group, "decision_latency_ms")
        self._time_to_map = Histogram(group, "time_to_map_ms")

    def update(self, outputs: SortedOutputs) -> None:
        for records in (outputs.journeys, outputs.late):
            for record in records:
                kind = record["kind"]
                name = self.KINDS.get(kind)
                if name is not None:
                    self._counters[name].inc()
                if kind in ACCEPTED_KINDS:
                    self._counters["signals_accepted"].inc()
                if "matched" in record:  # an answer to a decision, joined or not
                    self._counters["outcomes_joined" if record.get("matched") else "outcomes_unmatched"].inc()
                elif kind == LogKind.STALE_DECISION:
                    self._stale.inc(record["signal_channel"], record["channel"])
        for latency_ms in outputs.decision_latencies_ms:
            self._decision_latency.update(latency_ms)
        for latency_ms in outputs.map_latencies_ms:
            self._time_to_map.update(latency_ms)


class DecisionMetrics:
    """Decisions by agent and action, held for the control group, suppressions by rule, fallbacks
    by kind (features: the store's defaults; model: rules alone although models are configured;
    fast_path: the latency budget), policy updates, the policy version in force and a canary's share."""

    def __init__(self, group, policy, models_configured: bool):
        self._decisions = LabeledCounters(group, "decisions", "agent", "action")
        self._control = group.counter("decisions_control_group")
        self._suppressed = LabeledCounters(group, "suppressions", "rule")
        self._fallbacks = LabeledCounters(group, "fallbacks", "kind")
        self._updates = LabeledCounters(group, "policy_updates", "result")
        self._policy = policy
        self._models_configured = models_configured
        self._version = Setting(group, "policy_version")
        self._canary_share = Setting(group, "canary_share_milli")  # 0 once a canary is stopped or promoted
        self.policy_changed()

    def update(self, outputs: SortedOutputs) -> None:
        for record in outputs.decision_log:
            if record["acted"]:
                self._decisions.inc(record["agent"], record["action"])
            elif record["control"]:
                self._control.inc()
            for rule in record["suppressions"]:
                self._suppressed.inc(rule)
            if record["feature_source"] == FALLBACK:
                self._fallbacks.inc("features")
            if record["fast_path"]:
                self._fallbacks.inc("fast_path")
            elif self._models_configured and not record["models"]:
                self._fallbacks.inc("model")

    def updated(self, result) -> None:
        self._updates.inc("accepted" if result.accepted else "rejected")
        self.policy_changed()

    def policy_changed(self) -> None:
        """After an update, and after a restore brings back the policy from broadcast state."""
        version = self._policy.policy.version
        self._version.set(int(version) if version.isdigit() else 0)
        self._canary_share.set(round(self._policy.canary_share * 1000))


class CanaryMetrics:
    """The canary's judge (journeys.rollback): each change of verdict, and the canaries it stopped."""

    def __init__(self, group):
        self._verdicts = LabeledCounters(group, "canary_verdicts", "verdict")
        self._rollbacks = group.counter("canary_rollbacks")

    def judged(self, verdict: str, stopped: bool) -> None:
        self._verdicts.inc(verdict)
        if stopped:
            self._rollbacks.inc()


class CountersFromTotals:
    """Flink counters that follow running totals kept elsewhere (the core's and the clients' counts):
    each sync adds what a total grew by since the last one."""

    def __init__(self, group, prefix: str, names: tuple[str, ...]):
        self._counters = {name: group.counter(f"{prefix}{name}") for name in names}
        self._seen = dict.fromkeys(names, 0)

    def sync(self, totals: dict) -> None:
        for name, value in totals.items():
            if value != self._seen[name]:
                self._counters[name].inc(value - self._seen[name])
                self._seen[name] = value


class ModelMetrics:
    """The stage models: decisions scored or on rules alone, registry polls and swaps, each
    champion's version, and the inference cost per decision (microseconds)."""

    REGISTRY_COUNTS = ("polls", "poll_failures", "loads", "swaps", "load_failures")

    def __init__(self, group):
        self._group = group
        self._scored = group.counter("model_decisions_scored")
        self._rules_alone = group.counter("model_decisions_rules_alone")
        self._registry = CountersFromTotals(group, "model_", self.REGISTRY_COUNTS)
        self._inference = Histogram(group, "model_inference_us_per_decision")
        self._source = None
        self._versions: dict[str, Setting] = {}

    def watch(self, source) -> None:
        self._source = source
        self._versions = {name: Setting(self._group, f"model_{name}_champion_version")
                          for _, name in source.settings.registered}

    def observe(self, rows: int, seconds: float) -> None:
        if rows:
            self._inference.update(int(seconds * 1_000_000 / rows))

    def update(self, outputs: SortedOutputs) -> None:
        for record in outputs.decision_log:
            (self._scored if record.get("models") else self._rules_alone).inc()
        counts = self._source.counts
        self._registry.sync({name: getattr(counts, name) for name in self.REGISTRY_COUNTS})
        for name, setting in self._versions.items():
            setting.set(int(counts.champion_versions.get(name) or 0))


class DriftMetrics:
    """Drift of what the task's champions score from their training data (journeys.drift): a gauge
    per model and feature, its PSI in thousandths (Flink's settable gauges hold whole numbers), and
    a counted alert each time a feature's PSI rises above the threshold. Figures are computed every
    EVALUATE_EVERY decisions a champion scored, so they follow the decisions, not the clock; a new
    champion version starts a new comparison with its own training data."""

    EVALUATE_EVERY = 200

    def __init__(self, group, source, threshold: float):
        self._source, self._threshold = source, threshold
        self._running: dict[str, tuple[str, RunningDrift]] = {}  # registered name -> (version, comparison)
        self._psi = LabeledSettings(group, "drift_psi_milli", "model", "feature")
        self._alerts = LabeledCounters(group, "drift_alerts", "model", "feature")
        self._above: set[tuple[str, str]] = set()

    def update(self, outputs: SortedOutputs) -> None:
        if not outputs.decision_log and not outputs.journeys:
            return
        for model in self._source.active().champions:
            profile = getattr(model, "drift_profile", None)
            if profile is None:
                continue
            current = self._running.get(model.name)
            if current is None or current[0] != model.version:
                current = self._running[model.name] = (model.version, RunningDrift(profile, self._threshold))
                self._above = {pair for pair in self._above if pair[0] != model.name}
            running = current[1]
            for record in outputs.journeys:
                running.add_signal(record)
            for record in outputs.decision_log:
                if running.add(record) and running.seen.rows % self.EVALUATE_EVERY == 0:
                    self._evaluate(model.name, running)

    def drifting(self) -> list[str]:
        """The features above the threshold now, as model.feature: what holds a canary (journeys.rollback)."""
        return sorted(f"{model}.{feature}" for model, feature in self._above)

    def _evaluate(self, name: str, running: RunningDrift) -> None:
        figures = running.psi()
        drifted = set(running.drifted(figures))
        for feature, value in figures.items():
            self._psi.set(name, feature, to=int(round(value * 1000)))
            if feature in drifted and (name, feature) not in self._above:
                self._alerts.inc(name, feature)
                log.warning("drift: %s's %s has a PSI of %.3f against its training data (threshold %.2f), over %d "
                            "decisions", name, feature, value, self._threshold, running.seen.rows)
        self._above = {pair for pair in self._above if pair[0] != name} | {(name, f) for f in drifted}


class FeatureMetrics:
    """Feature lookups and pushes to the online store."""

    def __init__(self, group, profiles, pusher):
        self._profiles, self._pusher = profiles, pusher
        self._counters = CountersFromTotals(group, "feature_", (
            "lookups_online", "lookups_cache", "lookups_missing", "lookups_fallback", "lookups_slow",
            "rows_pushed", "push_failures", "rows_dropped"))

    def update(self) -> None:
        lookups, pushes = self._profiles.counts, self._pusher.counts
        self._counters.sync({
            "lookups_online": lookups.online, "lookups_cache": lookups.cache, "lookups_missing": lookups.missing,
            "lookups_fallback": lookups.fallback, "lookups_slow": lookups.slow, "rows_pushed": pushes.rows_pushed,
            "push_failures": pushes.failed_attempts, "rows_dropped": pushes.rows_dropped})
