"""Live policy updates: the policy in force, and what each update on the control stream did.

A control stream carries policy files as JSON records (files in a watched directory, or a Kafka
topic where configured; `journeys policy publish` writes them, see pipelines.tools.policy_publish);
the job feeds it to Flink broadcast state, where each task keeps a PolicyInForce. An update is
applied only when it parses and its version is new; an invalid one is rejected with the reason
(file and line) and logged, and the policy in force stays. The decision in force at each moment
is therefore a function of the order of the control records, the same on every replay.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import orjson

from journeys.outputs import LogKind
from journeys.policy import Policy, loads_policy
from journeys.yamlconf import NO_ENVIRONMENT, ConfigError


@dataclass(frozen=True)
class UpdateResult:
    source: str
    accepted: bool
    version: str | None
    previous: str | None
    reason: str

    def to_record(self) -> dict:
        return {"kind": LogKind.POLICY_UPDATE, "source": self.source, "accepted": self.accepted, "version": self.version,
                "previous": self.previous, "reason": self.reason}


class PolicyInForce:
    def __init__(self, policy: Policy, env: Mapping[str, str] = NO_ENVIRONMENT):
        """env fills the ${...} references of the policies that arrive (see journeys.yamlconf)."""
        self.policy = policy
        self.env = env
        self.history: list[UpdateResult] = []

    def update(self, text: str, source: str) -> UpdateResult:
        previous = self.policy.version
        try:
            candidate = loads_policy(text, source, self.env)
        except ConfigError as error:
            result = UpdateResult(source, False, None, previous, f"rejected, {previous} stays in force: {error}")
        else:
            if candidate.name != self.policy.name:
                result = UpdateResult(source, False, candidate.version, previous,
                                      f"rejected: policy {candidate.name!r} is not {self.policy.name!r}")
            elif candidate.version == previous:
                result = UpdateResult(source, False, candidate.version, previous, f"version {previous} is already in force")
            else:
                self.policy = candidate
                result = UpdateResult(source, True, candidate.version, previous,
                                      f"policy {candidate.name} version {candidate.version} in force (was {previous})")
        self.history.append(result)
        return result

    def apply_record(self, line: str) -> UpdateResult:
        """One control-stream record; one that is not a policy update is rejected like an invalid policy."""
        try:
            source, text = read_update(line)
        except ValueError as error:
            result = UpdateResult("control stream", False, None, self.policy.version,
                                  f"rejected, {self.policy.version} stays in force: {error}")
            self.history.append(result)
            return result
        return self.update(text, source)


def update_record(text: str, source: str) -> str:
    """One policy update as a control-stream record: a JSON line with the policy file's text."""
    return orjson.dumps({"source": source, "policy": text}).decode()


def read_update(line: str) -> tuple[str, str]:
    """(source, policy text) of a control-stream record; ValueError when it is not one."""
    try:
        record = orjson.loads(line)
        return str(record["source"]), str(record["policy"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"not a policy update record (a JSON line with source and policy; "
                         f"use `journeys policy publish`): {line[:80]!r}") from None
