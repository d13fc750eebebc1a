"""The interval statistics behind uplift and rollout gates, held to the worked examples of the
papers that define them (Newcombe 1998, Table II; Wilson's interval as tabulated there)."""
from __future__ import annotations

import pytest

from journeys.stats import difference_interval, rate_interval


@pytest.mark.parametrize("a, n, b, m, low, high", [
    (56, 70, 48, 80, 0.0524, 0.3339),
    (9, 10, 3, 10, 0.1705, 0.8090),
    (6, 7, 2, 7, 0.0582, 0.8062),
    (5, 56, 0, 29, -0.0381, 0.1926),
])
def test_the_difference_of_two_rates_has_newcombes_hybrid_score_interval(a, n, b, m, low, high):
    interval = difference_interval(a, n, b, m)

    assert (round(interval.low, 4), round(interval.high, 4)) == (low, high)


def test_a_rate_of_none_in_ten_has_wilsons_interval_which_stays_inside_zero_and_one():
    interval = rate_interval(0, 10)

    assert interval.low == 0.0 and round(interval.high, 4) == 0.2775


def test_a_difference_is_clear_only_when_its_interval_leaves_zero_out():
    assert difference_interval(56, 70, 48, 80).clear
    assert not difference_interval(5, 56, 0, 29).clear
    assert difference_interval(0, 80, 48, 80).clear  # clearly worse is clear too


def test_a_rate_of_nothing_is_refused():
    with pytest.raises(ValueError):
        rate_interval(0, 0)
