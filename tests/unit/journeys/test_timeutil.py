"""Instants and durations as the configuration and the command lines spell them."""
import pytest

from journeys.timeutil import parse_instant


def test_an_instant_is_read_from_iso_8601_or_from_epoch_milliseconds_alike():
    assert parse_instant("2026-01-05T00:00:00Z") == parse_instant("1767571200000") == 1767571200000
    assert parse_instant("2026-01-05T01:00:00+01:00") == 1767571200000
    assert parse_instant(1767571200000) == 1767571200000


def test_an_instant_that_is_neither_says_what_is_expected():
    with pytest.raises(ValueError, match="neither an ISO-8601 instant .* nor epoch milliseconds"):
        parse_instant("next tuesday")
