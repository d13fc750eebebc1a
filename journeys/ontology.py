"""The journey ontology: stages, the signals that move customers between them, and the actions
each stage offers. Loaded from YAML and checked completely at load, so a typo fails the job at
start with the file and line, not hours later on the first customer that hits it.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from journeys.contract import signal_channels
from journeys.timeutil import parse_duration
from journeys.yamlconf import ConfigError, loads_yaml, where

DEFAULT_ONTOLOGY = "retail"


@dataclass(frozen=True)
class ActionSpec:
    action: str
    channel: str


@dataclass(frozen=True)
class Stage:
    id: str
    label: str
    description: str
    rank: int
    actions: tuple[str, ...]
    default_action: ActionSpec | None
    anonymous_action: ActionSpec | None
    terminal: bool


@dataclass(frozen=True)
class SignalRule:
    id: str
    from_stages: frozenset[str] | None  # None: from any stage
    on: frozenset[str]
    to: str
    min_count_in_session: int


@dataclass(frozen=True)
class TimeRule:
    id: str
    from_stages: frozenset[str] | None
    to: str
    basis: str  # "inactivity": since the last signal; "in_stage": since entering the stage
    after_ms: int


@dataclass(frozen=True)
class EscalationRule:
    id: str
    on: frozenset[str]
    min_count: int
    within_ms: int | None
    action: ActionSpec
    cooldown_ms: int


@dataclass(frozen=True)
class ConsentWithdrawal:
    """Signals of these types withdraw consent for `channels`: a channel list, SIGNAL_CHANNEL (the
    channel named in the signal's attributes.channel, else the one it came on) or ALL_CHANNELS
    (every channel the policy asks consent for); with `when_attribute`, only signals whose
    attribute of that name is true."""

    on: frozenset[str]
    channels: str | frozenset[str]
    when_attribute: str | None


SIGNAL_CHANNEL = "signal"
ALL_CHANNELS = "all"


@dataclass(frozen=True)
class SessionRule:
    id: str
    stages: frozenset[str] | None
    session_has: frozenset[str]
    session_lacks: frozenset[str]
    action: ActionSpec


class Ontology:
    def __init__(self, *, name, version, stages, initial_stage, identified_channels, signals,
                 identify_signals, signal_rules, time_rules, escalations, session_rules, anonymous_expiry_ms,
                 timezone_channels=frozenset(), consent_withdrawals=()):
        self.name = name
        self.version = version
        self.stages: tuple[Stage, ...] = stages
        self.stage_by_id = {stage.id: stage for stage in stages}
        self.initial_stage: str = initial_stage
        self.identified_channels: frozenset[str] = identified_channels
        self.signals: dict[str, str] = signals
        self.identify_signals: frozenset[str] = identify_signals
        self.signal_rules: tuple[SignalRule, ...] = signal_rules
        self.time_rules: tuple[TimeRule, ...] = time_rules
        self.escalations: tuple[EscalationRule, ...] = escalations
        self.session_rules: tuple[SessionRule, ...] = session_rules
        self.anonymous_expiry_ms: int = anonymous_expiry_ms
        self.timezone_channels: frozenset[str] = timezone_channels
        self.consent_withdrawals: tuple[ConsentWithdrawal, ...] = consent_withdrawals
        self.withdrawal_types = frozenset().union(*(rule.on for rule in consent_withdrawals))
        self._signal_index = {
            (stage.id, signal): tuple(
                rule for rule in signal_rules
                if signal in rule.on and (rule.from_stages is None or stage.id in rule.from_stages)
            )
            for stage in stages for signal in signals
        }
        self._time_index = {
            stage.id: tuple(rule for rule in time_rules if rule.from_stages is None or stage.id in rule.from_stages)
            for stage in stages
        }
        self.escalation_types = frozenset().union(*(rule.on for rule in escalations)) if escalations else frozenset()
        # How many recent timestamps of each signal type the windowed escalation rules need.
        self.recent_depth: dict[str, int] = {}
        for rule in escalations:
            for signal in rule.on:
                self.recent_depth[signal] = max(self.recent_depth.get(signal, 0), rule.min_count)

    def signal_rules_for(self, stage: str, event_type: str) -> tuple[SignalRule, ...]:
        return self._signal_index.get((stage, event_type), ())

    def time_rules_for(self, stage: str) -> tuple[TimeRule, ...]:
        return self._time_index.get(stage, ())

    def rank(self, stage: str) -> int:
        return self.stage_by_id[stage].rank

    @property
    def stage_ids(self) -> tuple[str, ...]:
        return tuple(stage.id for stage in self.stages)


def packaged_ontology(name: str = DEFAULT_ONTOLOGY) -> Ontology:
    """An ontology packaged with the core (journeys/conf/ontology/<name>.yaml); files are read by pipelines.config."""
    text = resources.files("journeys.conf").joinpath("ontology", f"{name}.yaml").read_text()
    return parse_ontology(loads_yaml(text, f"journeys/conf/ontology/{name}.yaml"))


def parse_ontology(doc: Any) -> Ontology:
    if not isinstance(doc, dict):
        raise ConfigError("an ontology file must be a mapping with stages, signals and transitions")
    if "channel_consent" in doc:
        raise ConfigError(f"{where(doc, 'channel_consent')}: channel_consent has moved to the decision policy's "
                          f"`consent` (docs/policy.md)")
    _only_keys(doc, {"ontology", "version", "initial_stage", "stages", "identified_channels", "signals",
                     "identify_signals", "transitions", "escalations", "session_rules", "lifecycle",
                     "timezone_channels", "consent_withdrawals"}, "the ontology")
    stages = _parse_stages(doc)
    stage_ids = {stage.id for stage in stages}
    signals = _parse_signals(doc)
    initial = doc.get("initial_stage", stages[0].id)
    if initial not in stage_ids:
        raise ConfigError(f"{where(doc, 'initial_stage')}: initial_stage {initial!r} is not a stage ({', '.join(sorted(stage_ids))})")
    identify = frozenset(_names(doc, "identify_signals", signals, "identify_signals"))
    signal_rules, time_rules = _parse_transitions(doc, stage_ids, signals)
    _refuse_time_rule_cycles(doc, time_rules)
    lifecycle = doc.get("lifecycle") or {}
    _only_keys(lifecycle, {"anonymous_expiry"}, "lifecycle")
    return Ontology(
        name=str(doc.get("ontology", "unnamed")),
        version=doc.get("version", 1),
        stages=stages,
        initial_stage=initial,
        identified_channels=frozenset(doc.get("identified_channels") or ()),
        signals=signals,
        identify_signals=identify,
        signal_rules=signal_rules,
        time_rules=time_rules,
        escalations=_parse_escalations(doc, signals),
        session_rules=_parse_session_rules(doc, stage_ids, signals),
        anonymous_expiry_ms=_duration(lifecycle, "anonymous_expiry", "30d"),
        timezone_channels=frozenset(_channels(doc, "timezone_channels")),
        consent_withdrawals=_parse_withdrawals(doc, signals),
    )


def _parse_stages(doc) -> tuple[Stage, ...]:
    raw_stages = doc.get("stages")
    if not raw_stages:
        raise ConfigError(f"{where(doc, 'stages')}: the ontology needs at least one stage")
    stages, seen = [], set()
    for rank, raw in enumerate(raw_stages):
        if not isinstance(raw, dict) or "id" not in raw:
            raise ConfigError(f"{where(raw_stages, rank)}: each stage needs an id")
        _only_keys(raw, {"id", "label", "description", "actions", "default_action", "anonymous_action", "terminal"}, f"stage {raw['id']}")
        stage_id = str(raw["id"])
        if stage_id in seen:
            raise ConfigError(f"{where(raw, 'id')}: stage {stage_id!r} is defined twice")
        seen.add(stage_id)
        actions = tuple(str(a) for a in (raw.get("actions") or ()))
        default = _action(raw, "default_action")
        anonymous = _action(raw, "anonymous_action")
        for key, spec in (("default_action", default), ("anonymous_action", anonymous)):
            if spec is not None and actions and spec.action not in actions:
                raise ConfigError(f"{where(raw, key)}: {key} {spec.action!r} is not among the stage's actions {list(actions)}")
        stages.append(Stage(stage_id, str(raw.get("label", stage_id)), str(raw.get("description", "")), rank,
                            actions, default, anonymous, bool(raw.get("terminal", False))))
    return tuple(stages)


def _parse_signals(doc) -> dict[str, str]:
    raw = doc.get("signals")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where(doc, 'signals')}: 'signals' must map each signal type to a category")
    return {str(name): str(category) for name, category in raw.items()}


def _parse_transitions(doc, stage_ids, signals):
    signal_rules, time_rules, seen = [], [], set()
    for index, raw in enumerate(doc.get("transitions") or ()):
        here = where(doc.get("transitions"), index)
        if not isinstance(raw, dict) or "id" not in raw or "to" not in raw:
            raise ConfigError(f"{here}: each transition needs an id and a 'to' stage")
        _only_keys(raw, {"id", "from", "on", "to", "min_count_in_session", "after_in_stage", "after_inactivity"}, f"transition {raw['id']}")
        rule_id = str(raw["id"])
        if rule_id in seen:
            raise ConfigError(f"{where(raw, 'id')}: transition id {rule_id!r} is used twice")
        seen.add(rule_id)
        target = raw["to"]
        if target not in stage_ids:
            raise ConfigError(f"{where(raw, 'to')}: transition {rule_id}: 'to' stage {target!r} is not a stage")
        from_stages = _stages(raw, "from", stage_ids, rule_id)
        timed = [key for key in ("after_in_stage", "after_inactivity") if key in raw]
        if "on" in raw and timed:
            raise ConfigError(f"{where(raw, 'on')}: transition {rule_id} has both 'on' and '{timed[0]}'; a rule is either a signal rule or a time rule")
        if len(timed) > 1:
            raise ConfigError(f"{where(raw, timed[1])}: transition {rule_id}: use after_in_stage or after_inactivity, not both")
        if timed:
            basis = "in_stage" if timed[0] == "after_in_stage" else "inactivity"
            time_rules.append(TimeRule(rule_id, from_stages, target, basis, _duration(raw, timed[0], None)))
        elif "on" in raw:
            on = frozenset(_names(raw, "on", signals, f"transition {rule_id}"))
            minimum = int(raw.get("min_count_in_session", 1))
            signal_rules.append(SignalRule(rule_id, from_stages, on, target, minimum))
        else:
            raise ConfigError(f"{here}: transition {rule_id} needs 'on' (signals) or 'after_in_stage'/'after_inactivity' (time)")
    return tuple(signal_rules), tuple(time_rules)


def _parse_escalations(doc, signals) -> tuple[EscalationRule, ...]:
    rules = []
    for index, raw in enumerate(doc.get("escalations") or ()):
        if not isinstance(raw, dict) or "id" not in raw or "action" not in raw:
            raise ConfigError(f"{where(doc.get('escalations'), index)}: each escalation needs an id and an action")
        _only_keys(raw, {"id", "on", "min_count", "within", "action", "cooldown"}, f"escalation {raw['id']}")
        within = _duration(raw, "within", None) if "within" in raw else None
        rules.append(EscalationRule(str(raw["id"]), frozenset(_names(raw, "on", signals, f"escalation {raw['id']}")),
                                    int(raw.get("min_count", 1)), within, _action(raw, "action"),
                                    _duration(raw, "cooldown", "0ms")))
    return tuple(rules)


def _parse_session_rules(doc, stage_ids, signals) -> tuple[SessionRule, ...]:
    rules = []
    for index, raw in enumerate(doc.get("session_rules") or ()):
        if not isinstance(raw, dict) or "id" not in raw or "action" not in raw:
            raise ConfigError(f"{where(doc.get('session_rules'), index)}: each session rule needs an id and an action")
        _only_keys(raw, {"id", "stages", "session_has", "session_lacks", "action"}, f"session rule {raw['id']}")
        rules.append(SessionRule(str(raw["id"]), _stages(raw, "stages", stage_ids, raw["id"]),
                                 frozenset(_names(raw, "session_has", signals, f"session rule {raw['id']}", required=False)),
                                 frozenset(_names(raw, "session_lacks", signals, f"session rule {raw['id']}", required=False)),
                                 _action(raw, "action")))
    return tuple(rules)


def _parse_withdrawals(doc, signals) -> tuple[ConsentWithdrawal, ...]:
    rules = []
    for index, raw in enumerate(doc.get("consent_withdrawals") or ()):
        if not isinstance(raw, dict) or "on" not in raw or "channels" not in raw:
            raise ConfigError(f"{where(doc.get('consent_withdrawals'), index)}: a consent withdrawal needs `on` "
                              f"(signals) and `channels` ({SIGNAL_CHANNEL}, {ALL_CHANNELS} or a list)")
        _only_keys(raw, {"on", "channels", "when_attribute"}, "a consent withdrawal")
        channels = raw["channels"]
        if channels not in (SIGNAL_CHANNEL, ALL_CHANNELS):
            channels = frozenset(_channels(raw, "channels"))
        attribute = raw.get("when_attribute")
        rules.append(ConsentWithdrawal(frozenset(_names(raw, "on", signals, "a consent withdrawal")), channels,
                                       None if attribute is None else str(attribute)))
    return tuple(rules)


def _channels(mapping, key) -> list[str]:
    channels = signal_channels()
    raw = mapping.get(key) or []
    names = [raw] if isinstance(raw, str) else [str(n) for n in raw]
    for name in names:
        if name not in channels:
            raise ConfigError(f"{where(mapping, key)}: {key}: {name!r} is not a channel ({', '.join(channels)})")
    return names


def _refuse_time_rule_cycles(doc, time_rules) -> None:
    """Time rules that lead back to where they started would move a quiet journey round forever."""
    edges: dict[str, set[str]] = {}
    for rule in time_rules:
        for source in rule.from_stages or {s["id"] for s in doc["stages"]}:
            if source != rule.to:
                edges.setdefault(source, set()).add(rule.to)
    for start in edges:
        stack, seen = [start], set()
        while stack:
            stage = stack.pop()
            for following in edges.get(stage, ()):
                if following == start:
                    raise ConfigError(f"{where(doc, 'transitions')}: time rules form a cycle through stage {start!r}; "
                                      "a journey with no signals would move round it forever")
                if following not in seen:
                    seen.add(following)
                    stack.append(following)
    for rule in time_rules:
        if rule.after_ms <= 0:
            raise ConfigError(f"{where(doc, 'transitions')}: time rule {rule.id} must wait a positive time")


def _only_keys(mapping, allowed: set, what: str) -> None:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{what} must be a mapping")
    for key in mapping:
        if key not in allowed:
            raise ConfigError(f"{where(mapping, key)}: unknown key {key!r} in {what}; expected one of {', '.join(sorted(allowed))}")


def _action(mapping, key) -> ActionSpec | None:
    raw = mapping.get(key)
    if raw is None:
        return None
    if not isinstance(raw, dict) or "action" not in raw or "channel" not in raw:
        raise ConfigError(f"{where(mapping, key)}: {key} needs 'action' and 'channel'")
    _only_keys(raw, {"action", "channel"}, key)
    return ActionSpec(str(raw["action"]), str(raw["channel"]))


def _stages(mapping, key, stage_ids, rule_id) -> frozenset[str] | None:
    raw = mapping.get(key, "*")
    if raw == "*":
        return None
    names = [raw] if isinstance(raw, str) else list(raw)
    for name in names:
        if name not in stage_ids:
            raise ConfigError(f"{where(mapping, key)}: {rule_id}: {key} stage {name!r} is not a stage ({', '.join(sorted(stage_ids))})")
    return frozenset(names)


def _names(mapping, key, signals, what, required=True) -> list[str]:
    raw = mapping.get(key)
    if raw is None:
        if required:
            raise ConfigError(f"{where(mapping)}: {what} needs '{key}'")
        return []
    names = [raw] if isinstance(raw, str) else [str(n) for n in raw]
    for name in names:
        if name not in signals:
            raise ConfigError(f"{where(mapping, key)}: {what}: signal {name!r} is not in the ontology's signals")
    return names


def _duration(mapping, key, default) -> int:
    raw = mapping.get(key, default)
    try:
        return parse_duration(raw)
    except ValueError as error:
        raise ConfigError(f"{where(mapping, key)}: {key}: {error}") from None
