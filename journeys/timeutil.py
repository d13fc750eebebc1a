"""Durations and timestamps as the rest of the project writes them: epoch milliseconds, UTC."""
from __future__ import annotations

import re
from datetime import datetime, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY

_UNITS = {"ms": 1, "s": SECOND, "m": MINUTE, "h": HOUR, "d": DAY, "w": WEEK}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")


def parse_duration(value: str | int | float) -> int:
    """'30m', '7d', '250ms' or a number of milliseconds, as milliseconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r} (use a number and a unit: ms, s, m, h, d or w, as in '30m')")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def format_duration(ms: int) -> str:
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def parse_instant(value: str | int) -> int:
    """An ISO-8601 instant ('2026-01-05T00:00:00Z') or epoch milliseconds, as epoch milliseconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is neither an ISO-8601 instant (2026-01-05T00:00:00Z) nor epoch milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def iso(ms: int) -> str:
    """The instant as ISO-8601 UTC; for one outside years 1 to 9999, which datetime cannot hold,
    a text that says so (it describes rejected input, so it must not raise on it)."""
    try:
        return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    except (ValueError, OverflowError, OSError):
        return "outside years 1 to 9999"


MAX_ZONE_NAME = 64  # the longest IANA name is about 30 characters


@lru_cache(maxsize=1024)
def zone(name: str) -> tzinfo | None:
    """The IANA time zone of that name, or None. Any name at all may come in a signal: a long one
    makes ZoneInfo raise OSError (file name too long), a directory IsADirectoryError, and so on."""
    if not name or len(name) > MAX_ZONE_NAME:
        return None
    try:
        return ZoneInfo(name)
    except Exception:  # noqa: BLE001 - whatever the lookup raises, the name is not a zone
        return None
