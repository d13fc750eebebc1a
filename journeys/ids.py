"""Deterministic ids: the same parts give the same id on every run and replay."""
from __future__ import annotations

import hashlib


def stable_id(prefix: str, *parts) -> str:
    text = "\x1f".join("" if part is None else str(part) for part in parts)
    return prefix + hashlib.blake2b(text.encode(), digest_size=10).hexdigest()
