"""Masking of sensitive attribute values at intake, before anything is stored or emitted.

Attributes named in config get their configured treatment; every other value is scanned for
e-mail addresses and card-like numbers (and phone numbers, where switched on).

- hash:   a keyed HMAC-SHA256, so the same value always maps to the same token (joins still
          work) but cannot be reversed without the key.
- mask:   keep the last two characters, replace the rest.
- redact: replace the whole value.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field

TREATMENTS = ("hash", "mask", "redact", "keep")
DETECTORS = ("email", "card", "phone")

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_CARD_LIKE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_PHONE = re.compile(r"(?<![\w])\+?\d[\d ()-]{6,17}\d(?![\w])")
REDACTED = "[redacted]"
CARD_REDACTED = "[card]"


@dataclass(frozen=True)
class PrivacySettings:
    hash_key: str
    attributes: dict[str, str] = field(default_factory=dict)
    scan_values: tuple[str, ...] = ("email", "card")
    scan_exempt: frozenset[str] = frozenset()

    def __post_init__(self):
        for name, treatment in self.attributes.items():
            if treatment not in TREATMENTS:
                raise ValueError(f"privacy.attributes.{name}: unknown treatment {treatment!r}; use one of {', '.join(TREATMENTS)}")
        for detector in self.scan_values:
            if detector not in DETECTORS:
                raise ValueError(f"privacy.scan_values: unknown detector {detector!r}; use any of {', '.join(DETECTORS)}")
        if not self.hash_key:
            raise ValueError("privacy.hash_key is empty: set it (or the environment variable it names)")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


class Masker:
    def __init__(self, settings: PrivacySettings):
        self._key = settings.hash_key.encode()
        self._by_name = {name.lower(): treatment for name, treatment in settings.attributes.items()}
        self._exempt = {name.lower() for name in settings.scan_exempt}
        self._scan_email = "email" in settings.scan_values
        self._scan_card = "card" in settings.scan_values
        self._scan_phone = "phone" in settings.scan_values

    def token(self, value: str) -> str:
        digest = hmac.new(self._key, value.strip().lower().encode(), hashlib.sha256).hexdigest()
        return "h:" + digest[:20]

    def mask_attributes(self, attributes: dict[str, str]) -> dict[str, str]:
        """A copy of attributes with sensitive values treated; the input is not changed."""
        if not attributes:
            return attributes
        masked = None
        for name, value in attributes.items():
            treated = self._treat(name, value)
            if treated is not value:
                if masked is None:
                    masked = dict(attributes)
                masked[name] = treated
        return attributes if masked is None else masked

    def _treat(self, name: str, value: str) -> str:
        treatment = self._by_name.get(name.lower())
        if treatment is not None:
            return self._apply(treatment, value)
        if name.lower() in self._exempt:
            return value
        return self._scan(value)

    def _apply(self, treatment: str, value: str) -> str:
        if treatment == "hash":
            return self.token(value)
        if treatment == "mask":
            return "*" * max(len(value) - 2, 1) + value[-2:] if len(value) > 2 else "**"
        if treatment == "redact":
            return REDACTED
        return value

    def _scan(self, value: str) -> str:
        result = value
        if self._scan_email and "@" in result:
            result = _EMAIL.sub(lambda m: self.token(m.group(0)), result)
        if self._scan_card and len(result) >= 13:
            result = _CARD_LIKE.sub(self._card_or_keep, result)
        if self._scan_phone and len(result) >= 8:
            result = _PHONE.sub(lambda m: self._apply("mask", m.group(0)), result)
        return value if result == value else result

    @staticmethod
    def _card_or_keep(match: re.Match) -> str:
        digits = re.sub(r"[ -]", "", match.group(0))
        return CARD_REDACTED if luhn_valid(digits) else match.group(0)
