"""Pure journey transitions, one signal at a time.

    apply(journey, signal)         -> (journey, outputs)   one signal
    tick(journey, now)             -> (journey, outputs)   event time passes without signals
    merge(journey, visitor, link)  -> (journey, outputs)   an identified visitor joins a customer

No engine, no clock of its own, no I/O: the clock, the profile store and the models are passed
in, and the same inputs give the same outputs. Putting signals in order, deduplication and
identity routing are the job of journeys.keyed, around this module. Stages and sessions are in
journeys.stages, the decision point in journeys.decision_point, plans and outcomes beside it.

Outputs are the records of journeys.outputs. A journey that closes (terminal stage, or an
anonymous visitor who expires) is returned as None.
"""
from __future__ import annotations

from typing import Callable

from journeys import consent, consistency, identity, plans
from journeys.agents import DEFAULT_AGENTS, FollowUp
from journeys.decision_point import DecisionPoint
from journeys.features import ProfileSource, activity_features
from journeys.ontology import Ontology, TimeRule
from journeys.outcomes import answers_a_decision, join_outcome, outcome_record, unmatched
from journeys.outputs import FeatureRow, JourneyLog, LogKind
from journeys.policy_updates import PolicyInForce
from journeys.scoring import ModelSource
from journeys.settings import JourneySettings
from journeys.stages import PLAN_DUE, SESSION_GAP, TIME_RULE, Stages, session_rule_reason
from journeys.state import Journey
from journeys.timeutil import format_duration


_journey_log = tuple.__new__  # JourneyLog(...) at C speed, for the record of every signal


