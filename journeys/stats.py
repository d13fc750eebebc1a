"""Interval statistics for rates compared between two groups: the uplift of an action against the
control group, and the figures a rollout gate compares between a canary and the rest.

Both use the same intervals, so that a figure called clear in one place is clear in the other:
- a rate's interval is Wilson's score interval, which stays inside [0, 1] and keeps its coverage
  for small groups and rates near 0 or 1, where the normal approximation does not;
- a difference of two rates has Newcombe's hybrid score interval (his method 10, Statistics in
  Medicine 1998), built from the two Wilson intervals. A difference is *clear* when its interval
  leaves zero out; otherwise the groups may differ only by chance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054  # the two-sided 95% point of the standard normal


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    @property
    def clear(self) -> bool:
        """True when zero lies outside the interval: the sign of the estimate is not chance."""
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        return {"estimate": round(self.estimate, 4), "low": round(self.low, 4), "high": round(self.high, 4),
                "clear": self.clear}


def rate_interval(successes: int, trials: int, z: float = Z_95) -> Interval:
    """Wilson's score interval of successes / trials (trials > 0)."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"a rate needs 0 <= successes <= trials and trials > 0, not {successes} of {trials}")
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def difference_interval(successes_a: int, trials_a: int, successes_b: int, trials_b: int,
                        z: float = Z_95) -> Interval:
    """Newcombe's hybrid score interval of rate a minus rate b."""
    a, b = rate_interval(successes_a, trials_a, z), rate_interval(successes_b, trials_b, z)
    d = a.estimate - b.estimate
    low = d - math.sqrt((a.estimate - a.low) ** 2 + (b.high - b.estimate) ** 2)
    high = d + math.sqrt((a.high - a.estimate) ** 2 + (b.estimate - b.low) ** 2)
    return Interval(d, low, high)


__all__ = ["Interval", "rate_interval", "difference_interval", "Z_95"]
