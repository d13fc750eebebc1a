"""`journeys audit`: check a run's decisions against the guardrails from the input itself, without
the job's own reading of it.

- Quiet hours: every acted decision on a quiet-hours channel, at the customer's local time. The
  customer's zone is what their own signals said last before the decision (their first report,
  where none came before), else their profile's.
- Withdrawn consent: every acted decision on a channel the person had withdrawn consent for by an
  earlier signal (event time), with no profile dated after the withdrawal.
- Arms: every person whose decision points fell in both the control group and the treated arm.
- Cart actions after the purchase: every acted decision of an action the cart stage offers
  (CART_STAGE's actions) that the person's purchase (a signal into PURCHASE_STAGE) came before,
  with no new cart between them. Where the journey log is given, those the job could not have
  known of, because the purchase reached it after the decision went out (the journey log's
  stale_decision records, docs/policy.md "Cross-channel consistency"), are counted apart.

A person is a customer id and every anonymous id that ever came in one signal with it, so a
visitor counts as the customer they later turned out to be, whatever the job stitched.
"""
from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import orjson

from journeys.consent import EVERY_CHANNEL, withdrawn_by
from journeys.features import epoch_ms
from journeys.ontology import Ontology
from journeys.outcomes import answers_a_decision
from journeys.policy import Context, Policy

EXAMPLES = 5  # decision ids quoted per finding
CART_STAGE, PURCHASE_STAGE = "intent", "conversion"  # the retail ontology's stages of a cart and a purchase


@dataclass
class Audit:
    decision_points: int = 0
    acted: int = 0
    quiet_hour_contacts: list = field(default_factory=list)    # decision ids
    zone_unknown: int = 0                                       # acted on a quiet channel, zone never said
    contacts_after_withdrawal: list = field(default_factory=list)
    people: int = 0
    people_in_both_arms: list = field(default_factory=list)    # person ids
    cart_actions_after_purchase: list = field(default_factory=list)
    purchase_arrived_after: list = field(default_factory=list)  # cart actions after a purchase the job heard of later

    @property
    def clean(self) -> bool:
        return not (self.quiet_hour_contacts or self.contacts_after_withdrawal or self.people_in_both_arms
                    or self.cart_actions_after_purchase)

    def to_dict(self) -> dict:
        return {"decision_points": self.decision_points, "acted": self.acted,
                "quiet_hour_contacts": len(self.quiet_hour_contacts), "zone_unknown": self.zone_unknown,
                "contacts_after_withdrawal": len(self.contacts_after_withdrawal), "people": self.people,
                "people_in_both_arms": len(self.people_in_both_arms),
                "cart_actions_after_purchase": len(self.cart_actions_after_purchase),
                "purchase_arrived_after": len(self.purchase_arrived_after),
                "examples": {"quiet_hour_contacts": sorted(self.quiet_hour_contacts)[:EXAMPLES],
                             "contacts_after_withdrawal": sorted(self.contacts_after_withdrawal)[:EXAMPLES],
                             "people_in_both_arms": sorted(self.people_in_both_arms)[:EXAMPLES],
                             "cart_actions_after_purchase": sorted(self.cart_actions_after_purchase)[:EXAMPLES]}}


class _People:
    """Union of ids that came together in one signal; a person is named by a customer id where one is known."""

    def __init__(self):
        self._parent: dict[str, str] = {}
        self._customers: set[str] = set()

    def find(self, key: str) -> str:
        parent = self._parent.setdefault(key, key)
        if parent != key:
            parent = self._parent[key] = self.find(parent)
        return parent

    def join(self, customer_id: str, anonymous_id: str) -> None:
        self._customers.add(customer_id)
        a, b = self.find(customer_id), self.find(anonymous_id)
        if a != b:  # a customer id names the person
            keep, drop = (a, b) if a in self._customers or b not in self._customers else (b, a)
            self._parent[drop] = keep


class _Person:
    def __init__(self):
        self.zones: list[tuple[int, str]] = []          # (event time, zone) of their own signals
        self.withdrawals: list[tuple[int, str]] = []    # (event time, channel or EVERY_CHANNEL)
        self.carts: list[tuple[int, str]] = []          # (event time, CART_STAGE or PURCHASE_STAGE)


