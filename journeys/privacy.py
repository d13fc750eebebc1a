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
import unicodedata
from dataclasses import dataclass, field

TREATMENTS = ("hash", "mask", "redact", "keep")
DETECTORS = ("email", "card", "phone")

# An e-mail address is a local part, "@" and a domain ending in a dot and two letters or more.
# The scan starts from each "@" and reads the local part backwards on the reversed text, so that
# no run of address characters is read more than once: a single pattern tried at every start
# (as before) read a run once per start, and a 62 KB signal of such runs took a second.
_LOCAL_PART_REVERSED = re.compile(r"[A-Za-z0-9._%+-]+")
_DOMAIN = re.compile(r"[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# The repetitions are bounded, so each start costs a few dozen steps at most. Each pattern opens
# with the characters a finding starts with, and looks behind only after them: the regex engine
# then skips to those characters at C speed instead of trying every position of a text.
# A card number: 13 to 19 digits, grouped by one or two spaces, or a dash, dot or slash with a
# space on either side or none, and standing apart from letters and digits (a UUID's digit
# groups, e62434e4-9e02-1747-4474-4835223bf49b, are not a card).
_CARD_LIKE = re.compile(r"\d(?<!\w\d)(?:(?: {1,2}| ?[-./] ?)?\d){12,18}(?!\w)")
# A phone number written as one: with a leading +, with an area code in parentheses, or as
# 3-3-4 digits with spaces, dots or dashes. Bare digit runs (order numbers) and dates are not.
_PHONE = re.compile(r"[+(\d](?<!\w[+(\d])(?:(?<=\+)\d[\d ()./-]{6,17}\d|(?<=\()\d{2,5}\)[ .-]?\d{2,4}[ .-]?\d{3,4}"
                    r"|(?<=\d)\d\d[ .-]\d{3}[ .-]\d{4})(?![\w])")
_URL_ENCODED_AT = re.compile(r"%40", re.IGNORECASE)
_NOT_DIGITS = re.compile(r"\D")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_PERSONAL_HINT = re.compile(r"[^@%+(]*[@%+(]|(?:\D*\d){10}")
# The same judgement for an engine that must key an id before intake reads it (the Flink job keys
# raw lines in the JVM): a regular expression that Java and Python read alike, found somewhere in
# every id in which the detectors could find personal data. It is the detectors' own patterns
# (an @ for the e-mail scan, card-like numbers whether or not they pass the Luhn check, phone
# numbers), and any character outside ASCII, which the detectors read as NFKC.
PERSONAL_ID_HINT = "|".join((r"[^\x00-\x7F]", "@", "%40", _CARD_LIKE.pattern, _PHONE.pattern))
# Findings one value may hold before it is redacted whole: a free text with more personal data
# than this is not worth keeping, and the bound keeps a hostile record's cost bounded too.
MAX_FINDINGS = 8
_PSEUDONYMS_KEPT = 65_536  # identifiers judged, kept so that a customer's next signal is judged at once
MAX_AT_SIGNS = 32  # "@" read in one value, e-mail or not, for the same reason
REDACTED = "[redacted]"
CARD_REDACTED = "[card]"


class _TooMany(Exception):
    pass


DEVELOPMENT_HASH_KEY = "dev-only-hash-key"  # the packaged configuration's default: known to everyone


@dataclass(frozen=True)
class PrivacySettings:
    hash_key: str
    attributes: dict[str, str] = field(default_factory=dict)
    scan_values: tuple[str, ...] = ("email", "card", "phone")
    scan_exempt: frozenset[str] = frozenset()
    pseudonymize_ids: bool = True  # ids in which the scan finds personal data become id tokens

    def __post_init__(self):
        for name, treatment in self.attributes.items():
            if treatment not in TREATMENTS:
                raise ValueError(f"privacy.attributes.{name}: unknown treatment {treatment!r}; use one of {', '.join(TREATMENTS)}")
        for detector in self.scan_values:
            if detector not in DETECTORS:
                raise ValueError(f"privacy.scan_values: unknown detector {detector!r}; use any of {', '.join(DETECTORS)}")
        if not self.hash_key:
            raise ValueError("privacy.hash_key is empty: set it (or the environment variable it names)")

    def key_warning(self) -> str | None:
        """What to say at start when the hash key is the one everybody knows."""
        if self.hash_key != DEVELOPMENT_HASH_KEY:
            return None
        return ("WARNING: privacy.hash_key is the development key, which is public: anyone can reverse the "
                "hashed e-mail addresses and ids of this run by hashing guesses. Set JOURNEYS_HASH_KEY (or "
                "privacy.hash_key in your journeys.yaml) to a secret of 32 random bytes or more (docs/contract.md).")


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
        self.pseudonymize_ids = settings.pseudonymize_ids
        self.pseudonyms: dict[str, str] = {}  # id -> itself or its pseudonym, for the ids judged lately

    def token(self, value: str) -> str:
        digest = hmac.new(self._key, value.strip().lower().encode(), hashlib.sha256).hexdigest()
        return "h:" + digest[:20]

    def id_token(self, value: str) -> str:
        """An identifier's pseudonym: keyed like token(), but of the exact id, since ids are told
        apart by case (two visitors "Ann@x.com" and "ann@x.com" stay two)."""
        return "p:" + hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:24]

    def finds(self, text: str) -> bool:
        """Whether the detectors find personal data in the text (whatever treatments are configured by name)."""
        return self._scan(text) != text

    def pseudonym(self, identifier: str) -> str:
        """The identifier itself, or its id token where the scan finds personal data in it."""
        known = self.pseudonyms.get(identifier)
        if known is None:
            personal = _could_be_personal(identifier) and self.finds(identifier)
            known = self.id_token(identifier) if personal else identifier
            if len(self.pseudonyms) >= _PSEUDONYMS_KEPT:
                self.pseudonyms.clear()
            self.pseudonyms[identifier] = known
        return known

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
            return self._scan_query(value) if "?" in value else value
        return self._scan(value)

    def _scan_query(self, value: str) -> str:
        """An exempt value's URL query and fragment are scanned all the same: ?email=... is common."""
        path, _, query = value.partition("?")
        scanned = self._scan(query)
        return value if scanned is query else f"{path}?{scanned}"

    def _apply(self, treatment: str, value: str) -> str:
        if treatment == "hash":
            return self.token(value)
        if treatment == "mask":
            return "*" * max(len(value) - 2, 1) + value[-2:] if len(value) > 2 else "**"
        if treatment == "redact":
            return REDACTED
        return value

    def _scan(self, value: str) -> str:
        """The value with what the detectors find treated; the value itself when they find nothing.
        They read it as NFKC (fullwidth ＠ and digits as their ASCII forms) with %40 as @."""
        text = value if value.isascii() else unicodedata.normalize("NFKC", value)
        if "%" in text:
            text = _URL_ENCODED_AT.sub("@", text)
        try:
            result = text
            if self._scan_email and "@" in result:
                result = self._hash_emails(result)
            if self._scan_card and len(result) >= 13:
                result = _bounded_sub(_CARD_LIKE, _card_or_keep, result)
            if self._scan_phone and len(result) >= 8:
                result = _bounded_sub(_PHONE, lambda m: self._apply("mask", m.group(0)), result)
        except _TooMany:
            return REDACTED
        return value if result == text else result

    def _hash_emails(self, text: str) -> str:
        """Each address hashed, as the pattern local@domain.tld read left to right would find them."""
        if text.count("@") > MAX_AT_SIGNS:
            raise _TooMany
        parts, done, reversed_text, length = [], 0, None, len(text)
        at = text.find("@")
        while at != -1:
            domain = _DOMAIN.match(text, at + 1)
            if domain is not None:
                if reversed_text is None:
                    reversed_text = text[::-1]
                # text[at - 1] is reversed_text[length - at]; the local part starts no earlier than `done`
                local = _LOCAL_PART_REVERSED.match(reversed_text, length - at, length - done)
                if local is not None:
                    if len(parts) == 2 * MAX_FINDINGS:
                        raise _TooMany
                    start = at - (local.end() - local.start())
                    parts += [text[done:start], self.token(text[start:domain.end()])]
                    done = domain.end()
                    at = text.find("@", done)
                    continue
            at = text.find("@", at + 1)
        return "".join(parts) + text[done:] if parts else text


def _could_be_personal(identifier: str) -> bool:
    """Whether the scan could find anything in an id at all: event ids are new on every signal, so
    most are judged here, without the detectors. A UUID never holds personal data; an ASCII id
    needs an @, %, + or ( or ten digits for any detector to fire."""
    if _UUID.fullmatch(identifier):
        return False
    return not identifier.isascii() or _PERSONAL_HINT.match(identifier) is not None


def _bounded_sub(pattern: re.Pattern, replace, text: str) -> str:
    parts, done = [], 0
    for count, match in enumerate(pattern.finditer(text)):
        if count == MAX_FINDINGS:
            raise _TooMany
        parts += [text[done:match.start()], replace(match)]
        done = match.end()
    return "".join(parts) + text[done:] if parts else text


def _card_or_keep(match: re.Match) -> str:
    digits = _NOT_DIGITS.sub("", match.group(0))
    return CARD_REDACTED if luhn_valid(digits) else match.group(0)
