"""Identity stitching: a visitor's journey, up to the identifying signal, joins the customer's.
Counts, recent times, touchpoints, contacts, plans and decisions awaiting outcomes add up; the
open sessions merge into one; the stage with the latest evidence wins (a fresh customer journey
takes the visitor's). The person's arm (control group or not) is the arm one of the two has
already decided in, the earlier one's if both have, and else the arm of the identity seen first:
stitching moves no one from an arm they were treated (or held back) in to the other."""
from __future__ import annotations

from journeys.decision_point import MAX_CONTACTS
from journeys.ontology import Ontology
from journeys.state import Journey, Session

MAX_ALIASES = 8


def combine(journey: Journey, visitor: Journey, fresh: bool, ontology: Ontology, touchpoint_limit: int) -> None:
    for event_type, count in visitor.counts.items():
        journey.counts[event_type] = journey.counts.get(event_type, 0) + count
    for event_type, times in visitor.recent.items():
        depth = ontology.recent_depth.get(event_type, len(times))
        journey.recent[event_type] = sorted(journey.recent.get(event_type, []) + times)[-depth:]
    journey.touchpoints = sorted(journey.touchpoints + visitor.touchpoints)[-touchpoint_limit:]
    if visitor.first_seen is not None:
        journey.first_seen = visitor.first_seen if journey.first_seen is None else min(journey.first_seen, visitor.first_seen)
    if visitor.last_activity is not None:
        journey.last_activity = (visitor.last_activity if journey.last_activity is None
                                 else max(journey.last_activity, visitor.last_activity))
    journey.sessions_closed += visitor.sessions_closed
    journey.session = merge_sessions(journey.session, visitor.session)
    if fresh or (visitor.stage_since, ontology.rank(visitor.stage)) > (journey.stage_since, ontology.rank(journey.stage)):
        journey.stage, journey.stage_since, journey.evidence = visitor.stage, visitor.stage_since, visitor.evidence
    journey.aliases = (journey.aliases + [visitor.key])[-MAX_ALIASES:]
    journey.contacts = sorted(journey.contacts + visitor.contacts)[-MAX_CONTACTS:]
    journey.awaiting = visitor.awaiting | journey.awaiting
    journey.plans = journey.plans + visitor.plans
    for outcome, count in visitor.responses.items():
        journey.responses[outcome] = journey.responses.get(outcome, 0) + count
    for channel, at in visitor.withdrawn.items():
        journey.withdrawn[channel] = max(at, journey.withdrawn.get(channel, at))
    if journey.timezone is None:
        journey.timezone = visitor.timezone
    journey.arm = min(journey.arm_identity(), visitor.arm_identity(), key=_arm_order)


def _arm_order(arm: list) -> tuple:
    """An arm decided in comes first, the earliest decided; then the identity seen first; then the smaller id."""
    decided, seen, identity = arm
    return decided is None, decided or 0, seen, identity


def merge_sessions(mine: Session | None, theirs: Session | None) -> Session | None:
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
        late_types=first.late_types + [t for t in second.late_types if t not in first.late_types],
    )
