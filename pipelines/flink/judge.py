"""The canary's judge as a Flink operator: one key (parallelism 1), its state plain JSON in keyed
state (journeys.rollback). It judges as tallies arrive, and the marks still open when a bounded
input ends, at its end-of-time timer."""
from __future__ import annotations

import time

import orjson
from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from journeys.assembly import ROLES
from journeys.gates import Gates
from journeys.rollback import CanaryJudge, Judged
from journeys.settings import JourneySettings
from journeys.timers import END_OF_TIME
from pipelines.flink.metrics import CanaryMetrics, journeys_group
from pipelines.mlflow.settings import drift_holds_canary
from pipelines.flink.operators import OutputSpec

CONTROL_RECORDS = "control-records"  # stop records, for the job's own control stream
CONTROL_TAG = OutputTag(CONTROL_RECORDS, Types.STRING())


class JudgeCanary(KeyedProcessFunction):
    """Tallies in (JSON lines, keyed by JUDGE_KEY); journey log records of each changed verdict out (shaped
    as the journey log's OutputSpec says), and on CONTROL_TAG the stop record of a failed canary.
    Metrics: pipelines.flink.metrics.CanaryMetrics."""

    def __init__(self, gates: Gates, settings: JourneySettings, journeys: OutputSpec, metrics: bool = True,
                 stops: bool = True):
        """settings: the lateness bound (how far past a mark every task must be before it is
        judged) and the idle timeout (after which a silent task holds the judge back no more).
        stops: there is a control stream to send a failed canary's stop through."""
        self.gates = gates
        self.stops = stops
        self.lateness_ms, self.idle_ms = settings.max_out_of_orderness_ms, settings.idle_source_timeout_ms
        self.drift_holds = drift_holds_canary(settings.models)
        self.keyed = journeys.keyed
        self.metrics_enabled = metrics

    def open(self, runtime_context: RuntimeContext):
        self.state = runtime_context.get_state(ValueStateDescriptor("canary-judge", Types.STRING()))
        self.opened = True  # a restored judge gives every task it knew the idle timeout again
        self.metrics = CanaryMetrics(journeys_group(runtime_context, self.metrics_enabled))

    def process_element(self, tallies: str, ctx: KeyedProcessFunction.Context):
        judge = self._judge()
        if not judge.state["tasks"]:
            ctx.timer_service().register_event_time_timer(END_OF_TIME)  # the end of a bounded input
        header, *points = (orjson.loads(line) for line in tallies.split("\n"))
        now_ms = int(time.time() * 1000)
        if self.opened:
            self.opened = False
            judge.restarted(now_ms)
        said = judge.take(header, points, now_ms, self._source(judge))
        self.state.update(orjson.dumps(judge.state).decode())
        yield from self._said(said)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        judge = self._judge()
        said = judge.finish(self._source(judge))
        self.state.update(orjson.dumps(judge.state).decode())
        yield from self._said(said)

    def _said(self, said: list[Judged]):
        for judged in said:
            self.metrics.judged(judged.log["verdict"], judged.stop is not None)
            line = orjson.dumps(judged.log).decode()
            yield Row("", line) if self.keyed else line
            if judged.stop is not None:
                yield CONTROL_TAG, judged.stop

    def _judge(self) -> CanaryJudge:
        raw = self.state.value()
        return CanaryJudge(self.gates, self.lateness_ms, self.idle_ms, orjson.loads(raw) if raw else None, self.stops,
                           self.drift_holds, ROLES)

    @staticmethod
    def _source(judge: CanaryJudge) -> str:
        return f"gates {judge.gates}"


__all__ = ["JudgeCanary", "CONTROL_RECORDS", "CONTROL_TAG"]
