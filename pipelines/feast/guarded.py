"""A profile lookup that never holds a decision up for long: a small TTL cache, a time budget per
lookup and a circuit breaker. When the store is slow or down, decisions go on with the profile
defaults, say so, and are counted. This is the adapter's resilience, so it keeps the wall clock;
the core only sees the ProfileLookup it answers."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from journeys.features import CACHED, FALLBACK, MISSING, ONLINE, PROFILE_AS_OF, PROFILE_DEFAULTS, ProfileLookup


@dataclass
class LookupCounts:
    online: int = 0
    cache: int = 0
    missing: int = 0
    fallback: int = 0
    slow: int = 0
    errors: int = 0
    last_error: str | None = None


class GuardedProfiles:
    """A profile lookup behind a TTL cache, a per-lookup time budget and a circuit breaker.

    fetch(customer_id) returns the profile (with when it was written under PROFILE_AS_OF, where
    known), None when the store has none, or raises. A failure, or
    `slow_streak` lookups in a row over budget (one slow call is a hiccup, several are a slow
    store), open the breaker for `cooldown_s`: meanwhile lookups answer at once with defaults,
    and then the store is tried again."""

    def __init__(self, fetch: Callable[[str], dict | None], *, cache_ttl_s: float = 60.0, budget_ms: float = 20.0,
                 cooldown_s: float = 5.0, slow_streak: int = 3, clock: Callable[[], float] = time.monotonic,
                 max_cached: int = 100_000):
        self._fetch = fetch
        self._ttl = cache_ttl_s
        self._budget_s = budget_ms / 1000
        self._cooldown = cooldown_s
        self._clock = clock
        self._max_cached = max_cached
        self._cache: dict[str, tuple[float, dict | None]] = {}
        self._closed_at = 0.0
        self._slow_streak = slow_streak
        self._slow_in_a_row = 0
        self.counts = LookupCounts()

    def profile(self, customer_id: str) -> ProfileLookup:
        now = self._clock()
        cached = self._cache.get(customer_id)
        if cached is not None and now - cached[0] < self._ttl:
            self.counts.cache += 1
            return self._answer(cached[1], CACHED)
        if now < self._closed_at:
            self.counts.fallback += 1
            return ProfileLookup(dict(PROFILE_DEFAULTS), FALLBACK, "feature store unavailable, retried shortly")
        try:
            values = self._fetch(customer_id)
        except Exception as error:  # any store failure: the decision must go on without it
            self.counts.fallback += 1
            self.counts.errors += 1
            self.counts.last_error = f"{type(error).__name__}: {error}"[:200]
            self._closed_at = self._clock() + self._cooldown
            return ProfileLookup(dict(PROFILE_DEFAULTS), FALLBACK, f"feature store failed ({type(error).__name__})")
        finished = self._clock()
        if finished - now > self._budget_s:
            self.counts.slow += 1
            self._slow_in_a_row += 1
            if self._slow_in_a_row >= self._slow_streak:
                self._closed_at = finished + self._cooldown
                self._slow_in_a_row = 0
        else:
            self._slow_in_a_row = 0
        if len(self._cache) >= self._max_cached:
            self._cache.clear()
        self._cache[customer_id] = (finished, values)
        source = ONLINE
        if values is None:
            self.counts.missing += 1
        else:
            self.counts.online += 1
        return self._answer(values, source)

    @staticmethod
    def _answer(values: dict | None, source: str) -> ProfileLookup:
        if values is None:
            return ProfileLookup(dict(PROFILE_DEFAULTS), MISSING, "no profile in the feature store")
        if PROFILE_AS_OF in values:
            values = dict(values)
            return ProfileLookup(values, source, as_of=values.pop(PROFILE_AS_OF))
        return ProfileLookup(values, source)
