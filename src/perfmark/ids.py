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
_TIMESTAMP_BITS = 48
_RANDOM_BYTES = 10
#: One past the largest millisecond timestamp the layout holds (the year 10889).
_TIMESTAMP_LIMIT_MS = 1 << _TIMESTAMP_BITS

#: The prefix of each kind of object; an id's prefix says what it names.
PREFIXES = frozenset(
    {
        "ws", "usr", "key", "adv", "pub", "off", "goal", "cmp", "lnk",
        "clk", "imp", "cnv", "evt", "cost", "txn", "inv", "stm", "pbk",
        "rule", "exp", "sess",
    }
)  # fmt: skip

# 128 bits in 26 base32 characters leave 3 bits for the first one, hence [0-7].
_ID_PATTERN = re.compile(r"([a-z]{2,5})_([0-7][0-9a-hjkmnp-tv-z]{25})")


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
    if isinstance(millis, bool) or not isinstance(millis, int):
        raise TypeError(f"now_ms must be an int of milliseconds, not {type(millis).__name__}")
    if not 0 <= millis < _TIMESTAMP_LIMIT_MS:
        raise ValueError(f"now_ms {millis} is outside 0 <= now_ms < 2**{_TIMESTAMP_BITS}")
    randomness = int.from_bytes(os.urandom(_RANDOM_BYTES), "big")
    return f"{prefix}_{_encode((millis << (8 * _RANDOM_BYTES)) | randomness)}"


def is_valid_id(value: str, prefix: str | None = None) -> bool:
    """Whether `value` is a well-formed id (of the given `prefix`, when one is given)."""
    match = _ID_PATTERN.fullmatch(value) if isinstance(value, str) else None
    if match is None or match.group(1) not in PREFIXES:
        return False
    return prefix is None or match.group(1) == prefix


def id_timestamp_ms(value: str) -> int:
    """The millisecond timestamp an id was minted at; ValueError when `value` is not an id."""
    if not is_valid_id(value):
        raise ValueError(f"{value!r} is not a perfmark id such as cmp_01jd...")
    body = value.rsplit("_", 1)[-1]
    number = 0
    for char in body:
        number = (number << 5) | _DECODE[char]
    return number >> (8 * _RANDOM_BYTES)
