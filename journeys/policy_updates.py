"""Live policy updates: the policy in force, and what each update on the control stream did.

A control stream carries policy files (a watched directory, or a Kafka topic where configured);
the job feeds it to Flink broadcast state, where each task keeps a PolicyInForce. An update is
applied only when it parses and its version is new; an invalid one is rejected with the reason
(file and line) and logged, and the policy in force stays. The decision in force at each moment
is therefore a function of the order of the control records, the same on every replay.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from journeys.policy import Policy, loads_policy
from journeys.yamlconf import ConfigError


@dataclass(frozen=True)
class UpdateResult:
    source: str
    accepted: bool
    version: str | None
    previous: str | None
    reason: str

    def to_record(self) -> dict:
        return {"kind": "policy_update", "source": self.source, "accepted": self.accepted, "version": self.version,
                "previous": self.previous, "reason": self.reason}


class PolicyInForce:
    def __init__(self, policy: Policy):
        self.policy = policy
        self.history: list[UpdateResult] = []

    def update(self, text: str, source: str) -> UpdateResult:
        previous = self.policy.version
        try:
            candidate = loads_policy(text, source)
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


class WatchedDirectory:
    """New policy files in a directory, in name order, each once (files ending .yaml or .yml;
    a file still being written should be written elsewhere and renamed in)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._seen: set[str] = set()

    def new_files(self) -> list[tuple[str, str]]:
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(self.directory.iterdir()):
            if path.suffix in (".yaml", ".yml") and path.name not in self._seen and path.is_file():
                self._seen.add(path.name)
                found.append((str(path), path.read_text()))
        return found
