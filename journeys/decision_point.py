"""One decision point, in order: features, the latency budget, the models, the agents, the policy,
and the explained record, which the journey remembers (its contacts for the caps, its plans, and
the decisions outcomes may still be joined to).

The clock, the profile store and the models come from outside. The clock only measures the
latency budget (whether a model call still fits: the fast path) and the decision's own cost.
"""
from __future__ import annotations

from typing import Callable

from journeys.agents import FollowUp, Observation, follow_up_candidate, proposals
from journeys.consent import withdrawn_channels
from journeys.consistency import contact
from journeys.contract import DECISION_VERSION
from journeys.decision_record import explained_record
from journeys.features import CACHED, FALLBACK, ONLINE, NoProfiles, ProfileSource, activity_features
from journeys.ontology import Ontology
from journeys.outputs import Decision
from journeys.policy import Candidate, Context
from journeys.policy_updates import PolicyInForce
from journeys.scoring import NOT_SCORED, ModelSource, Scored, score_decision
from journeys.settings import JourneySettings
from journeys.state import Journey
from journeys.timeutil import DAY

MAX_CONTACTS = 32   # contacts remembered per journey, for the frequency caps
MAX_AWAITING = 32   # decisions per journey an outcome can still be joined to


def customer_zone(journey: Journey, features: dict) -> str:
    """The customer's time zone for quiet hours: what their own devices last reported, else the
    profile's, else UTC."""
    return journey.timezone or features.get("timezone") or "UTC"


def _arm_used(journey: Journey, at: int) -> str:
    """The identity that places the journey in its arm, remembered as decided in from `at` on."""
    arm = journey.arm_identity()
    if arm[0] is None or at < arm[0]:
        arm[0] = at
    return arm[2]