class Transitions:
    def __init__(self, ontology: Ontology, settings: JourneySettings, policy: PolicyInForce,
                 clock: Callable[[], float], profiles: ProfileSource | None = None,
                 models: ModelSource | None = None, push_features: bool = False, agents=DEFAULT_AGENTS):
        """policy: the policy in force (an operator swaps it as updates arrive). clock: seconds,
        for the latency budget only. profiles, models: see journeys.decision_point.
        push_features: feature_row() gives customers' behavioural features for the feature store."""
        self.ontology = ontology
        self.stages = Stages(ontology, settings.session_gap_ms, settings.touchpoints)
        self.decision_point = DecisionPoint(ontology, settings, policy, agents, clock, profiles, models)
        self.push_features = push_features

    @property
    def policy(self) -> PolicyInForce:
        return self.decision_point.policy

    # -- one signal ----------------------------------------------------------------------------
    def apply(self, journey: Journey | None, signal: dict, key: str, anonymous: bool,
              ingested_at: int | None = None, since: int | None = None) -> tuple[Journey | None, list]:
        """since: the earliest event time the key has applied, across its journeys (KeyState.first_seen)."""
        out: list = []
        at, event_type = signal["event_time"], signal["event_type"]
        if journey is not None:
            journey = self._tick(journey, at, out)
        answers = answers_a_decision(signal)
        only_an_answer = answers and event_type not in self.ontology.signals
        if journey is None and only_an_answer:  # an answer for a journey that has closed (or never was)
            out.append(JourneyLog(outcome_record(key, anonymous, signal, unmatched(signal))))
            return None, out
        started = journey is None
        if started:
            journey = self._new_journey(key, anonymous, at, since)
        joined = join_outcome(journey, signal) if answers else None
        if only_an_answer:
            out.append(JourneyLog(outcome_record(journey.key, journey.anonymous, signal, joined)))
            return journey, out
        if not answers:  # an answer comes from the system that carried the action, not from the customer
            self._customer_says(journey, signal)
        if event_type == "complaint":
            journey.complaint_at, journey.complaint_open = at, True
        elif event_type == "escalation_resolved":
            journey.complaint_open = False
        moved_by, previous = self._step(journey, signal, joined, ingested_at, out)
        if started or moved_by is not None or event_type in self.ontology.escalation_types:
            self._decide_after(journey, signal, started, moved_by, previous, ingested_at, out)
        if self.ontology.stage_by_id[journey.stage].terminal:
            return self._close(journey, at, "terminal_stage", out), out
        return journey, out

    def _new_journey(self, key: str, anonymous: bool, at: int, since: int | None) -> Journey:
        journey = self.stages.new_journey(key, anonymous, at)
        journey.arm = [None, at if since is None else min(since, at), key]
        return journey

    def _customer_says(self, journey: Journey, signal: dict) -> None:
        """What a signal of the customer's own tells about them beyond the journey's steps: the time
        zone their device reports, and consent they withdraw."""
        if signal.get("timezone") and signal["channel"] in self.ontology.timezone_channels:
            journey.timezone = signal["timezone"]
        if signal["event_type"] in self.ontology.withdrawal_types:
            consent.record_withdrawal(journey, signal, self.ontology)

    def late(self, journey: Journey | None, signal: dict) -> list:
        """A signal too late to apply still withdraws consent, still counts for the session rules of
        the open session it happened in (a late purchase: no cart reminder), still cancels the
        follow-ups whose goal it reaches, and still shows the decisions it makes stale: all are
        about what may still go out or has gone out, not about the path."""
        out: list = []
        if journey is None or answers_a_decision(signal):
            return out
        if signal["event_type"] in self.ontology.withdrawal_types:
            consent.record_withdrawal(journey, signal, self.ontology)
        session = journey.session
        if session is not None and signal["event_time"] >= session.start and signal["event_type"] not in session.late_types:
            session.late_types.append(signal["event_type"])
        for rule in self.ontology.signal_rules_for(journey.stage, signal["event_type"]):
            plans.cancel_reached(journey, rule.to, signal["event_time"], out)
            if rule.to != journey.stage:
                consistency.find_stale(journey, signal, rule.to, self.ontology, out)
            break
        return out

    def _step(self, journey: Journey, signal: dict, joined: dict | None, ingested_at: int | None,
              out: list) -> tuple[str | None, str]:
        """Count the signal, move the stage if a rule says so, and log it: (rule id or None, stage before)."""
        at, event_type, event_id = signal["event_time"], signal["event_type"], signal["event_id"]
        session = self.stages.record_signal(journey, signal)
        previous = journey.stage
        rule = self.stages.signal_rule(journey, session, event_type)
        moved_by = None
        if rule is not None and rule.to != previous:
            self.stages.enter(journey, rule.to, rule.id, event_id, at)
            moved_by = rule.id
        record = {
            "kind": LogKind.SIGNAL, "journey": journey.key, "anonymous": journey.anonymous, "at": at,
            "event_id": event_id, "channel": signal["channel"], "event_type": event_type,
            "stage": journey.stage, "session_id": session.id,
        }
        if moved_by is not None:
            record["from_stage"] = previous
            record["rule"] = moved_by
        if event_type not in self.ontology.signals:
            record["unmapped"] = True
        if joined is not None:
            record |= joined
        out.append(_journey_log(JourneyLog, (record, ingested_at)))
        return moved_by, previous

    def _decide_after(self, journey: Journey, signal: dict, started: bool, moved_by: str | None, previous: str,
                      ingested_at: int | None, out: list) -> None:
        at, event_type, event_id = signal["event_time"], signal["event_type"], signal["event_id"]
        decide = self.decision_point.decide
        # Text for people names only signals of the ontology: anything else is whatever was sent.
        named = event_type if event_type in self.ontology.signals else "a signal the ontology does not map"
        if started and moved_by is None:
            decide(journey, "journey_started", event_id, at, "first_signal",
                   f"a new journey in {journey.stage} on {named}", ingested_at, out)
        if moved_by is not None:
            plans.cancel_reached(journey, journey.stage, at, out)
            consistency.find_stale(journey, signal, journey.stage, self.ontology, out)
            reason = f"entered {journey.stage} from {previous} on {named} (rule {moved_by})"
            decide(journey, "stage_entered", event_id, at, moved_by, reason, ingested_at, out)
        if event_type in self.ontology.escalation_types:
            self._escalate(journey, event_type, event_id, at, ingested_at, out)

    # -- time passing --------------------------------------------------------------------------
    def tick(self, journey: Journey | None, now: int) -> tuple[Journey | None, list]:
        out: list = []
        if journey is None:
            return None, out
        return self._tick(journey, now, out), out

    def next_due(self, journey: Journey | None) -> int | None:
        if journey is None:
            return None
        due = self.stages.next_due(journey)
        return due[0] if due else None

    def _tick(self, journey: Journey, now: int, out: list) -> Journey | None:
        while True:
            due = self.stages.next_due(journey)
            if due is None or due[0] > now:
                return journey
            at, order, what = due
            if order == SESSION_GAP:
                self._close_session(journey, at, out)
            elif order == PLAN_DUE:
                self._carry_out(journey, what, at, out)
            elif order == TIME_RULE:
                if not self._time_rule(journey, what, at, out):
                    return None
            else:
                return self._close(journey, at, "anonymous_expired", out)

    def _carry_out(self, journey: Journey, plan: FollowUp, at: int, out: list) -> None:
        """An agent's planned follow-up is due."""
        plans.take_due(journey, plan)
        self.decision_point.decide(journey, "plan_due", None, at, plan.id, f"follow-up {plan.action} due", None, out,
                                   trigger_key=plan.id, plan=plan)

    def _time_rule(self, journey: Journey, rule: TimeRule, at: int, out: list) -> bool:
        """A time rule moves the journey; False when that closes it."""
        previous = journey.stage
        self.stages.enter(journey, rule.to, rule.id, None, at)
        out.append(JourneyLog({"kind": LogKind.TRANSITION, "journey": journey.key, "anonymous": journey.anonymous,
                               "at": at, "from_stage": previous, "stage": rule.to, "rule": rule.id}))
        plans.cancel_reached(journey, rule.to, at, out)
        quiet = "without signals" if rule.basis == "inactivity" else f"in {previous}"
        reason = f"entered {rule.to} from {previous} after {format_duration(rule.after_ms)} {quiet} (rule {rule.id})"
        self.decision_point.decide(journey, "stage_entered", None, at, rule.id, reason, None, out)
        if self.stages.is_terminal(rule.to):
            self._close(journey, at, "terminal_stage", out)
            return False
        return True

    def _close_session(self, journey: Journey, closed_at: int, out: list) -> None:
        out.append(JourneyLog(self.stages.session_record(journey, still_open=False)))
        session, matched = self.stages.end_session(journey)
        for rule in matched:
            self.decision_point.decide(journey, "session_closed", None, closed_at, rule.id,
                                       session_rule_reason(rule, session, journey.stage), None, out,
                                       trigger_key=session.id)

    def _close(self, journey: Journey, at: int, reason: str, out: list) -> None:
        if journey.session is not None:
            self._close_session(journey, max(at, journey.session.last), out)
        out.append(JourneyLog({"kind": LogKind.CLOSED, "journey": journey.key, "anonymous": journey.anonymous,
                               "at": at, "stage": journey.stage, "reason": reason}))
        return None

    def feature_row(self, journey: Journey | None) -> FeatureRow | None:
        """The identified customer's behavioural features as of the last signal, for the feature
        store; None when there is nothing to push."""
        if not self.push_features or journey is None or journey.anonymous or journey.last_activity is None:
            return None
        at = journey.last_activity
        return FeatureRow(journey.key, activity_features(journey.activity, at) | {"event_timestamp": at})

    def end_of_input(self, journey: Journey | None) -> list:
        """Sessions still open when a bounded input ends are reported, marked open, and kept."""
        if journey is None or journey.session is None:
            return []
        return [JourneyLog(self.stages.session_record(journey, still_open=True))]

    # -- identity ------------------------------------------------------------------------------
    def merge(self, journey: Journey | None, visitor: Journey | None, link: dict, key: str,
              ingested_at: int | None = None, apply_link: bool = True,
              since: int | None = None) -> tuple[Journey | None, list]:
        """A visitor's journey, up to the identifying signal, joins the customer's; then the signal
        applies (unless apply_link is false: it is late, or was applied already). since: as for apply."""
        out: list = []
        at = link["event_time"]
        if journey is not None:
            journey = self._tick(journey, at, out)
        if visitor is not None:
            fresh = journey is None or journey.last_activity is None
            if journey is None:
                journey = self._new_journey(key, False, at, since)
            before = journey.stage
            identity.combine(journey, visitor, fresh, self.ontology, self.stages.touchpoint_limit)
            out.append(JourneyLog({"kind": LogKind.STITCH, "journey": key, "anonymous": False, "at": at,
                                   "anonymous_id": visitor.key, "event_id": link["event_id"],
                                   "from_stage": before, "stage": journey.stage}))
        if apply_link:
            journey, applied = self.apply(journey, link, key, False, ingested_at, since)
            out.extend(applied)
        return journey, out

    # -- escalations ---------------------------------------------------------------------------
    def _escalate(self, journey: Journey, event_type: str, event_id: str, at: int, ingested_at: int | None,
                  out: list) -> None:
        for rule in self.ontology.escalations:
            if event_type not in rule.on:
                continue
            last = journey.escalated.get(rule.id)
            if last is not None and at < last + rule.cooldown_ms:
                continue
            earliest = at - rule.within_ms if rule.within_ms is not None else None
            contacts = sum(1 for t in rule.on for when in journey.recent.get(t, ())
                           if earliest is None or when >= earliest)
            if contacts < rule.min_count:
                continue
            journey.escalated[rule.id] = at
            window = f" within {format_duration(rule.within_ms)}" if rule.within_ms else ""
            what = event_type if rule.min_count == 1 else f"{contacts} contacts ({', '.join(sorted(rule.on))}){window}"
            self.decision_point.decide(journey, "escalation", event_id, at, rule.id,
                                       f"escalation after {what} (rule {rule.id})", ingested_at, out)
