"""The policy engine: what may be done for a customer now, and which proposal wins.

A policy is a versioned YAML file (docs/policy.md). Agents propose candidate actions; the policy
removes those it does not allow (eligibility, consent and its withdrawal, contact caps, quiet
hours, the cooldown after a complaint), puts every customer of the control group aside, and arbitrates the rest:

    priority = product of the factors named under arbitration.priority
               (propensity from the candidate, the others looked up in their tables)

Mandatory actions skip arbitration (the highest-priority surviving one wins) but not the
contact policy. Everything here is a pure function of the policy, the candidates and the
context, so a replay of the same signals gives the same verdicts.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from typing import Mapping

from journeys.timeutil import parse_duration, zone
from journeys.yamlconf import NO_ENVIRONMENT, ConfigError, Located, loads_yaml, where

ANY_CHANNEL = "any"
_OPERATORS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte")


@dataclass(frozen=True)
class Candidate:
    """An action an agent proposes: its propensity (how likely it helps, in [0, 1]) and why."""

    action: str
    channel: str
    agent: str
    propensity: float
    reason: str = ""


@dataclass(frozen=True)
class Context:
    """What the policy may look at: the customer, the time (event time, ms), their time zone,
    values of the journey, features and scores by name, past contacts as (at, channel), the
    channels they have withdrawn consent for, and the identity that places them in an arm (the
    identity seen first, journeys.identity; the customer id where none is given)."""

    customer_id: str
    now: int
    timezone: str = "UTC"
    values: dict = field(default_factory=dict)
    contacts: tuple = ()
    last_complaint_at: int | None = None
    withdrawn: frozenset = frozenset()
    arm_key: str | None = None


@dataclass(frozen=True)
class Considered:
    candidate: Candidate
    priority: float
    factors: dict
    suppressed_by: tuple = ()  # rule ids, empty when it was allowed


@dataclass(frozen=True)
class Verdict:
    chosen: Candidate | None
    considered: tuple          # every candidate, in priority order, with what suppressed it
    control_group: bool
    policy_version: str
    mandatory: bool = False

    @property
    def suppressions(self) -> dict:
        counts: dict[str, int] = {}
        for item in self.considered:
            for rule in item.suppressed_by:
                counts[rule] = counts.get(rule, 0) + 1
        return counts


@dataclass(frozen=True)
class Condition:
    name: str
    operator: str
    operand: object

    def holds(self, values: dict) -> bool:
        value = values.get(self.name)
        if self.operator == "eq":
            return value == self.operand
        if self.operator == "ne":
            return value != self.operand
        if self.operator == "in":
            return value in self.operand
        if self.operator == "not_in":
            return value not in self.operand
        if value is None:
            return False
        return {"gt": value > self.operand, "gte": value >= self.operand, "lt": value < self.operand,
                "lte": value <= self.operand}[self.operator]


@dataclass(frozen=True)
class EligibilityRule:
    """Suppress `actions` (all when empty) while every condition holds."""

    id: str
    conditions: tuple
    actions: frozenset

    def suppresses(self, candidate: Candidate, values: dict) -> bool:
        return (not self.actions or candidate.action in self.actions) and all(c.holds(values) for c in self.conditions)


@dataclass(frozen=True)
class FrequencyCap:
    id: str
    channel: str      # a channel, or "any" for all channels together
    max_contacts: int
    window_ms: int

    def reached(self, channel: str, context: Context) -> bool:
        if self.channel not in (ANY_CHANNEL, channel):
            return False
        since = context.now - self.window_ms
        used = sum(1 for at, used_channel in context.contacts
                   if since < at <= context.now and self.channel in (ANY_CHANNEL, used_channel))
        return used >= self.max_contacts


@dataclass(frozen=True)
class QuietHours:
    start_minute: int
    end_minute: int
    channels: frozenset

    def now_quiet(self, channel: str, context: Context) -> bool:
        if channel not in self.channels:
            return False
        local = datetime.fromtimestamp(context.now / 1000, tz=timezone.utc).astimezone(_zone(context.timezone))
        minute = local.hour * 60 + local.minute
        if self.start_minute <= self.end_minute:
            return self.start_minute <= minute < self.end_minute
        return minute >= self.start_minute or minute < self.end_minute  # across midnight


@dataclass(frozen=True)
class Policy:
    name: str
    version: str
    priority: tuple
    tables: dict                  # factor -> (key: "trigger" | "action" | "channel" | "agent", values, default)
    consent: dict                 # channel -> the value that must be true
    caps: tuple
    quiet_hours: QuietHours | None
    cooldown_ms: int
    cooldown_spares: frozenset    # actions the complaint cooldown leaves alone (service actions)
    eligibility: tuple
    mandatory: frozenset
    control_share: float
    control_salt: str

    def in_control_group(self, customer_id: str) -> bool:
        digest = hashlib.blake2b(f"{self.control_salt}\0{customer_id}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2 ** 64 < self.control_share

    def decide(self, candidates: list[Candidate], context: Context, trigger: str | None = None) -> Verdict:
        considered = [self._consider(candidate, context, trigger) for candidate in candidates]
        considered.sort(key=lambda c: (-c.priority, c.candidate.action, c.candidate.channel, c.candidate.agent))
        if self.in_control_group(context.arm_key or context.customer_id):
            return Verdict(None, tuple(considered), True, self.version)
        allowed = [c for c in considered if not c.suppressed_by]
        mandatory = [c for c in allowed if c.candidate.action in self.mandatory]
        if mandatory:
            return Verdict(mandatory[0].candidate, tuple(considered), False, self.version, mandatory=True)
        return Verdict(allowed[0].candidate if allowed else None, tuple(considered), False, self.version)

    def _consider(self, candidate: Candidate, context: Context, trigger: str | None) -> Considered:
        keys = {"trigger": trigger, "action": candidate.action, "channel": candidate.channel, "agent": candidate.agent}
        factors = {}
        for factor in self.priority:
            if factor == "propensity":
                factors[factor] = candidate.propensity
            else:
                key, values, default = self.tables[factor]
                factors[factor] = float(values.get(keys[key], default))
        priority = 1.0
        for value in factors.values():
            priority *= value
        return Considered(candidate, round(priority, 9), factors, tuple(self._suppressions(candidate, context)))

    def _suppressions(self, candidate: Candidate, context: Context) -> list[str]:
        rules = []
        exempt = candidate.action in self.mandatory
        for rule in self.eligibility:
            if not exempt and rule.suppresses(candidate, context.values):
                rules.append(f"eligibility:{rule.id}")
        flag = self.consent.get(candidate.channel)
        if flag and not context.values.get(flag):
            rules.append(f"consent:{candidate.channel}")
        if candidate.channel in context.withdrawn:
            rules.append(f"consent_withdrawn:{candidate.channel}")
        for cap in self.caps:
            if cap.reached(candidate.channel, context):
                rules.append(f"frequency_cap:{cap.id}")
        if self.quiet_hours is not None and self.quiet_hours.now_quiet(candidate.channel, context):
            rules.append("quiet_hours")
        if (self.cooldown_ms and context.last_complaint_at is not None
                and context.now - context.last_complaint_at < self.cooldown_ms
                and candidate.action not in self.cooldown_spares):
            rules.append("complaint_cooldown")
        return rules


def _zone(name: str):
    # Intake takes only known zones; a state written before it checked may still hold another.
    return zone(name) or timezone.utc


# -- loading -----------------------------------------------------------------------------------------
def packaged_policy_text(name: str) -> tuple[str, str]:
    """(text, source) of a policy packaged with the core (journeys/conf/policy/<name>.yaml)."""
    return resources.files("journeys.conf").joinpath(f"policy/{name}.yaml").read_text(), f"journeys/conf/policy/{name}.yaml"


def packaged_policy(name: str = "retail") -> Policy:
    return loads_policy(*packaged_policy_text(name))


def loads_policy(text: str, source: str = "<policy>", env: Mapping[str, str] = NO_ENVIRONMENT) -> Policy:
    """env fills the file's ${...} references (pipelines.config passes the process environment)."""
    return parse_policy(loads_yaml(text, source, env))


