"""Stages and sessions: what one signal does to a journey's counts, session and stage, and which
time-driven event is due next (a session gap, a stage time-out, a visitor's expiry, a plan).

Nothing here decides: journeys.transitions asks the decision point when a stage is entered or a
session closes.
"""
from __future__ import annotations

from bisect import insort

from journeys.agents import FollowUp
from journeys.features import record_activity
from journeys.ids import stable_id
from journeys.ontology import Ontology, SessionRule, SignalRule
from journeys.outputs import LogKind
from journeys.state import Journey, Session


def _touchpoint_time(touchpoint: list) -> int:
    return touchpoint[0]


# What a due time event is, in the order events due at the same time happen.
SESSION_GAP, TIME_RULE, VISITOR_EXPIRY, PLAN_DUE = range(4)


class Stages:
    def __init__(self, ontology: Ontology, session_gap_ms: int, touchpoints: int):
        self.ontology = ontology
        self.gap = session_gap_ms
        self.touchpoint_limit = touchpoints

    def new_journey(self, key: str, anonymous: bool, at: int) -> Journey:
        return Journey(key=key, anonymous=anonymous, stage=self.ontology.initial_stage, stage_since=at,
                       evidence=["initial", None, at])

    # -- one signal ----------------------------------------------------------------------------
    def record_signal(self, journey: Journey, signal: dict) -> Session:
        """Count the signal in the journey and its session (opened here if none is open). A signal
        older than the journey's latest takes its own place in time (journeys.keyed, "Order")."""
        at, event_type, channel = signal["event_time"], signal["event_type"], signal["channel"]
        in_order = journey.last_activity is None or at >= journey.last_activity
        journey.counts[event_type] = journey.counts.get(event_type, 0) + 1
        depth = self.ontology.recent_depth.get(event_type)
        if depth:
            times = journey.recent.get(event_type, [])
            insort(times, at)
            journey.recent[event_type] = times[-depth:]
        touchpoints = journey.touchpoints
        if in_order:
            touchpoints.append([at, channel, event_type])
        else:
            insort(touchpoints, [at, channel, event_type], key=_touchpoint_time)
        if len(touchpoints) > self.touchpoint_limit:
            del touchpoints[0]
        journey.first_seen = at if journey.first_seen is None else min(journey.first_seen, at)
        if in_order:
            journey.last_activity = at
        record_activity(journey.activity, at, channel, event_type, self.ontology.signals.get(event_type),
                        signal["attributes"], in_order)
        session = journey.session
        if session is None:
            session = journey.session = Session(stage_at_start=journey.stage, id=stable_id("s-", journey.key, at),
                                                start=at, last=at)
        if in_order:
            session.last = at
        elif at < session.start:
            session.start = at
        session.signals += 1
        if channel not in session.channels:
            session.channels.append(channel)
        session.counts[event_type] = session.counts.get(event_type, 0) + 1
        hint = signal.get("session_hint")
        if hint and hint not in session.hints and len(session.hints) < 4:
            session.hints.append(hint)
        return session

    def signal_rule(self, journey: Journey, session: Session, event_type: str) -> SignalRule | None:
        """The first rule this signal satisfies in the journey's stage (it may keep the stage)."""
        for rule in self.ontology.signal_rules_for(journey.stage, event_type):
            if rule.min_count_in_session > 1 and sum(session.counts.get(t, 0) for t in rule.on) < rule.min_count_in_session:
                continue
            return rule
        return None

    @staticmethod
    def enter(journey: Journey, stage: str, rule_id: str, event_id: str | None, at: int) -> None:
        journey.stage = stage
        journey.stage_since = at
        journey.evidence = [rule_id, event_id, at]

    def is_terminal(self, stage: str) -> bool:
        return self.ontology.stage_by_id[stage].terminal

    # -- time ----------------------------------------------------------------------------------
    def next_due(self, journey: Journey) -> tuple | None:
        """The next time-driven event: (due, order, what), with order one of SESSION_GAP, TIME_RULE,
        VISITOR_EXPIRY and PLAN_DUE (the order of events due at the same time) and what the time
        rule or the planned follow-up. A plain tuple: this runs several times per signal."""
        best = None
        if journey.session is not None:
            best = (journey.session.last + self.gap, SESSION_GAP, None)
        for rule in self.ontology.time_rules_for(journey.stage):
            if rule.basis == "inactivity":
                if journey.last_activity is None:
                    continue
                due = max(journey.last_activity + rule.after_ms, journey.stage_since)
            else:
                due = journey.stage_since + rule.after_ms
            if best is None or due < best[0]:
                best = (due, TIME_RULE, rule)
        if journey.anonymous and journey.last_activity is not None:
            due = journey.last_activity + self.ontology.anonymous_expiry_ms
            if best is None or due < best[0]:
                best = (due, VISITOR_EXPIRY, None)
        for wire in journey.plans:
            plan = FollowUp.from_wire(wire)
            if best is None or (plan.due_at, PLAN_DUE) < best[:2]:
                best = (plan.due_at, PLAN_DUE, plan)
        return best

    # -- sessions ------------------------------------------------------------------------------
    @staticmethod
    def session_record(journey: Journey, still_open: bool) -> dict:
        session = journey.session
        record = {
            "kind": LogKind.SESSION, "journey": journey.key, "anonymous": journey.anonymous, "at": session.last,
            "session_id": session.id, "start": session.start, "end": session.last, "signals": session.signals,
            "channels": session.channels, "event_types": session.counts, "stage_at_start": session.stage_at_start,
            "stage": journey.stage, "open": still_open,
        }
        if session.hints:
            record["session_hints"] = session.hints
        return record

    def end_session(self, journey: Journey) -> tuple[Session, list[SessionRule]]:
        """Close the open session; the session rules it satisfies, in ontology order."""
        session = journey.session
        journey.session = None
        journey.sessions_closed += 1
        matched = []
        for rule in self.ontology.session_rules:
            if rule.stages is not None and journey.stage not in rule.stages:
                continue
            if any(session.counts.get(t, 0) == 0 for t in rule.session_has):
                continue
            if any(session.counts.get(t, 0) > 0 or t in session.late_types for t in rule.session_lacks):
                continue  # a purchase too late to apply still happened in the session: no reminder of the cart
            matched.append(rule)
        return session, matched


def session_rule_reason(rule: SessionRule, session: Session, stage: str) -> str:
    has = ", ".join(sorted(rule.session_has)) or "signals"
    lacks = " and no " + ", ".join(sorted(rule.session_lacks)) if rule.session_lacks else ""
    return f"session {session.id} ended in {stage} with {has}{lacks} (rule {rule.id})"
