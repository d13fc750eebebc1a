"""Rules that can never fire: a policy's references to values that nothing produces.

A policy file can be valid and still say nothing: an eligibility rule on a segment no profile has,
a suppression of an action no stage offers, a cap on a channel that does not exist. Each is found
here against what is known of the values: the ontology's stages and actions, the signal
contract's channels, and the feature definitions' declared values (journeys.features.
PROFILE_VALUES). Names whose values are not known (a score, a count) are not judged.
"""
from __future__ import annotations

from dataclasses import dataclass

from journeys.contract import signal_channels
from journeys.features import BOOLEAN_VALUES, PROFILE_VALUES
from journeys.ontology import Ontology
from journeys.policy import ANY_CHANNEL, Condition, Policy

_SHOWN = 8  # known values named in a warning


@dataclass(frozen=True)
class PolicyWarning:
    part: str   # what in the policy: "eligibility rule vip_gets_no_cold_sms", "contact cap sms_weekly", ...
    text: str   # what is wrong, for people

    def __str__(self) -> str:
        return f"{self.part}: {self.text}"


def known_values(ontology: Ontology) -> dict[str, frozenset]:
    """The values each name the policy can read is known to take."""
    channels = frozenset(signal_channels())
    return {"stage": frozenset(stage.id for stage in ontology.stages), "last_channel": channels,
            "preferred_channel": channels, **{name: frozenset(values) for name, values in PROFILE_VALUES.items()},
            **{name: frozenset((True, False)) for name in BOOLEAN_VALUES}}


def offered_actions(ontology: Ontology) -> frozenset[str]:
    """Every action the ontology offers: stage actions, defaults, escalations and session rules."""
    actions = set()
    for stage in ontology.stages:
        actions.update(stage.actions)
        actions.update(spec.action for spec in (stage.default_action, stage.anonymous_action) if spec is not None)
    actions.update(rule.action.action for rule in ontology.escalations)
    actions.update(rule.action.action for rule in ontology.session_rules)
    return frozenset(actions)


def never_fire(policy: Policy, ontology: Ontology) -> list[PolicyWarning]:
    """What in the policy refers to values that are never produced, in the order of the file's parts."""
    values, actions, channels = known_values(ontology), offered_actions(ontology), frozenset(signal_channels())
    found: list[PolicyWarning] = []
    for factor, (by, table, _) in policy.tables.items():
        known = {"action": actions, "channel": channels}.get(by)
        if known is not None:
            _unknown(found, f"arbitration {factor}", table, known, by)
    _unknown(found, "consent", policy.consent, channels, "channel")
    for cap in policy.caps:
        _unknown(found, f"contact cap {cap.id}", [cap.channel], channels | {ANY_CHANNEL}, "channel")
    if policy.quiet_hours is not None:
        _unknown(found, "quiet hours", policy.quiet_hours.channels, channels, "channel")
    _unknown(found, "complaint cooldown spares", policy.cooldown_spares, actions, "action")
    for rule in policy.eligibility:
        _eligibility(found, rule, values, actions)
    _unknown(found, "mandatory", policy.mandatory, actions, "action")
    return found


def _eligibility(found: list, rule, values: dict, actions: frozenset) -> None:
    part = f"eligibility rule {rule.id}"
    for condition in rule.conditions:
        reason = _never_holds(condition, values.get(condition.name))
        if reason:
            found.append(PolicyWarning(part, f"can never fire: {reason}"))
            return
    unknown = sorted(rule.actions - actions)
    if unknown and len(unknown) == len(rule.actions):
        found.append(PolicyWarning(part, f"can never fire: it suppresses only actions the ontology never offers "
                                         f"({', '.join(unknown)})"))
    elif unknown:
        found.append(PolicyWarning(part, f"suppresses actions the ontology never offers ({', '.join(unknown)})"))


def _never_holds(condition: Condition, known: frozenset | None) -> str | None:
    """Why the condition can never hold, where its name's values are known."""
    if known is None or condition.operator not in ("eq", "in"):
        return None
    wanted = [condition.operand] if condition.operator == "eq" else list(condition.operand)
    if any(value in known for value in wanted):
        return None
    shown = ", ".join(sorted(map(str, known))[:_SHOWN]) + (", ..." if len(known) > _SHOWN else "")
    return (f"{condition.name} is never {' or '.join(repr(v) for v in wanted)} "
            f"(the values it takes: {shown})")


def _unknown(found: list, part: str, names, known: frozenset, kind: str) -> None:
    unknown = sorted(str(name) for name in names if name not in known)
    if unknown:
        found.append(PolicyWarning(part, f"names {kind}s that never occur ({', '.join(unknown)})"))


__all__ = ["PolicyWarning", "never_fire", "known_values", "offered_actions"]