def parse_policy(doc) -> Policy:
    if not isinstance(doc, Located):
        raise ConfigError(f"{where(doc)}: a policy is a mapping with policy, version and rules")
    _only(doc, {"policy", "version", "arbitration", "consent", "contact", "eligibility", "mandatory", "control_group"})
    for key in ("policy", "version"):
        if key not in doc:
            raise ConfigError(f"{doc.where()}: the policy needs `{key}`")
    arbitration = _mapping(doc, "arbitration")
    priority = arbitration.get("priority", ["propensity"])
    if not isinstance(priority, list) or not priority:
        raise ConfigError(f"{where(arbitration, 'priority')}: arbitration.priority is a list of factors")
    tables = {}
    for index, factor in enumerate(priority):
        if factor == "propensity":
            continue
        table = arbitration.get(factor)
        if not isinstance(table, Located):
            raise ConfigError(f"{priority.where(index) if hasattr(priority, 'where') else where(arbitration)}: "
                              f"factor {factor!r} has no table under arbitration (by, values, default)")
        _only(table, {"by", "values", "default"})
        by = table.get("by", "action")
        if by not in ("trigger", "action", "channel", "agent"):
            raise ConfigError(f"{table.where('by')}: `by` is trigger, action, channel or agent, not {by!r}")
        values = table.get("values", {})
        for key, value in values.items():
            _number(values, key, value)
        tables[factor] = (by, dict(values), _number(table, "default", table.get("default", 1.0)))
    contact = _mapping(doc, "contact")
    _only(contact, {"caps", "quiet_hours", "complaint_cooldown"})
    caps = tuple(_cap(contact["caps"], i, c) for i, c in enumerate(contact.get("caps") or []))
    quiet = _quiet_hours(contact["quiet_hours"]) if contact.get("quiet_hours") else None
    cooldown = contact.get("complaint_cooldown") or {}
    if cooldown:
        _only(cooldown, {"for", "spares"})
    control = _mapping(doc, "control_group")
    _only(control, {"share", "salt"})
    share = _number(control, "share", control.get("share", 0.0))
    if not 0 <= share < 1:
        raise ConfigError(f"{control.where('share')}: control_group.share is a share in [0, 1), not {share}")
    return Policy(
        name=str(doc["policy"]), version=str(doc["version"]), priority=tuple(priority), tables=tables,
        consent=dict(_mapping(doc, "consent")), caps=caps, quiet_hours=quiet,
        cooldown_ms=_duration(cooldown, "for") if cooldown else 0,
        cooldown_spares=frozenset(cooldown.get("spares", [])) if cooldown else frozenset(),
        eligibility=tuple(_eligibility(doc["eligibility"], i, r) for i, r in enumerate(doc.get("eligibility") or [])),
        mandatory=frozenset(doc.get("mandatory") or []), control_share=share,
        control_salt=str(control.get("salt", doc["policy"])))


