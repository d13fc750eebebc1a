"""Building the core: the intake and the two keyed roles, the same way for every runner (the
Flink operators, the Beam replay, the in-process reference). What the core must not find out for
itself comes in here: the policy in force, the clock, the profile store and the models."""
from __future__ import annotations

from typing import Callable

from journeys.contract import SignalDecoder
from journeys.features import ProfileSource
from journeys.intake import Intake
from journeys.keyed import CUSTOMER, VISITOR, KeyedJourneys
from journeys.ontology import Ontology
from journeys.policy import Policy
from journeys.policy_updates import PolicyInForce
from journeys.privacy import Masker
from journeys.scoring import ModelSource
from journeys.settings import JourneySettings
from journeys.timers import BOUNDED
from journeys.transitions import Transitions

ROLES = (VISITOR, CUSTOMER)


def build_intake(settings: JourneySettings, encoding: str = "json") -> Intake:
    return Intake(SignalDecoder(settings.intake, Masker(settings.privacy)), encoding)


def build_roles(ontology: Ontology, settings: JourneySettings, policy: Policy | PolicyInForce,
                clock: Callable[[], float], profiles: ProfileSource | None = None,
                models: ModelSource | None = None, push_features: bool = False,
                time_mode: str = BOUNDED) -> dict[str, KeyedJourneys]:
    """Both keyed roles, sharing one set of transitions. policy: the policy at start, or the
    PolicyInForce an operator updates. clock: seconds, for the decisions' latency budget.
    time_mode: how the keys' time moves (journeys.timers)."""
    in_force = policy if isinstance(policy, PolicyInForce) else PolicyInForce(policy)
    transitions = Transitions(ontology, settings, in_force, clock, profiles, models, push_features)
    return {role: KeyedJourneys(transitions, role, settings.dedupe_horizon_ms, settings.dedupe_max_ids,
                                settings.max_out_of_orderness_ms, time_mode)
            for role in ROLES}
