"""Features the agents decide with, without a feature-store client in sight.

- Profile features (lifetime value, segment, tenure, preferred channel, consent) come from
  outside, through a ProfileSource: the Feast online store in the job (pipelines.feast), a
  table of profiles in tests and replays.
- Behavioural features (activity in the last hour and day, cart value, last channel, support
  contacts in 7 days) are computed here from the journey itself, so decisions stay a function of
  the signals; the job also pushes them to Feast for everyone else.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Protocol

PROFILE_DEFAULTS = {
    "lifetime_value": 0.0,
    "segment": "unknown",
    "tenure_days": 0,
    "preferred_channel": None,
    # Unknown consent is no consent.
    "consent_email": False,
    "consent_sms": False,
    "consent_push": False,
    # The customer's own time zone as the CRM has it; their devices' latest report wins over it.
    "timezone": None,
}
# The values a categorical profile feature takes, where the feature definitions declare them
# (features/feature_views.py tags the field with them): `journeys policy check` warns about rules
# on any other value, which could never fire.
PROFILE_VALUES = {"segment": ("casual", "bargain_hunter", "loyal", "high_touch", "lapsing", "unknown")}
# Values that are only ever true or false: profile consent flags and what the journey tells.
BOOLEAN_VALUES = ("consent_email", "consent_sms", "consent_push", "identified", "open_complaint", "escalated_7d")
# The key under which a profile source hands over when its profile was written (event time, ms),
# beside the values: consent withdrawn by a signal holds until a later profile (journeys.consent).
PROFILE_AS_OF = "profile_as_of"
ACTIVITY_FEATURES = ("events_last_hour", "events_last_day", "cart_value", "last_channel", "support_contacts_7d")

# Where the values of a lookup came from.
ONLINE = "online"        # read from the online store just now
CACHED = "cache"         # read from the online store recently
MISSING = "missing"      # the store answered, but has no profile for this customer: defaults
FALLBACK = "fallback"    # the store was down, slow or failing: defaults
DISABLED = "disabled"    # no feature store in use


@dataclass(frozen=True)
class ProfileLookup:
    values: dict
    source: str
    note: str | None = None
    as_of: int | None = None  # when the profile was written (event time, ms), where the source knows

    @property
    def defaulted(self) -> bool:
        return self.source in (MISSING, FALLBACK)


class ProfileSource(Protocol):
    def profile(self, customer_id: str) -> ProfileLookup: ...


class NoProfiles:
    """No feature store: decisions use no profile and no consent gate."""

    def profile(self, customer_id: str) -> ProfileLookup:
        return ProfileLookup({}, DISABLED)


class StaticProfiles:
    """Profiles from a table (a profile parquet, say): for tests and replays."""

    def __init__(self, rows: Iterable[dict]):
        self._rows = {row["customer_id"]: ({k: row.get(k, v) for k, v in PROFILE_DEFAULTS.items()},
                                           epoch_ms(row.get("event_timestamp"))) for row in rows}

    def profile(self, customer_id: str) -> ProfileLookup:
        found = self._rows.get(customer_id)
        if found is None:
            return ProfileLookup(dict(PROFILE_DEFAULTS), MISSING)
        return ProfileLookup(found[0], ONLINE, as_of=found[1])


def epoch_ms(value) -> int | None:
    """A profile row's timestamp (a datetime, or ms since the epoch) in ms."""
    if value is None or isinstance(value, int):
        return value
    return int(value.timestamp() * 1000)


@dataclass(slots=True)
class Activity:
    """The journey's recent activity, kept compact: events per hour for the last day, the cart
    since the last purchase, the last channel, and support contacts of the last week."""

    hours: list[list[int]] = field(default_factory=list)  # [hour since epoch, events]
    cart_value: float = 0.0
    last_channel: str | None = None
    contacts: list[int] = field(default_factory=list)  # event times of support contacts

    def to_wire(self) -> list:
        return [self.hours, self.cart_value, self.last_channel, self.contacts]

    @classmethod
    def from_wire(cls, wire: list | None) -> "Activity":
        if not wire:
            return cls()
        hours, cart_value, last_channel, contacts = wire
        # Refuse a cart value that is not a finite number: a build before intake checked numbers
        # stored NaN, which the JSON codec writes as null, and every later sum would raise.
        if type(cart_value) not in (int, float) or not math.isfinite(cart_value):
            cart_value = 0.0
        return cls(hours, cart_value, last_channel, contacts)


HOUR = 3_600_000
WEEK = 7 * 24 * HOUR
SUPPORT_CATEGORIES = frozenset({"service", "complaint"})


def record_activity(activity: Activity, at: int, channel: str, event_type: str, category: str | None,
                    attributes: dict, newest: bool = True) -> None:
    """newest: the signal is the journey's latest so far (else an older one arriving late, within the bound)."""
    hour = at // HOUR
    hours = activity.hours
    if hours and hours[-1][0] == hour:
        hours[-1][1] += 1
    elif not hours or hours[-1][0] < hour:
        hours.append([hour, 1])
        if len(hours) > 25:
            del hours[0]
    else:  # out of order within the bound: count it in its own hour
        for bucket in hours:
            if bucket[0] == hour:
                bucket[1] += 1
                break
        else:
            hours.append([hour, 1])
            hours.sort()
            del hours[:-25]
    if newest:
        activity.last_channel = channel
    if event_type == "purchase":
        activity.cart_value = 0.0
    elif category == "cart":
        try:
            amount = float(attributes.get("cart_value", 0) or 0)
        except ValueError:
            amount = 0.0
        if not math.isfinite(amount):  # intake rejects these; a replayed archive may predate that
            amount = 0.0
        activity.cart_value = round(activity.cart_value + amount if event_type != "remove_from_cart"
                                    else max(0.0, activity.cart_value - amount), 2)
    if category in SUPPORT_CATEGORIES:
        activity.contacts = sorted([t for t in activity.contacts if t > at - WEEK] + [at])[-16:]


def activity_features(activity: Activity, at: int) -> dict:
    hour = at // HOUR
    return {
        "events_last_hour": sum(count for h, count in activity.hours if h == hour),
        "events_last_day": sum(count for h, count in activity.hours if h > hour - 24),
        "cart_value": activity.cart_value,
        "last_channel": activity.last_channel,
        "support_contacts_7d": sum(1 for t in activity.contacts if t > at - WEEK),
    }