def _only(mapping: Located, allowed: set) -> None:
    for key in mapping:
        if key not in allowed:
            raise ConfigError(f"{mapping.where(key)}: unknown key {key!r}; expected {', '.join(sorted(allowed))}")


def _mapping(doc: Located, key: str) -> Located:
    value = doc.get(key)
    if value is None:
        empty = Located()
        empty.source, empty.lines = doc.source, {None: doc.lines.get(key)}
        return empty
    if not isinstance(value, Located):
        raise ConfigError(f"{doc.where(key)}: `{key}` is a mapping")
    return value


def _number(container, key, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where(container, key)}: {key} must be a number, not {value!r}")
    return float(value)


def _duration(container, key) -> int:
    try:
        return parse_duration(str(container[key]))
    except (KeyError, ValueError) as error:
        raise ConfigError(f"{where(container, key)}: {key} must be a duration such as 48h ({error})") from None


def _cap(caps, index: int, cap) -> FrequencyCap:
    if not isinstance(cap, Located):
        raise ConfigError(f"{caps.where(index)}: a cap is a mapping: id, channel, max, per")
    _only(cap, {"id", "channel", "max", "per"})
    maximum = cap.get("max")
    if isinstance(maximum, bool) or not isinstance(maximum, int) or maximum < 0:
        raise ConfigError(f"{cap.where('max')}: max is a whole number of contacts, not {maximum!r}")
    channel = str(cap.get("channel", ANY_CHANNEL))
    return FrequencyCap(str(cap.get("id", f"{channel}_{maximum}_per_{cap.get('per')}")), channel, maximum,
                        _duration(cap, "per"))


def _clock(container, key) -> int:
    text = str(container.get(key, ""))
    try:
        hours, minutes = (int(part) for part in text.split(":"))
        if not (0 <= hours < 24 and 0 <= minutes < 60):
            raise ValueError
    except ValueError:
        raise ConfigError(f"{where(container, key)}: {key} is a time of day such as 21:00, not {text!r}") from None
    return hours * 60 + minutes


def _quiet_hours(quiet) -> QuietHours:
    if not isinstance(quiet, Located):
        raise ConfigError("contact.quiet_hours is a mapping: start, end, channels")
    _only(quiet, {"start", "end", "channels"})
    return QuietHours(_clock(quiet, "start"), _clock(quiet, "end"), frozenset(quiet.get("channels") or []))


def _eligibility(rules, index: int, rule) -> EligibilityRule:
    if not isinstance(rule, Located) or "id" not in rule or "when" not in rule:
        raise ConfigError(f"{rules.where(index)}: an eligibility rule has an id, `when` and optional `suppress`")
    _only(rule, {"id", "when", "suppress", "description"})
    when = rule["when"]
    if not isinstance(when, Located) or not when:
        raise ConfigError(f"{rule.where('when')}: `when` maps value names to conditions")
    conditions = []
    for name, test in when.items():
        if isinstance(test, Located):
            if len(test) != 1 or next(iter(test)) not in _OPERATORS:
                raise ConfigError(f"{when.where(name)}: a condition is one of {', '.join(_OPERATORS)}, "
                                  f"as in {{gte: 3}}")
            operator, operand = next(iter(test.items()))
        else:
            operator, operand = "eq", test
        conditions.append(Condition(str(name), operator, operand))
    return EligibilityRule(str(rule["id"]), tuple(conditions), frozenset(rule.get("suppress") or []))


__all__ = ["Policy", "Candidate", "Context", "Verdict", "Considered", "packaged_policy", "packaged_policy_text",
           "loads_policy", "parse_policy"]
