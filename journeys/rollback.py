"""The job's own judge of a canary: its gates judged live, and the canary stopped when one fails.

While a canary is in force, every decision point outside the control group leaves the journey
operators as a tally (`tally`): the canary it was decided beside, its arm, its event time and the
few fields the gates count. One judge sees every tally. It counts them into marks of event time
(the gate file's `judge_every`), and judges the gates on the counts up to a mark once every task
that sends tallies is past it (journeys.gates: the same figures, intervals and minimum sample as
`journeys canary status`). When the verdict changes it says so in the journey log (kind
`canary_verdict`), and when it is FAIL it stops the canary: a stop record
(journeys.policy_updates.stop_record) goes onto the job's own control stream, and the journey
operators take it like any update there, so the canary's share falls to 0 for everyone.

How far a task is: each task's tallies come with its clock (`TaskClock`), the latest event time it
has applied, and a task says it again, with no tally, each time its clock passes a mark by the
lateness bound. The judge's clock is the slowest task's, less that bound: a watermark of the
tallies, made here because the judge reads no Flink watermark (nothing else on a live job's path
waits for one, and a bounded run's above parallelism 1 are read positions, not event times). A
task that has said nothing for the idle timeout (wall clock, as Flink's source idleness) does not
hold the others back, and a restart at a lower parallelism forgets the tasks that are gone.

Deterministic on replay: a task's tallies reach the judge in the order it sent them, and counts
add up, so a mark's verdict is the verdict on the points decided before it, in whatever order they
came: judged offline from the decision log, by event time, it is the same. A point decided before
a mark that reaches the judge after the mark was judged (a late signal's, or a bounded run's
timer-driven decision, which waits for its key's next signal) counts at the next mark. Figures
that need outcomes (conversion_rate) are left to `journeys canary status --journeys`.

A drift alert holds a canary: each task's clock carries the model features whose drift is above
the threshold there (journeys.drift), and while any is, gates that all pass say HELD instead of
PASS, and `journeys canary promote` will not promote. A failing gate still stops the canary.
"""
from __future__ import annotations

from dataclasses import dataclass

from journeys.gates import FAIL, PASS, PENDING, ArmCounts, Gates, judge_counts, overall
from journeys.outputs import LogKind
from journeys.policy_updates import CANARY, CHAMPION, model_stop_record, stop_record

TALLY_FIELDS = ("acted", "feature_source", "fast_path", "latency_ms")  # what the gates count of a point
HELD = "held"  # every gate passed, but a drift alert holds the canary back from a pass
POLICY, MODEL = "policy", "model"  # what a canary is a version of


@dataclass(frozen=True)
class Canary:
    """A version rolled out to a share of people: of the policy, or of a registered model."""

    of: str             # POLICY or MODEL
    version: str
    model: str | None = None  # the registered name, for a model canary

    @property
    def id(self) -> str:
        return f"policy v{self.version}" if self.of == POLICY else f"model {self.model} v{self.version}"

    def arm(self, point: dict) -> str | None:
        """The point's arm in this canary's comparison; None when it is in neither: a model canary
        compares the points its model scored, and leaves out those another model's canary scored."""
        if self.of == POLICY:
            return point.get("rollout_arm") or CHAMPION
        scored = {m["model"]: str(m["version"]) for m in point.get("models") or ()}
        if self.model not in scored:
            return None
        if scored[self.model] == self.version:
            return CANARY
        return None if point.get("model_arm") == CANARY else CHAMPION

    def stop(self, source: str, reason: str) -> str:
        return (stop_record(self.version, source, reason) if self.of == POLICY
                else model_stop_record(self.model, self.version, source, reason))

    def to_dict(self) -> dict:
        return {"of": self.of, "version": self.version, "model": self.model}


def tallies(point: dict, canaries: list[Canary]) -> list[dict]:
    """The judge's view of a decision point decided while these canaries are in force: one tally per
    canary it is in an arm of; none for a point in the control group, which is in no arm."""
    if point.get("control"):
        return []
    fields = {field: point[field] for field in TALLY_FIELDS if field in point}
    found = []
    for canary in canaries:
        arm = canary.arm(point)
        if arm is not None:
            found.append({"canary": canary.to_dict(), "arm": arm, "at": point["decided_at"]} | fields)
    return found


