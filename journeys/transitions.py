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

import hashlib

from journeys.contract import DECISION_VERSION
from journeys.features import CACHED, DISABLED, ONLINE, NoProfiles, ProfileSource, activity_features, record_activity
from journeys.ontology import ActionSpec, Ontology
from journeys.scoring import ModelSource, score_decisions
from journeys.settings import JourneySettings
from journeys.state import Journey, Session
from journeys.timeutil import format_duration

JOURNEY = "journey"
DECISION = "decision"
FEATURES = "features"  # (FEATURES, customer_id, behavioural feature row) to push to the feature store


def stable_id(prefix: str, *parts) -> str:
    text = "\x1f".join("" if part is None else str(part) for part in parts)
    return prefix + hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


class JourneyModel:
    def __init__(self, ontology: Ontology, settings: JourneySettings, profiles: ProfileSource | None = None,
                 push_features: bool = False, models: ModelSource | None = None):
        """profiles: where profile features come from (none by default). push_features: callers
        (journeys.keyed) also output customers' behavioural features for the feature store.
        models: the stage models decisions are scored with (none by default)."""
        self.ontology = ontology
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
        if journey is None:
            journey = self.new_journey(key, anonymous, at)
        event_type = signal["event_type"]
        event_id = signal["event_id"]

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
        out.append((JOURNEY, record))

        if moved_by is not None:
            reason = f"entered {journey.stage} from {previous} on {event_type} (rule {moved_by})"
            self._decide_for_stage(journey, "stage_entered", event_id, at, moved_by, reason, ingested_at, out)
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
        return best

    def _tick(self, journey: Journey, now: int, out: list) -> Journey | None:
        while True:
            due = self._next_time_event(journey)
            if due is None or due[0] > now:
                return journey
            at, order, rule = due
            if order == 0:
                self._close_session(journey, at, out)
            elif order == 1:
                previous = journey.stage
                journey.stage = rule.to
                journey.stage_since = at
                journey.evidence = [rule.id, None, at]
                out.append((JOURNEY, {"kind": "transition", "journey": journey.key, "anonymous": journey.anonymous,
                                      "at": at, "from_stage": previous, "stage": rule.to, "rule": rule.id}))
                quiet = "without signals" if rule.basis == "inactivity" else f"in {previous}"
                reason = f"entered {rule.to} from {previous} after {format_duration(rule.after_ms)} {quiet} (rule {rule.id})"
                self._decide_for_stage(journey, "stage_entered", None, at, rule.id, reason, None, out)
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
            if journey.anonymous and not self.ontology.usable_by_anonymous(rule.action):
                continue
            has = ", ".join(sorted(rule.session_has)) or "signals"
            lacks = " and no " + ", ".join(sorted(rule.session_lacks)) if rule.session_lacks else ""
            reason = f"session {session.id} ended in {journey.stage} with {has}{lacks} (rule {rule.id})"
            self._decide(journey, "session_closed", None, closed_at, rule.id, rule.action, reason, None, out,
                         trigger_key=session.id)

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

    # -- decisions -----------------------------------------------------------------------------
    def score(self, out: list) -> None:
        """Score the decisions of one batch of outputs with the active models, in one call per model."""
        if self.models is None:
            return
        models = self.models.active()
        if not (models.champions or models.challengers or models.note):
            return
        score_decisions([record for kind, record, *_ in out if kind == DECISION], models, self._allowed_stage_action,
                        self.override_confidence)

    def _allowed_stage_action(self, record: dict, stage: str) -> ActionSpec | None:
        if stage not in self.ontology.stage_by_id:
            return None
        identified = record["customer_id"] is not None
        action = self.ontology.stage_action(stage, identified)
        if action is None or (not identified and not self.ontology.usable_by_anonymous(action)):
            return None
        # The features hold the profile only when one was looked up (as the rules' decision saw it).
        profile = (record.get("features") or {}) if record.get("feature_source") not in ("none", DISABLED) else {}
        return None if self._consent_withheld(action, profile) else action

    def _consent_withheld(self, action: ActionSpec, profile: dict) -> str | None:
        """The consent flag the action's channel needs and the profile does not give; none without a profile."""
        consent = self.ontology.channel_consent.get(action.channel)
        return consent if consent and profile and not profile.get(consent) else None

    def _decide_for_stage(self, journey, trigger, event_id, at, rule_id, why, ingested_at, out) -> None:
        action = self.ontology.stage_action(journey.stage, journey.identified)
        if action is None:
            return
        reason = f"{why[0].upper()}{why[1:]}: the default next action in {journey.stage} is {action.action} by {action.channel}."
        self._decide(journey, trigger, event_id, at, rule_id, action, reason, ingested_at, out)

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
            reason = f"Escalated after {what} (rule {rule.id}): {rule.action.action} by {rule.action.channel}."
            self._decide(journey, "escalation", event_id, at, rule.id, rule.action, reason, ingested_at, out)

    def _decide(self, journey, trigger, event_id, at, rule_id, action: ActionSpec, reason, ingested_at, out,
                trigger_key=None) -> None:
        if journey.anonymous and not self.ontology.usable_by_anonymous(action):
            return
        features = activity_features(journey.activity, at)
        source = "none"
        if not journey.anonymous:
            lookup = self.profiles.profile(journey.key)
            source = ONLINE if lookup.source == CACHED else lookup.source  # the same values, however fetched
            features = lookup.values | features
            if lookup.defaulted:
                reason += f" Profile features: {lookup.note}; decided with defaults."
            consent = self._consent_withheld(action, lookup.values)
            if consent:
                alternative = self.ontology.stage_by_id[journey.stage].anonymous_action
                if alternative is None or alternative.channel in self.ontology.channel_consent:
                    return
                reason += f" No {action.channel} consent ({consent}): {alternative.action} by {alternative.channel} instead."
                action = alternative
        trigger_key = trigger_key or event_id or f"{rule_id}@{at}"
        record = {
            "decision_id": stable_id("d-", journey.key, trigger, trigger_key, action.action),
            "journey": journey.key,
            "customer_id": None if journey.anonymous else journey.key,
            "anonymous_id": journey.key if journey.anonymous else None,
            "trigger": trigger, "event_id": event_id, "decided_at": at, "stage": journey.stage,
            "action": action.action, "channel": action.channel, "rule": rule_id, "reason": reason,
            "features": features, "feature_source": source,
            "models": [], "shadow": [], "mapped_stage": None,
            "latency_ms": None, "schema_version": DECISION_VERSION,
        }
        if ingested_at is not None:
            record["_ingested_at"] = ingested_at
        out.append((DECISION, record))


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