def audit(signals: Iterable[dict], decisions: Iterable[dict], policy: Policy, ontology: Ontology,
          profiles: Iterable[dict] = (), stale: frozenset[str] = frozenset()) -> Audit:
    """signals: the run's input, decoded (rejected lines left out); decisions: the decision log;
    stale: the ids of decisions a signal arriving after them made stale (the journey log's)."""
    people = _People()
    into = _stage_entering_types(ontology)
    cart_actions = frozenset(ontology.stage_by_id[CART_STAGE].actions) if CART_STAGE in ontology.stage_by_id else frozenset()
    own: list[dict] = []
    for signal in signals:
        if signal.get("customer_id") and signal.get("anonymous_id"):
            people.join(signal["customer_id"], signal["anonymous_id"])
        if not answers_a_decision(signal):
            own.append(signal)
    persons: dict[str, _Person] = defaultdict(_Person)
    for signal in own:
        person = persons[people.find(signal.get("customer_id") or signal["anonymous_id"])]
        if signal.get("timezone"):
            person.zones.append((signal["event_time"], signal["timezone"]))
        for channel in withdrawn_by(signal, ontology):
            person.withdrawals.append((signal["event_time"], channel))
        if signal["event_type"] in into:
            person.carts.append((signal["event_time"], into[signal["event_type"]]))
    profile_by_customer = {p["customer_id"]: p for p in profiles}
    for person in persons.values():
        person.zones.sort()
        person.carts.sort()
    result = Audit()
    arms: dict[str, set[bool]] = defaultdict(set)
    for decision in decisions:
        result.decision_points += 1
        person_id = people.find(decision.get("customer_id") or decision["journey"])
        arms[person_id].add(bool(decision.get("control")))
        if not decision.get("acted"):
            continue
        result.acted += 1
        person = persons.get(person_id) or _Person()
        profile = profile_by_customer.get(person_id, {})
        _check_quiet_hours(decision, person, profile, policy, result)
        _check_withdrawals(decision, person, profile, policy, result)
        if decision.get("action") in cart_actions and _after_purchase(person.carts, decision["decided_at"]):
            found = result.purchase_arrived_after if decision["decision_id"] in stale else result.cart_actions_after_purchase
            found.append(decision["decision_id"])
    result.people = len(arms)
    result.people_in_both_arms = [person for person, seen in arms.items() if len(seen) == 2]
    return result


def _check_quiet_hours(decision: dict, person: _Person, profile: dict, policy: Policy, result: Audit) -> None:
    quiet = policy.quiet_hours
    if quiet is None or decision["channel"] not in quiet.channels:
        return
    at = decision["decided_at"]
    zone = _zone_at(person.zones, at) or profile.get("timezone")
    if zone is None:
        result.zone_unknown += 1
        return
    if quiet.now_quiet(decision["channel"], Context(decision["journey"], at, zone)):
        result.quiet_hour_contacts.append(decision["decision_id"])


def _zone_at(zones: list[tuple[int, str]], at: int) -> str | None:
    if not zones:
        return None
    index = bisect.bisect_right(zones, (at, "\uffff"))
    return zones[index - 1][1] if index else zones[0][1]


def _check_withdrawals(decision: dict, person: _Person, profile: dict, policy: Policy, result: Audit) -> None:
    channel, at = decision["channel"], decision["decided_at"]
    profile_at = epoch_ms(profile.get("event_timestamp"))
    for withdrawn_at, withdrawn in person.withdrawals:
        covers = withdrawn == channel or (withdrawn == EVERY_CHANNEL and channel in policy.consent)
        if covers and withdrawn_at < at and not (profile_at is not None and profile_at > withdrawn_at):
            result.contacts_after_withdrawal.append(decision["decision_id"])
            return


def _stage_entering_types(ontology: Ontology) -> dict[str, str]:
    """Signal types that move a journey into the cart stage or the purchase stage -> that stage."""
    return {event_type: rule.to for rule in ontology.signal_rules if rule.to in (CART_STAGE, PURCHASE_STAGE)
            for event_type in rule.on}


def _after_purchase(carts: list[tuple[int, str]], at: int) -> bool:
    """Whether the latest cart or purchase signal up to `at` was a purchase (a cart at `at` itself
    is the one the decision is about)."""
    index = bisect.bisect_right(carts, (at, "\uffff"))
    return index > 0 and carts[index - 1][1] == PURCHASE_STAGE


def format_audit(found: Audit) -> str:
    def line(label: str, ids: list, what: str) -> str:
        examples = f" (e.g. {', '.join(sorted(ids)[:3])})" if ids else ""
        return f"  {label:<44}{len(ids):>8,}  {what}{examples}"

    rows = [f"Guardrail audit of {found.acted:,} acted decisions ({found.decision_points:,} decision points, "
            f"{found.people:,} people)",
            line("e-mails and messages in quiet hours", found.quiet_hour_contacts, "in the customer's own zone"),
            line("contacts after a withdrawal of consent", found.contacts_after_withdrawal, "on the withdrawn channel"),
            line("people in both arms", found.people_in_both_arms, "control and treated"),
            line("cart actions after the purchase", found.cart_actions_after_purchase, "no new cart between")]
    if found.purchase_arrived_after:
        rows.append(f"  {'  and after a purchase the job heard of later':<44}{len(found.purchase_arrived_after):>8,}"
                    f"  stale when sent: not a broken guardrail")
    if found.zone_unknown:
        rows.append(f"  {'quiet-hours channel, zone never said':<44}{found.zone_unknown:>8,}  not checked")
    rows.append("  verdict: every guardrail held" if found.clean else "  verdict: GUARDRAILS BROKEN")
    return "\n".join(rows)


def decode_signals(lines: Iterable[bytes]) -> Iterator[dict]:
    """The input's records that look like signals; the rest (intake's rejections) say nothing of anyone."""
    for raw in lines:
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if (isinstance(record, dict) and isinstance(record.get("event_time"), int)
                and isinstance(record.get("event_type"), str) and (record.get("customer_id") or record.get("anonymous_id"))):
            attributes = record.get("attributes")
            yield record | {"attributes": attributes if isinstance(attributes, dict) else {}}


__all__ = ["Audit", "audit", "format_audit", "decode_signals"]