class TaskClock:
    """One sending task's clock: the latest event time it has applied, and whether the judge must
    hear it now, with or without tallies (when it has passed a mark by the lateness bound)."""

    def __init__(self, task: str, tasks: int, judge_every_ms: int, lateness_ms: int):
        self.task, self.tasks = task, tasks
        self.every, self.lateness = judge_every_ms, lateness_ms
        self.clock: int | None = None
        self._told: int | None = None  # the last mark it said it was past

    def advance(self, applied: list[dict], decided: list[dict]) -> bool:
        """Move on by a call's signal records and decision points; whether a passed mark is news."""
        times = [r["at"] for r in applied if r.get("kind") == LogKind.SIGNAL] + [p["decided_at"] for p in decided]
        if times:
            self.clock = max(times + ([self.clock] if self.clock is not None else []))
        if self.clock is None:
            return False
        passed = (self.clock - self.lateness) // self.every * self.every
        news, self._told = passed != self._told, passed
        return news

    def header(self, drifting: list[str] | None = None) -> dict:
        """drifting: the model features whose drift is above the threshold in this task now."""
        return {"task": self.task, "tasks": self.tasks, "clock": self.clock, "drifting": sorted(drifting or ())}


@dataclass(frozen=True)
class Judged:
    """What a judgement said: a journey log record, and the control record that stops a failed canary."""

    log: dict
    stop: str | None = None


