"""Pure journey transitions, applied in event-time order.

    apply(journey, signal)         -> (journey, outputs)   one signal
    tick(journey, now)             -> (journey, outputs)   event time passes without signals
    merge(journey, visitor, link)  -> (journey, outputs)   an identified visitor joins a customer

No engine, no clock, no I/O: the same inputs always give the same outputs. Putting signals in
order, deduplication and identity routing are the job of journeys.keyed, around this module.

Outputs are (kind, record) pairs: kind "journey" goes to the journey log, "decision" to the
decision sink. A journey that closes (terminal stage, or an anonymous visitor who expires) is
returned as None.
"""
from __future__ import annotations

import time

from journeys.agents import DEFAULT_AGENTS, FollowUp, Observation, follow_up_candidate, plans_after, proposals
from journeys.contract import DECISION_VERSION
from journeys.explained import explained_record
from journeys.features import CACHED, FALLBACK, ONLINE, NoProfiles, ProfileSource, activity_features, record_activity
from journeys.ids import stable_id
from journeys.ontology import Ontology
from journeys.policy import Candidate, Context, Policy
from journeys.policy_updates import PolicyInForce
from journeys.scoring import NOT_SCORED, ModelSource, score_decision
from journeys.settings import JourneySettings, load_settings_policy
from journeys.state import Journey, Session
from journeys.timeutil import DAY as DAY_MS
from journeys.timeutil import format_duration
from journeys.uplift import OUTCOMES

JOURNEY = "journey"
DECISION = "decision"
FEATURES = "features"  # (FEATURES, customer_id, behavioural feature row) to push to the feature store


MAX_CONTACTS = 32   # contacts remembered per journey, for the frequency caps
MAX_AWAITING = 32   # decisions per journey an outcome can still be joined to


