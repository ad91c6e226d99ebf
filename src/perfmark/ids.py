"""Prefixed, sortable, URL-safe identifiers (`cmp_01jd...`).

The layout is ULID's (48-bit millisecond timestamp then 80 random bits, Crockford base32,
lowercase) behind a short type prefix. It is written here rather than taken from a package
because click ids are minted on the redirect hot path, where this costs about a
microsecond, and because the prefix is part of the format.
"""

from __future__ import annotations

import os
import re
import time

__all__ = ["PREFIXES", "is_valid_id", "new_id", "id_timestamp_ms"]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_DECODE = {char: index for index, char in enumerate(_ALPHABET)}
_BODY_LENGTH = 26

#: The prefix of each kind of object; an id's prefix says what it names.
PREFIXES = frozenset(
    {
        "ws", "usr", "key", "adv", "pub", "off", "goal", "cmp", "lnk",
        "clk", "imp", "cnv", "evt", "cost", "txn", "inv", "stm", "pbk",
        "rule", "exp", "sess",
    }
)  # fmt: skip

_ID_PATTERN = re.compile(r"^([a-z]{2,5})_([0-9a-hjkmnp-tv-z]{26})$")


def _encode(value: int) -> str:
    chars = []
    for _ in range(_BODY_LENGTH):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str, *, now_ms: int | None = None) -> str:
    """Mint a new id with `prefix`; ids minted later sort after earlier ones (to the ms)."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}; known prefixes: {sorted(PREFIXES)}")
    millis = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    randomness = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_encode((millis << 80) | randomness)}"


def is_valid_id(value: str, prefix: str | None = None) -> bool:
    """Whether `value` is a well-formed id (of the given `prefix`, when one is given)."""
    match = _ID_PATTERN.match(value)
    if match is None or match.group(1) not in PREFIXES:
        return False
    return prefix is None or match.group(1) == prefix


def id_timestamp_ms(value: str) -> int:
    """The millisecond timestamp an id was minted at."""
    body = value.rsplit("_", 1)[-1]
    number = 0
    for char in body:
        number = (number << 5) | _DECODE[char]
    return number >> 80