class CanaryJudge:
    """The gates of every canary in force, each judged apart at marks of event time once every
    task sending tallies is past the mark by the lateness bound (event_time.max_out_of_orderness,
    within which the job applies a signal with its own event time). `state` is plain JSON, so that
    it survives upgrades in the job's keyed state."""

    def __init__(self, gates: Gates, lateness_ms: int, idle_ms: int, state: dict | None = None, stops: bool = True,
                 drift_holds: bool = True, roles: tuple[str, ...] = ()):
        """idle_ms: wall-clock time after which a task that has said nothing stops holding the judge back.
        stops: a FAIL stops the canary; False for a job with no control stream to send the stop
        through (a bounded run with a canary from the start), where a FAIL is only said.
        drift_holds: while a task reports a drift alert, gates that all pass say HELD, not PASS:
        the figures were measured on traffic unlike the one the models were trained on.
        roles: the roles whose every task the judge waits to hear from before it judges (for the
        idle timeout after it starts or restarts), so that no mark is judged on a task's word alone."""
        self.gates, self.left_out = gates.without_outcomes()
        self.lateness_ms, self.idle_ms = lateness_ms, idle_ms
        self.stops, self.drift_holds, self.roles = stops, drift_holds, roles
        self.state = state or {"tasks": {}, "canaries": {}, "stopped": [], "retired": [], "roles": {}}
        self._now: int | None = None  # the wall clock of the element being taken

    def restarted(self, now_ms: int) -> None:
        """After a restore: every task the state knows gets the idle timeout again to speak."""
        self.state["since"] = now_ms
        for task in self.state["tasks"].values():
            task[1] = now_ms

    def take(self, header: dict, points: list[dict], now_ms: int, source: str) -> list[Judged]:
        """One element from a task: its clock (TaskClock.header) and its tallies, heard at now_ms
        (wall clock). What the marks it let the judge judge said; source: who a stop says sent it."""
        for point in points:
            self._count(point)
        self._hear(header, now_ms)
        self._now = now_ms
        tasks = [task[0] for task in self.state["tasks"].values() if now_ms - task[1] <= self.idle_ms]
        if not tasks or not self._all_heard(now_ms):
            return []
        return [said for canary in sorted(self.state["canaries"])
                for said in self._judge_until(canary, min(tasks) - self.lateness_ms, source)]

    def finish(self, source: str) -> list[Judged]:
        """At the end of the input: judge every mark still open, and say each canary's verdict at
        the end (marked `final`) even when it has not changed, so that a run's summary has it."""
        self._now = None
        said = []
        for canary in sorted(self.state["canaries"]):
            mine = self._judge_until(canary, None, source)
            judging = self.state["canaries"].get(canary)
            if judging is not None and judging["judged_to"] is not None:
                if mine and mine[-1].log["at"] == judging["judged_to"]:
                    mine[-1].log["final"] = True
                else:
                    mine.append(Judged(self._record(canary, judging["judged_to"], *self._verdicts(judging))
                                       | {"final": True}))
            said.extend(mine)
        return said

    def _all_heard(self, now_ms: int) -> bool:
        """Whether every task of every expected role has spoken, or the idle timeout since the
        judge started has passed (a task with no traffic at all holds it back no longer)."""
        since = self.state.setdefault("since", now_ms)
        if now_ms - since > self.idle_ms:
            return True
        roles, tasks = self.state.setdefault("roles", {}), self.state["tasks"]
        return all(role in roles and all(f"{role}-{index}" in tasks for index in range(roles[role]))
                   for role in self.roles)

    def _hear(self, header: dict, now_ms: int) -> None:
        tasks = self.state["tasks"]
        role, _, _ = header["task"].rpartition("-")
        self.state.setdefault("roles", {})[role] = header["tasks"]
        for task in [t for t in tasks if t.rpartition("-")[0] == role and int(t.rpartition("-")[2]) >= header["tasks"]]:
            del tasks[task]  # a task of a parallelism the job no longer runs at
        if header["clock"] is not None:
            tasks[header["task"]] = [header["clock"], now_ms, header.get("drifting") or []]

    def _count(self, point: dict) -> None:
        canary = Canary(**point["canary"])
        retired = self.state.setdefault("retired", [])
        if canary.id in self.state["stopped"] or canary.id in retired:
            return  # a task that had not yet heard of the stop, or of the canary that replaced it
        canaries = self.state["canaries"]
        judging = canaries.get(canary.id)
        if judging is None:
            for other in [i for i, c in canaries.items() if (c["canary"]["of"], c["canary"]["model"]) ==
                          (canary.of, canary.model)]:
                del canaries[other]  # a canary of the same thing that this one replaced
                self.state["retired"] = retired = (retired + [other])[-100:]
            judging = canaries[canary.id] = {"canary": canary.to_dict(), "judged_to": None, "verdict": PENDING,
                                             "totals": {}, "marks": {}}
        every = self.gates.judge_every_ms
        mark = (point["at"] // every + 1) * every
        if judging["judged_to"] is not None and mark <= judging["judged_to"]:
            mark = judging["judged_to"] + every  # late for its own mark: counted at the next one
        arms = judging["marks"].setdefault(str(mark), {})
        counts = ArmCounts.from_dict(arms[point["arm"]]) if point["arm"] in arms else ArmCounts()
        counts.add(point)
        arms[point["arm"]] = counts.to_dict()

    def _judge_until(self, canary: str, until: int | None, source: str) -> list[Judged]:
        said = []
        judging = self.state["canaries"][canary]
        for mark in sorted(int(m) for m in judging["marks"] if until is None or int(m) <= until):
            judged = self._judge(canary, mark, source)
            if judged is not None:
                said.append(judged)
                if judged.stop is not None:
                    break
        return said

    def _judge(self, canary: str, mark: int, source: str) -> Judged | None:
        """Judge one canary's gates on the counts of every mark up to this one. A Judged when the
        verdict changed; with a stop record when it became FAIL."""
        judging = self.state["canaries"][canary]
        for arm, raw in judging["marks"].pop(str(mark)).items():
            totals = ArmCounts.from_dict(judging["totals"][arm]) if arm in judging["totals"] else ArmCounts()
            totals.merge(ArmCounts.from_dict(raw))
            judging["totals"][arm] = totals.to_dict()
        judging["judged_to"] = mark
        arms, verdicts = self._verdicts(judging)
        verdict = self._overall(verdicts)
        if verdict == judging["verdict"]:
            return None
        judging["verdict"] = verdict
        log = self._record(canary, mark, arms, verdicts)
        if not log["stopped"]:
            return Judged(log)
        failed = [v.gate.figure for v in verdicts if v.verdict == FAIL]
        del self.state["canaries"][canary]
        self.state["stopped"] = (self.state["stopped"] + [canary])[-100:]
        reason = f"gates {self.gates} failed at {mark}: {', '.join(failed)}"
        return Judged(log, Canary(**judging["canary"]).stop(source, reason))

    def _verdicts(self, judging: dict) -> tuple[dict[str, ArmCounts], list]:
        arms = {arm: ArmCounts.from_dict(raw) for arm, raw in judging["totals"].items()}
        return arms, judge_counts(self.gates, arms.get(CHAMPION, ArmCounts()), arms.get(CANARY, ArmCounts()))

    def _overall(self, verdicts: list) -> str:
        verdict = overall(verdicts)
        return HELD if verdict == PASS and self.drift_holds and self._drifting() else verdict

    def _drifting(self) -> list[str]:
        """The drifting features a task not idle reported with its latest clock (any task, at the end)."""
        live = [task for task in self.state["tasks"].values() if self._now is None or self._now - task[1] <= self.idle_ms]
        return sorted({feature for task in live for feature in (task[2] if len(task) > 2 else ())})

    def _record(self, canary: str, mark: int, arms: dict[str, ArmCounts], verdicts: list) -> dict:
        verdict, of = self._overall(verdicts), Canary(**self.state["canaries"][canary]["canary"])
        return {"kind": LogKind.CANARY_VERDICT, "journey": "", "at": mark, "canary": canary,
                "canary_of": of.of if of.of == POLICY else f"model {of.model}", "canary_version": of.version,
                "verdict": verdict, "gates": str(self.gates),
                "decision_points": {arm: counts.points for arm, counts in sorted(arms.items())},
                "verdicts": [v.to_dict() for v in verdicts], "not_judged": self.left_out,
                "drifting": self._drifting(), "stopped": verdict == FAIL and self.stops}


__all__ = ["Canary", "CanaryJudge", "Judged", "TaskClock", "tallies", "TALLY_FIELDS", "HELD", "POLICY", "MODEL"]