class JourneyModel:
    def __init__(self, ontology: Ontology, settings: JourneySettings, profiles: ProfileSource | None = None,
                 push_features: bool = False, models: ModelSource | None = None,
                 policy: Policy | PolicyInForce | None = None, agents=DEFAULT_AGENTS, clock=time.perf_counter):
        """profiles: where profile features come from (none by default). push_features: callers
        (journeys.keyed) also output customers' behavioural features for the feature store.
        models: the stage models decisions are scored with (none by default). policy: the policy
        in force (the settings' by default; an operator swaps it as updates arrive). clock: seconds,
        for the latency budget only (it decides the fast path, nothing else)."""
        self.ontology = ontology
        if not isinstance(policy, PolicyInForce):
            policy = PolicyInForce(policy or load_settings_policy(settings))
        self.policy = policy
        self.agents = agents
        self.clock = clock
        self.budget_ms = settings.latency_budget_ms
        self.outcome_window_ms = settings.outcome_window_ms
        self.contact_memory_ms = max([cap.window_ms for cap in self.policy.policy.caps] + [7 * DAY_MS])
        self._model_cost_ms = 0.0  # a running estimate of one model call, for the budget
        self.models = models  # None: decisions are not scored
        self.override_confidence = settings.stage_override_confidence
        self.push_features = push_features
        self.gap = settings.session_gap_ms
        self.touchpoint_limit = settings.touchpoints
        self._identify = ontology.identify_signals
        self.profiles = profiles or NoProfiles()

    # -- creation ------------------------------------------------------------------------------
    def new_journey(self, key: str, anonymous: bool, at: int) -> Journey:
        return Journey(key=key, anonymous=anonymous, stage=self.ontology.initial_stage, stage_since=at,
                       evidence=["initial", None, at])

    # -- one signal ----------------------------------------------------------------------------
    def apply(self, journey: Journey | None, signal: dict, key: str, anonymous: bool,
              ingested_at: int | None = None) -> tuple[Journey | None, list]:
        out: list = []
        at = signal["event_time"]
        if journey is not None:
            journey = self._tick(journey, at, out)
        if journey is None and signal["event_type"] in OUTCOMES and signal["event_type"] not in self.ontology.signals \
                and signal["attributes"].get("decision_id"):
            # An answer for a journey that has closed (or never was): it starts no journey.
            out.append((JOURNEY, {"kind": "outcome", "journey": key, "anonymous": anonymous, "at": at,
                                  "event_id": signal["event_id"], "event_type": signal["event_type"],
                                  "decision_id": signal["attributes"]["decision_id"], "matched": False}))
            return None, out
        started = journey is None
        if started:
            journey = self.new_journey(key, anonymous, at)
        event_type = signal["event_type"]
        event_id = signal["event_id"]
        if signal.get("timezone"):
            journey.timezone = signal["timezone"]
        answered = None
        if event_type in OUTCOMES and signal["attributes"].get("decision_id"):
            answered = self._outcome(journey, signal)
            if event_type not in self.ontology.signals:  # only an answer: no step of the journey
                out.append((JOURNEY, {"kind": "outcome", "journey": journey.key, "anonymous": journey.anonymous,
                                      "at": at, "event_id": event_id, "event_type": event_type} | answered))
                return journey, out
        if event_type == "complaint":
            journey.complaint_at, journey.complaint_open = at, True
        elif event_type == "escalation_resolved":
            journey.complaint_open = False

        journey.counts[event_type] = journey.counts.get(event_type, 0) + 1
        depth = self.ontology.recent_depth.get(event_type)
        if depth:
            times = journey.recent.get(event_type, [])
            times.append(at)
            journey.recent[event_type] = times[-depth:]
        touchpoints = journey.touchpoints
        touchpoints.append([at, signal["channel"], event_type])
        if len(touchpoints) > self.touchpoint_limit:
            del touchpoints[0]
        if journey.first_seen is None:
            journey.first_seen = at
        journey.last_activity = at if journey.last_activity is None else max(journey.last_activity, at)
        record_activity(journey.activity, at, signal["channel"], event_type, self.ontology.signals.get(event_type),
                        signal["attributes"])

        session = journey.session
        if session is None:
            session = journey.session = Session(stage_at_start=journey.stage, id=stable_id("s-", journey.key, at),
                                                start=at, last=at)
        session.last = at
        session.signals += 1
        if signal["channel"] not in session.channels:
            session.channels.append(signal["channel"])
        session.counts[event_type] = session.counts.get(event_type, 0) + 1
        hint = signal.get("session_hint")
        if hint and hint not in session.hints and len(session.hints) < 4:
            session.hints.append(hint)

        previous = journey.stage
        moved_by = None
        for rule in self.ontology.signal_rules_for(previous, event_type):
            if rule.min_count_in_session > 1 and sum(session.counts.get(t, 0) for t in rule.on) < rule.min_count_in_session:
                continue
            if rule.to != previous:
                journey.stage = rule.to
                journey.stage_since = at
                journey.evidence = [rule.id, event_id, at]
                moved_by = rule.id
            break

        record = {
            "kind": "signal", "journey": journey.key, "anonymous": journey.anonymous, "at": at,
            "event_id": event_id, "channel": signal["channel"], "event_type": event_type,
            "stage": journey.stage, "session_id": session.id,
        }
        if moved_by is not None:
            record["from_stage"] = previous
            record["rule"] = moved_by
        if event_type not in self.ontology.signals:
            record["unmapped"] = True
        if answered is not None:
            record |= answered
        if ingested_at is not None:
            record["_ingested_at"] = ingested_at  # for the time-to-map metric; callers take it off
        out.append((JOURNEY, record))

        if started and moved_by is None:
            self._decide(journey, "journey_started", event_id, at, "first_signal",
                         f"a new journey in {journey.stage} on {event_type}", ingested_at, out)
        if moved_by is not None:
            self._cancel_plans(journey, journey.stage, at, out)
            reason = f"entered {journey.stage} from {previous} on {event_type} (rule {moved_by})"
            self._decide(journey, "stage_entered", event_id, at, moved_by, reason, ingested_at, out)
        if event_type in self.ontology.escalation_types:
            self._escalate(journey, event_type, event_id, at, ingested_at, out)
        if self.ontology.stage_by_id[journey.stage].terminal:
            return self._close(journey, at, "terminal_stage", out), out
        return journey, out

    # -- time passing --------------------------------------------------------------------------
    def tick(self, journey: Journey | None, now: int) -> tuple[Journey | None, list]:
        out: list = []
        if journey is None:
            return None, out
        return self._tick(journey, now, out), out

    def next_due(self, journey: Journey | None) -> int | None:
        if journey is None:
            return None
        due = self._next_time_event(journey)
        return due[0] if due else None

    def _next_time_event(self, journey: Journey):
        best = None
        if journey.session is not None:
            best = (journey.session.last + self.gap, 0, None)
        for rule in self.ontology.time_rules_for(journey.stage):
            if rule.basis == "inactivity":
                if journey.last_activity is None:
                    continue
                due = max(journey.last_activity + rule.after_ms, journey.stage_since)
            else:
                due = journey.stage_since + rule.after_ms
            if best is None or due < best[0]:
                best = (due, 1, rule)
        if journey.anonymous and journey.last_activity is not None:
            due = journey.last_activity + self.ontology.anonymous_expiry_ms
            if best is None or due < best[0]:
                best = (due, 2, None)
        for wire in journey.plans:
            plan = FollowUp.from_wire(wire)
            if best is None or (plan.due_at, 3) < best[:2]:
                best = (plan.due_at, 3, plan)
        return best

    def _tick(self, journey: Journey, now: int, out: list) -> Journey | None:
        while True:
            due = self._next_time_event(journey)
            if due is None or due[0] > now:
                return journey
            at, order, rule = due
            if order == 0:
                self._close_session(journey, at, out)
            elif order == 3:  # an agent's planned follow-up
                journey.plans = [p for p in journey.plans if p[0] != rule.id]
                self._decide(journey, "plan_due", None, at, rule.id, f"follow-up {rule.action} due", None, out,
                             trigger_key=rule.id, plan=rule)
            elif order == 1:
                previous = journey.stage
                journey.stage = rule.to
                journey.stage_since = at
                journey.evidence = [rule.id, None, at]
                out.append((JOURNEY, {"kind": "transition", "journey": journey.key, "anonymous": journey.anonymous,
                                      "at": at, "from_stage": previous, "stage": rule.to, "rule": rule.id}))
                self._cancel_plans(journey, rule.to, at, out)
                quiet = "without signals" if rule.basis == "inactivity" else f"in {previous}"
                reason = f"entered {rule.to} from {previous} after {format_duration(rule.after_ms)} {quiet} (rule {rule.id})"
                self._decide(journey, "stage_entered", None, at, rule.id, reason, None, out)
                if self.ontology.stage_by_id[rule.to].terminal:
                    return self._close(journey, at, "terminal_stage", out)
            else:
                return self._close(journey, at, "anonymous_expired", out)

    def _close_session(self, journey: Journey, closed_at: int, out: list, still_open: bool = False) -> None:
        session = journey.session
        record = {
            "kind": "session", "journey": journey.key, "anonymous": journey.anonymous, "at": session.last,
            "session_id": session.id, "start": session.start, "end": session.last, "signals": session.signals,
            "channels": session.channels, "event_types": session.counts, "stage_at_start": session.stage_at_start,
            "stage": journey.stage, "open": still_open,
        }
        if session.hints:
            record["session_hints"] = session.hints
        out.append((JOURNEY, record))
        if still_open:
            return
        journey.session = None
        journey.sessions_closed += 1
        for rule in self.ontology.session_rules:
            if rule.stages is not None and journey.stage not in rule.stages:
                continue
            if any(session.counts.get(t, 0) == 0 for t in rule.session_has):
                continue
            if any(session.counts.get(t, 0) > 0 for t in rule.session_lacks):
                continue
            has = ", ".join(sorted(rule.session_has)) or "signals"
            lacks = " and no " + ", ".join(sorted(rule.session_lacks)) if rule.session_lacks else ""
            reason = f"session {session.id} ended in {journey.stage} with {has}{lacks} (rule {rule.id})"
            self._decide(journey, "session_closed", None, closed_at, rule.id, reason, None, out, trigger_key=session.id)

    def _close(self, journey: Journey, at: int, reason: str, out: list) -> None:
        if journey.session is not None:
            self._close_session(journey, max(at, journey.session.last), out)
        out.append((JOURNEY, {"kind": "closed", "journey": journey.key, "anonymous": journey.anonymous, "at": at,
                              "stage": journey.stage, "reason": reason}))
        return None

    def feature_row(self, journey: Journey | None) -> tuple | None:
        """(FEATURES, customer_id, row): the identified customer's behavioural features as of the
        last signal, for the feature store; None when there is nothing to push."""
        if not self.push_features or journey is None or journey.anonymous or journey.last_activity is None:
            return None
        at = journey.last_activity
        return FEATURES, journey.key, activity_features(journey.activity, at) | {"event_timestamp": at}

    def end_of_input(self, journey: Journey | None) -> list:
        """Sessions still open when a bounded input ends are reported, marked open, and kept."""
        out: list = []
        if journey is not None and journey.session is not None:
            self._close_session(journey, journey.session.last, out, still_open=True)
        return out

    # -- identity ------------------------------------------------------------------------------
    def merge(self, journey: Journey | None, visitor: Journey | None, link: dict, key: str,
              ingested_at: int | None = None) -> tuple[Journey | None, list]:
        """A visitor's journey, up to the identifying signal, joins the customer's; then the signal applies."""
        out: list = []
        at = link["event_time"]
        if journey is not None:
            journey = self._tick(journey, at, out)
        if visitor is not None:
            fresh = journey is None or journey.last_activity is None
            if journey is None:
                journey = self.new_journey(key, False, at)
            before = journey.stage
            self._combine(journey, visitor, fresh)
            out.append((JOURNEY, {"kind": "stitch", "journey": key, "anonymous": False, "at": at,
                                  "anonymous_id": visitor.key, "event_id": link["event_id"],
                                  "from_stage": before, "stage": journey.stage}))
        journey, applied = self.apply(journey, link, key, False, ingested_at)
        out.extend(applied)
        return journey, out

    def _combine(self, journey: Journey, visitor: Journey, fresh: bool) -> None:
        for event_type, count in visitor.counts.items():
            journey.counts[event_type] = journey.counts.get(event_type, 0) + count
        for event_type, times in visitor.recent.items():
            depth = self.ontology.recent_depth.get(event_type, len(times))
            journey.recent[event_type] = sorted(journey.recent.get(event_type, []) + times)[-depth:]
        journey.touchpoints = sorted(journey.touchpoints + visitor.touchpoints)[-self.touchpoint_limit:]
        if visitor.first_seen is not None:
            journey.first_seen = visitor.first_seen if journey.first_seen is None else min(journey.first_seen, visitor.first_seen)
        if visitor.last_activity is not None:
            journey.last_activity = visitor.last_activity if journey.last_activity is None else max(journey.last_activity, visitor.last_activity)
        journey.sessions_closed += visitor.sessions_closed
        journey.session = _merge_sessions(journey.session, visitor.session)
        if fresh or (visitor.stage_since, self.ontology.rank(visitor.stage)) > (journey.stage_since, self.ontology.rank(journey.stage)):
            journey.stage, journey.stage_since, journey.evidence = visitor.stage, visitor.stage_since, visitor.evidence
        journey.aliases = (journey.aliases + [visitor.key])[-8:]
        journey.contacts = sorted(journey.contacts + visitor.contacts)[-MAX_CONTACTS:]
        journey.awaiting = visitor.awaiting | journey.awaiting
        journey.plans = journey.plans + visitor.plans
        for outcome, count in visitor.responses.items():
            journey.responses[outcome] = journey.responses.get(outcome, 0) + count

    # -- decisions -----------------------------------------------------------------------------
    def _escalate(self, journey, event_type, event_id, at, ingested_at, out) -> None:
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
            self._decide(journey, "escalation", event_id, at, rule.id, f"escalation after {what} (rule {rule.id})",
                         ingested_at, out)

    def _decide(self, journey: Journey, trigger: str, event_id, at: int, rule_id: str, why: str, ingested_at, out,
                trigger_key=None, plan: FollowUp | None = None) -> None:
        """One decision point: look up features, score, let the agents propose (or carry out a plan),
        let the policy in force allow and arbitrate, record the verdict with its justification, and
        remember the contact, the plan and the decision the outcomes will refer to."""
        started = self.clock()
        notes: list[str] = []
        features = activity_features(journey.activity, at)
        profile, source = {}, "none"
        if not journey.anonymous:
            lookup = self.profiles.profile(journey.key)
            source = ONLINE if lookup.source == CACHED else lookup.source  # the same values, however fetched
            profile = lookup.values
            features = profile | features
            if lookup.defaulted:
                notes.append(f"Profile features: {lookup.note}; decided with defaults.")
        scored, fast_path = NOT_SCORED, False
        if self.models is not None:
            spent_ms = (self.clock() - started) * 1000
            if self.budget_ms and spent_ms + self._model_cost_ms > self.budget_ms:
                fast_path = True
                notes.append(f"Fast path: {spent_ms:.0f} ms spent on features, a model call would exceed the "
                             f"{self.budget_ms:g} ms budget; decided on rules alone.")
            else:
                before = self.clock()
                scored = score_decision({"stage": journey.stage, "trigger": trigger, "features": features},
                                        self.models.active(), self.override_confidence)
                if scored.models or scored.shadow:
                    self._model_cost_ms = 0.8 * self._model_cost_ms + 0.2 * (self.clock() - before) * 1000
                notes.extend(scored.notes)
        elif self.budget_ms and source == FALLBACK and (self.clock() - started) * 1000 > self.budget_ms:
            fast_path = True
        stage = scored.mapped_stage or journey.stage
        values = features | self._journey_values(journey, at)
        if plan is not None:
            candidates = [follow_up_candidate(plan)]
            plans = {}
        else:
            seen = Observation(journey.key, journey.identified, stage, trigger, at, values, scored.propensity,
                               journey.complaint_open)
            offered = [p for p in proposals(seen, self.agents) if self._reachable(journey, p.candidate)]
            candidates = [p.candidate for p in offered]
            plans = {p.candidate: p.follow_up for p in offered if p.follow_up is not None}
        if not candidates:
            return
        policy = self.policy.policy
        context = Context(journey.key, at, journey.timezone, values, tuple((c[0], c[1]) for c in journey.contacts),
                          journey.complaint_at)
        verdict = policy.decide(candidates, context, trigger)
        trigger_key = trigger_key or event_id or f"{rule_id}@{at}"
        record = explained_record(verdict, journey=journey.key, customer_id=None if journey.anonymous else journey.key,
                                  trigger=trigger, event_ids=[event_id] if event_id else [], at=at, stage=journey.stage,
                                  policy_name=policy.name, trigger_key=trigger_key)
        why_text = f"{why[0].upper()}{why[1:]}."
        if plan is not None:
            why_text += f" Planned by the {plan.agent} agent: {plan.reason}."
        record.update({
            "anonymous_id": journey.key if journey.anonymous else None, "event_id": event_id, "rule": rule_id,
            "mapped_stage": stage, "justification": " ".join([why_text, record["justification"], *notes]),
            "features": features, "feature_source": source, "models": list(scored.models), "shadow": list(scored.shadow),
            "fast_path": fast_path, "latency_ms": None, "decision_us": int((self.clock() - started) * 1_000_000),
            "schema_version": DECISION_VERSION,
        })
        if ingested_at is not None:
            record["_ingested_at"] = ingested_at
        self._remember(journey, record, plans.get(verdict.chosen), at)
        out.append((DECISION, record))

    def _reachable(self, journey: Journey, candidate: Candidate) -> bool:
        return journey.identified or candidate.channel not in self.ontology.identified_channels

    def _journey_values(self, journey: Journey, at: int) -> dict:
        """What the policy's eligibility rules and the agents may read of the journey itself."""
        return {
            "stage": journey.stage, "identified": journey.identified,
            "contacts_7d": sum(1 for c in journey.contacts if at - c[0] < 7 * DAY_MS),
            "open_complaint": journey.complaint_open,
            "escalated_7d": any(c[2] == "escalate_to_agent" and at - c[0] < 7 * DAY_MS for c in journey.contacts),
            **{f"responses_{name}": count for name, count in journey.responses.items()},
        }

    def _remember(self, journey: Journey, record: dict, follow_up: FollowUp | None, at: int) -> None:
        horizon = at - self.outcome_window_ms
        if record["action"] is not None:
            journey.awaiting = {k: v for k, v in journey.awaiting.items() if v[0] >= horizon}
            journey.awaiting[record["decision_id"]] = [at, record["action"], record["channel"], record["agent"],
                                                       record["control"]]
            if len(journey.awaiting) > MAX_AWAITING:
                for oldest in sorted(journey.awaiting, key=lambda k: journey.awaiting[k][0])[:-MAX_AWAITING]:
                    del journey.awaiting[oldest]
        if not record["acted"]:
            return
        journey.contacts = [c for c in journey.contacts if c[0] >= at - self.contact_memory_ms][-MAX_CONTACTS + 1:]
        journey.contacts.append([at, record["channel"], record["action"], record["decision_id"]])
        if follow_up is not None:
            journey.plans.append(follow_up.to_wire())

    def _cancel_plans(self, journey: Journey, entered: str, at: int, out: list) -> None:
        """Plans whose goal the journey has just reached are no longer needed."""
        if not journey.plans:
            return
        plans = tuple(FollowUp.from_wire(p) for p in journey.plans)
        pending, due = plans_after(plans, entered, at)
        kept = set(pending + due)
        for plan in plans:
            if plan not in kept:
                out.append((JOURNEY, {"kind": "plan_cancelled", "journey": journey.key, "anonymous": journey.anonymous,
                                      "at": at, "plan": plan.id, "action": plan.action, "agent": plan.agent,
                                      "reason": f"goal {entered} reached"}))
        journey.plans = [p.to_wire() for p in plans if p in kept]

    # -- outcomes ------------------------------------------------------------------------------
    def _outcome(self, journey: Journey, signal: dict) -> dict:
        """An outcome joined to its decision by decision_id: the journey's responsiveness changes,
        its session and stage do not (an answer is not a step of the customer's own)."""
        outcome, decision_id = signal["event_type"], signal["attributes"]["decision_id"]
        journey.responses[outcome] = journey.responses.get(outcome, 0) + 1
        decided = journey.awaiting.get(decision_id)
        if decided is None:
            return {"decision_id": decision_id, "matched": False}
        decided_at, action, channel, agent, control = decided
        return {"decision_id": decision_id, "matched": True, "action": action, "channel": channel, "agent": agent,
                "control": control, "decided_at": decided_at, "after_ms": signal["event_time"] - decided_at}


def _merge_sessions(mine: Session | None, theirs: Session | None) -> Session | None:
    if mine is None:
        return theirs
    if theirs is None:
        return mine
    first, second = (mine, theirs) if (mine.start, mine.id) <= (theirs.start, theirs.id) else (theirs, mine)
    counts = dict(first.counts)
    for event_type, count in second.counts.items():
        counts[event_type] = counts.get(event_type, 0) + count
    return Session(
        id=first.id, start=first.start, last=max(first.last, second.last), signals=first.signals + second.signals,
        channels=first.channels + [c for c in second.channels if c not in first.channels], counts=counts,
        hints=(first.hints + [h for h in second.hints if h not in first.hints])[:4], stage_at_start=first.stage_at_start,
    )
