"""Guarded profile lookups (pipelines.feast.guarded): the Feast wing's cache, time budget and
circuit breaker, on a clock and a store the tests control."""
import pytest

from journeys.features import CACHED, FALLBACK, MISSING, ONLINE, PROFILE_DEFAULTS
from pipelines.feast.guarded import GuardedProfiles

PROFILE = dict(PROFILE_DEFAULTS, lifetime_value=420.0, segment="loyal", consent_email=True)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Store:
    """A profile store that can be slow or down, with a clock it advances when it takes time."""

    def __init__(self, clock, profiles):
        self.clock, self.profiles, self.calls, self.delay, self.down = clock, profiles, 0, 0.0, False

    def fetch(self, customer_id):
        self.calls += 1
        self.clock.now += self.delay
        if self.down:
            raise ConnectionError("connection refused")
        return self.profiles.get(customer_id)


@pytest.fixture
def clock():
    return Clock()


def guarded(clock, store, **options):
    return GuardedProfiles(store.fetch, clock=clock, cache_ttl_s=60, budget_ms=20, cooldown_s=5, **options)


def test_a_profile_is_read_once_then_served_from_the_cache_until_it_expires(clock):
    store = Store(clock, {"c-1": PROFILE})
    profiles = guarded(clock, store)
    assert profiles.profile("c-1").source == ONLINE
    assert profiles.profile("c-1").source == CACHED
    clock.now += 61
    assert profiles.profile("c-1").source == ONLINE
    assert store.calls == 2 and (profiles.counts.online, profiles.counts.cache) == (2, 1)


def test_a_customer_without_a_profile_gets_defaults_and_is_counted_as_missed(clock):
    profiles = guarded(clock, Store(clock, {}))
    lookup = profiles.profile("c-9")
    assert lookup.source == MISSING and lookup.values == PROFILE_DEFAULTS and lookup.defaulted
    assert profiles.counts.missing == 1


def test_a_failing_store_opens_the_breaker_so_decisions_do_not_wait_on_it(clock):
    store = Store(clock, {"c-1": PROFILE})
    store.down = True
    profiles = guarded(clock, store)
    first = profiles.profile("c-1")
    assert first.source == FALLBACK and "ConnectionError" in first.note
    assert profiles.profile("c-2").source == FALLBACK and store.calls == 1  # the breaker answered
    store.down = False
    clock.now += 6
    assert profiles.profile("c-2").source == MISSING and store.calls == 2
    assert profiles.counts.fallback == 2 and profiles.counts.errors == 1


def test_one_slow_lookup_is_tolerated_but_a_slow_store_opens_the_breaker(clock):
    store = Store(clock, {f"c-{i}": PROFILE for i in range(10)})
    profiles = guarded(clock, store)
    store.delay = 0.05  # 50 ms, over the 20 ms budget
    assert profiles.profile("c-1").source == ONLINE
    store.delay = 0.0
    assert profiles.profile("c-2").source == ONLINE  # a fast one resets the streak
    store.delay = 0.05
    for name in ("c-3", "c-4", "c-5"):
        assert profiles.profile(name).source == ONLINE
    assert profiles.profile("c-6").source == FALLBACK
    assert profiles.counts.slow == 4