class DecisionPoint:
    def __init__(self, ontology: Ontology, settings: JourneySettings, policy: PolicyInForce, agents,
                 clock: Callable[[], float], profiles: ProfileSource | None = None, models: ModelSource | None = None):
        """clock: seconds (time.perf_counter, say). profiles: where profile features come from
        (none: no profile and no consent gate). models: the stage models decisions are scored
        with (none: rules alone)."""
        self.identified_channels = ontology.identified_channels
        self.policy = policy
        self.agents = agents
        self.clock = clock
        self.profiles = profiles or NoProfiles()
        self.models = models
        self.budget_ms = settings.latency_budget_ms
        self.override_confidence = settings.stage_override_confidence
        self.outcome_window_ms = settings.outcome_window_ms
        self.contact_memory_ms = max([cap.window_ms for cap in policy.policy.caps] + [7 * DAY])
        self._model_cost_ms = 0.0  # a running estimate of one model call, for the budget
        self._models_warm = False  # the first call loads and warms up: it says nothing of the next

    def decide(self, journey: Journey, trigger: str, event_id: str | None, at: int, rule_id: str, why: str,
               ingested_at: int | None, out: list, trigger_key: str | None = None,
               plan: FollowUp | None = None) -> None:
        started = self.clock()
        notes: list[str] = []
        features, source, profile_as_of = self._features(journey, at, notes)
        scored, fast_path = self._score(journey, trigger, features, source, started, notes)
        stage = scored.mapped_stage or journey.stage
        values = features | self._journey_values(journey, at)
        candidates, plans = self._candidates(journey, stage, trigger, at, values, scored, plan)
        if not candidates:
            return
        arm_key = _arm_used(journey, at)
        policy, rollout_arm = self.policy.policy_for(arm_key)
        withdrawn = withdrawn_channels(journey, profile_as_of, policy.consent) if journey.withdrawn else frozenset()
        context = Context(journey.key, at, customer_zone(journey, features), values,
                          tuple((c[0], c[1]) for c in journey.contacts), journey.complaint_at, withdrawn, arm_key)
        verdict = policy.decide(candidates, context, trigger)
        record = explained_record(verdict, journey=journey.key, customer_id=None if journey.anonymous else journey.key,
                                  trigger=trigger, event_ids=[event_id] if event_id else [], at=at, stage=journey.stage,
                                  policy_name=policy.name, trigger_key=trigger_key or event_id or f"{rule_id}@{at}")
        why_text = f"{why[0].upper()}{why[1:]}."
        if plan is not None:
            why_text += f" Planned by the {plan.agent} agent: {plan.reason}."
        record.update({
            "anonymous_id": journey.key if journey.anonymous else None, "event_id": event_id, "rule": rule_id,
            "mapped_stage": stage, "justification": " ".join([why_text, record["justification"], *notes]),
            "features": features, "feature_source": source, "models": list(scored.models), "shadow": list(scored.shadow),
            "fast_path": fast_path, "latency_ms": None, "decision_us": int((self.clock() - started) * 1_000_000),
            "rollout_arm": rollout_arm, "model_arm": scored.model_arm, "schema_version": DECISION_VERSION,
        })
        self._remember(journey, record, plans.get(verdict.chosen), at)
        out.append(Decision(record, ingested_at))

    def _features(self, journey: Journey, at: int, notes: list) -> tuple[dict, str, int | None]:
        """(features, where the profile came from, when the profile was written)."""
        features = activity_features(journey.activity, at)
        if journey.anonymous:
            return features, "none", None
        lookup = self.profiles.profile(journey.key)
        if lookup.defaulted:
            notes.append(f"Profile features: {lookup.note}; decided with defaults.")
        source = ONLINE if lookup.source == CACHED else lookup.source  # the same values, however fetched
        return lookup.values | features, source, lookup.as_of

    def _score(self, journey: Journey, trigger: str, features: dict, source: str, started: float,
               notes: list) -> tuple[Scored, bool]:
        """The models' answers, unless the features took so long that a model call would exceed the budget."""
        if self.models is None:
            slow = self.budget_ms and source == FALLBACK and (self.clock() - started) * 1000 > self.budget_ms
            return NOT_SCORED, bool(slow)
        spent_ms = (self.clock() - started) * 1000
        if self.budget_ms and spent_ms + self._model_cost_ms > self.budget_ms:
            notes.append(f"Fast path: {spent_ms:.0f} ms spent on features, a model call would exceed the "
                         f"{self.budget_ms:g} ms budget; decided on rules alone.")
            # Skipped calls measure nothing, so the estimate fades and a call is tried again: one
            # slow call must not keep a task on rules alone for good.
            self._model_cost_ms *= 0.8
            return NOT_SCORED, True
        before = self.clock()
        active = self.models.active()
        canary_key = self._canary_key(journey) if active.canaries else None  # a hash only where there is a canary
        scored = score_decision({"stage": journey.stage, "trigger": trigger, "features": features}, active,
                                self.override_confidence, canary_key)
        if scored.models or scored.shadow:
            if self._models_warm:
                self._model_cost_ms = 0.8 * self._model_cost_ms + 0.2 * (self.clock() - before) * 1000
            self._models_warm = True
        notes.extend(scored.notes)
        return scored, False

    def _canary_key(self, journey: Journey) -> str | None:
        """Who a model canary may score for: the identity that places the journey in its arm (read
        only, as no decision is made yet), and no one in the control group."""
        placed_by = (journey.arm or [None, None, journey.key])[2]
        return None if self.policy.policy.in_control_group(placed_by) else placed_by

    def _candidates(self, journey: Journey, stage: str, trigger: str, at: int, values: dict, scored: Scored,
                    plan: FollowUp | None) -> tuple[list[Candidate], dict]:
        """The candidates the policy chooses from, and the follow-up each would plan: a due plan's
        own action, or what the agents propose that the journey can receive."""
        if plan is not None:
            return [follow_up_candidate(plan)], {}
        seen = Observation(journey.key, journey.identified, stage, trigger, at, values, scored.propensity,
                           journey.complaint_open)
        offered = [p for p in proposals(seen, self.agents) if self._reachable(journey, p.candidate)]
        return [p.candidate for p in offered], {p.candidate: p.follow_up for p in offered if p.follow_up is not None}

    def _reachable(self, journey: Journey, candidate: Candidate) -> bool:
        return journey.identified or candidate.channel not in self.identified_channels

    @staticmethod
    def _journey_values(journey: Journey, at: int) -> dict:
        """What the policy's eligibility rules and the agents may read of the journey itself."""
        return {
            "stage": journey.stage, "identified": journey.identified,
            "contacts_7d": sum(1 for c in journey.contacts if at - c[0] < 7 * DAY),
            "open_complaint": journey.complaint_open,
            "escalated_7d": any(c[2] == "escalate_to_agent" and at - c[0] < 7 * DAY for c in journey.contacts),
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
        journey.contacts.append(contact(at, record["channel"], record["action"], record["decision_id"], journey.stage))
        if follow_up is not None:
            journey.plans.append(follow_up.to_wire())
