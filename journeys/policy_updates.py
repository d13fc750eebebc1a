"""Live policy updates: the policy in force, and what each update on the control stream did.

A control stream carries policy files as JSON records (files in a watched directory, or a Kafka
topic where configured; `journeys policy publish` writes them, see pipelines.tools.policy_publish);
the job feeds it to Flink broadcast state, where each task keeps a PolicyInForce. An update is
applied only when it parses and its version is new; an invalid one is rejected with the reason
(file and line) and logged, and the policy in force stays. The decision in force at each moment
is therefore a function of the order of the control records, the same on every replay.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping

import orjson

from journeys.outputs import LogKind
from journeys.policy import Policy, loads_policy
from journeys.yamlconf import NO_ENVIRONMENT, ConfigError


CHAMPION, CANARY = "champion", "canary"  # the rollout arms a decision can be in


@dataclass(frozen=True)
class UpdateResult:
    source: str
    accepted: bool
    version: str | None
    previous: str | None
    reason: str
    canary_share: float | None = None  # for a canary update: the share it now acts for

    def to_record(self) -> dict:
        record = {"kind": LogKind.POLICY_UPDATE, "source": self.source, "accepted": self.accepted,
                  "version": self.version, "previous": self.previous, "reason": self.reason}
        return record if self.canary_share is None else record | {"canary_share": self.canary_share}


class PolicyInForce:
    """The policy in force and, while one is rolled out, a canary: a newer version that acts for a
    deterministic share of people (by hash of the identity that places them in their arm, like the
    control group, and never for anyone in the control group), while everyone else stays on the
    policy in force. A canary update names the share; the same version published without one
    promotes it, and a share of 0 stops it. A new policy in force ends any canary."""

    def __init__(self, policy: Policy, env: Mapping[str, str] = NO_ENVIRONMENT):
        """env fills the ${...} references of the policies that arrive (see journeys.yamlconf)."""
        self.policy = policy
        self.canary: Policy | None = None
        self.canary_share = 0.0
        self.env = env
        self.history: list[UpdateResult] = []
        self.records: dict[str, str] = {}  # the accepted records that make the state: CHAMPION's, CANARY's

    def policy_for(self, arm_key: str) -> tuple[Policy, str]:
        """The policy that decides for this identity, and its rollout arm."""
        canary = self.canary
        if canary is not None and not self.policy.in_control_group(arm_key) and in_canary(canary, arm_key, self.canary_share):
            return canary, CANARY
        return self.policy, CHAMPION

    def update(self, text: str, source: str) -> UpdateResult:
        previous = self.policy.version
        candidate, refusal = self._candidate(text, source)
        if refusal is not None:
            result = refusal
        elif candidate.version == previous:
            result = UpdateResult(source, False, candidate.version, previous, f"version {previous} is already in force")
        else:
            promoted = self.canary is not None and self.canary.version == candidate.version
            self.policy, self.canary, self.canary_share = candidate, None, 0.0
            result = UpdateResult(source, True, candidate.version, previous,
                                  f"policy {candidate.name} version {candidate.version} in force (was {previous}"
                                  f"{', its canary promoted' if promoted else ''})")
        self.history.append(result)
        return result

    def update_canary(self, text: str, source: str, share: float) -> UpdateResult:
        previous = self.policy.version
        candidate, refusal = self._candidate(text, source)
        if refusal is None and not 0 <= share < 1:
            refusal = UpdateResult(source, False, candidate.version, previous,
                                   f"rejected: a canary's share is in [0, 1), not {share}")
        if refusal is not None:
            result = refusal
        elif candidate.version == previous:
            result = UpdateResult(source, False, candidate.version, previous,
                                  f"version {previous} is already in force: no canary of it")
        elif share == 0:
            return self.stop_canary(candidate.version, source, "published with a share of 0")
        else:
            self.canary, self.canary_share = candidate, share
            result = UpdateResult(source, True, candidate.version, previous,
                                  f"policy {candidate.name} version {candidate.version} as a canary for {share:.0%} of "
                                  f"people; {previous} stays in force for the rest", share)
        self.history.append(result)
        return result

    def _candidate(self, text: str, source: str) -> tuple[Policy | None, UpdateResult | None]:
        """(the policy in the text, None), or (None, why it is refused)."""
        previous = self.policy.version
        try:
            candidate = loads_policy(text, source, self.env)
        except ConfigError as error:
            return None, UpdateResult(source, False, None, previous, f"rejected, {previous} stays in force: {error}")
        if candidate.name != self.policy.name:
            return None, UpdateResult(source, False, candidate.version, previous,
                                      f"rejected: policy {candidate.name!r} is not {self.policy.name!r}")
        return candidate, None

    def stop_canary(self, version: str, source: str, reason: str) -> UpdateResult:
        """A canary stopped by name: published with a share of 0, or by its gates (journeys.rollback)."""
        stopped = self.canary is not None and self.canary.version == version
        if stopped:
            self.canary, self.canary_share = None, 0.0
            self.records.pop(CANARY, None)
        said = (f"canary of version {version} stopped ({reason}); {self.policy.version} decides for everyone"
                if stopped else f"no canary of version {version} to stop ({reason})")
        result = UpdateResult(source, stopped, version, self.policy.version, said, 0.0)
        self.history.append(result)
        return result

    def apply_record(self, line: str) -> UpdateResult:
        """One control-stream record; one that is not a policy update is rejected like an invalid policy."""
        stop = read_stop(line)
        if stop is not None and stop.model is None:
            return self.stop_canary(stop.version, stop.source, stop.reason)
        if stop is not None:  # the job's model serving takes it (pipelines.flink.operators)
            return UpdateResult(stop.source, False, None, self.policy.version,
                                f"the stop of model {stop.model}'s canary version {stop.version}: no policy update")
        try:
            source, text, share = read_update(line)
        except ValueError as error:
            result = UpdateResult("control stream", False, None, self.policy.version,
                                  f"rejected, {self.policy.version} stays in force: {error}")
            self.history.append(result)
            return result
        result = self.update(text, source) if share is None else self.update_canary(text, source, share)
        if result.accepted:
            if share is None:
                self.records = {CHAMPION: line}
            elif self.canary is None:
                self.records.pop(CANARY, None)
            else:
                self.records[CANARY] = line
        return result

    def restore(self, records: Mapping[str, str | None]) -> None:
        """Bring back the state that `records` (as apply_record left them) made, after a restore. A
        canary record kept empty says there is none now: a canary in force from the start was
        stopped, promoted or ended since."""
        if records.get(CANARY) == "" and self.canary is not None:
            self.canary, self.canary_share = None, 0.0
            self.records.pop(CANARY, None)
        for arm in (CHAMPION, CANARY):
            if records.get(arm):
                self.apply_record(records[arm])


def in_canary(canary: Policy, identity: str, share: float) -> bool:
    """Whether the identity is in a canary's share: BLAKE2b of the canary's salt and the identity,
    drawn apart from the control group's hash, read as a number in [0, 1), below the share."""
    digest = hashlib.blake2b(f"canary\0{canary.control_salt}\0{identity}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2 ** 64 < share


def update_record(text: str, source: str, canary_share: float | None = None) -> str:
    """One policy update as a control-stream record: a JSON line with the policy file's text, and
    for a canary the share of people it acts for (0: stop it)."""
    record = {"source": source, "policy": text}
    return orjson.dumps(record if canary_share is None else record | {"canary": {"share": canary_share}}).decode()


def stop_record(version: str, source: str, reason: str) -> str:
    """A control-stream record that stops the policy canary of this version, whatever its text: what
    the job writes when the canary's gates fail (journeys.rollback)."""
    return orjson.dumps({"source": source, "stop_canary": {"version": version, "reason": reason}}).decode()


def model_stop_record(model: str, version: str, source: str, reason: str) -> str:
    """A control-stream record that stops the canary of a registered model's version: the job's
    tasks score with the champion for everyone again, whatever the registry's alias says."""
    return orjson.dumps({"source": source,
                         "stop_canary": {"model": model, "version": version, "reason": reason}}).decode()


@dataclass(frozen=True)
class Stop:
    version: str
    source: str
    reason: str
    model: str | None = None  # a model canary's registered name; None for the policy's


def read_stop(line: str) -> Stop | None:
    """The stop a stop record says; None for any other line."""
    try:
        record = orjson.loads(line)
        stop = record["stop_canary"]
        model = stop.get("model")
        return Stop(str(stop["version"]), str(record["source"]), str(stop["reason"]),
                    None if model is None else str(model))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None


def read_update(line: str) -> tuple[str, str, float | None]:
    """(source, policy text, canary share or None) of a control-stream record; ValueError when it is not one."""
    try:
        record = orjson.loads(line)
        source, text = str(record["source"]), str(record["policy"])
        canary = record.get("canary")
        share = None if canary is None else float(canary["share"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        raise ValueError(f"not a policy update record (a JSON line with source and policy, and optionally "
                         f"canary.share; use `journeys policy publish`): {line[:80]!r}") from None
    if share is not None and share != share:  # NaN
        raise ValueError(f"a canary's share is a number, not NaN: {line[:80]!r}")
    return source, text, share
