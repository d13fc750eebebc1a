"""Consent the customer withdraws by a signal: an unsubscribe, an opt-out, a complaint that asks for
no contact (the ontology's consent_withdrawals).

A withdrawal takes effect in the journey's state as soon as the signal reaches it, late or not,
and overrides the profile's consent flags: the profile is a daily extract and says what the
customer wanted yesterday. Only a profile dated after the withdrawal gives the channel back.
"""
from __future__ import annotations

from journeys.ontology import ALL_CHANNELS, SIGNAL_CHANNEL, Ontology
from journeys.state import Journey

EVERY_CHANNEL = "*"  # a withdrawal of every channel the policy asks consent for


def withdrawn_by(signal: dict, ontology: Ontology) -> tuple[str, ...]:
    """The channels a signal withdraws consent for (EVERY_CHANNEL for all), or () when it withdraws none."""
    if signal["event_type"] not in ontology.withdrawal_types:
        return ()
    channels: set[str] = set()
    attributes = signal["attributes"]
    for rule in ontology.consent_withdrawals:
        if signal["event_type"] not in rule.on:
            continue
        if rule.when_attribute is not None and str(attributes.get(rule.when_attribute, "")).lower() not in ("true", "1", "yes"):
            continue
        if rule.channels == ALL_CHANNELS:
            channels.add(EVERY_CHANNEL)
        elif rule.channels == SIGNAL_CHANNEL:
            channels.add(str(attributes.get("channel") or signal["channel"]))
        else:
            channels.update(rule.channels)
    return tuple(sorted(channels))


def record_withdrawal(journey: Journey, signal: dict, ontology: Ontology) -> tuple[str, ...]:
    """Remember the signal's withdrawals in the journey; the channels it withdrew."""
    channels = withdrawn_by(signal, ontology)
    at = signal["event_time"]
    for channel in channels:
        journey.withdrawn[channel] = max(at, journey.withdrawn.get(channel, at))
    return channels


def withdrawn_channels(journey: Journey, profile_as_of: int | None, consent_channels) -> frozenset[str]:
    """The channels the customer has withdrawn consent for, unless a profile dated later (event
    time, ms) says otherwise. consent_channels: the channels the policy asks consent for, which a
    withdrawal of every channel covers."""
    withdrawn: set[str] = set()
    for channel, at in journey.withdrawn.items():
        if profile_as_of is not None and profile_as_of > at:
            continue
        withdrawn.update(consent_channels if channel == EVERY_CHANNEL else (channel,))
    return frozenset(withdrawn)
