"""Prefixed, sortable, URL-safe identifiers (`cmp_01jd...`).

The layout is ULID's (48-bit millisecond timestamp then 80 random bits, Crockford base32,
lowercase) behind a short type prefix. It is written here rather than taken from a package
because click ids are minted on the redirect hot path, where this costs about a
microsecond, and because the prefix is part of the format.

Ids minted in one process within one millisecond are monotonic (ULID's monotonic mode):
the first draws 79 random bits, each next one adds 1 plus 32 random bits, so they sort in
mint order, stay unique, and never overflow in practice (2**47 ids in one millisecond).
Randomness is read from the OS in blocks rather than by a system call per id, and a
forked child discards its parent's unused block.
"""

from __future__ import annotations

import os
import re
import threading
import time

__all__ = ["PREFIXES", "id_timestamp_ms", "is_valid_id", "new_id", "random_bytes"]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_DECODE = {char: index for index, char in enumerate(_ALPHABET)}
_BODY_LENGTH = 26
_TIMESTAMP_BITS = 48
_TIMESTAMP_CHARS = 10  # 50 bits: the two top ones are always zero
_RANDOM_BYTES = 10
_RANDOM_BITS = 8 * _RANDOM_BYTES
#: One past the largest millisecond timestamp the layout holds (the year 10889).
_TIMESTAMP_LIMIT_MS = 1 << _TIMESTAMP_BITS
#: The random part of an id minted later in the same millisecond grows by 1 + this many bits.
_STEP_BYTES = 4
_RANDOM_LIMIT = 1 << _RANDOM_BITS
#: Bytes read from the OS at once (about 400 ids).
_POOL_BYTES = 4096
#: Every 10-bit value as its two base32 characters: 80 random bits are 8 table lookups.
_PAIRS = tuple(_ALPHABET[pair >> 5] + _ALPHABET[pair & 31] for pair in range(1024))
_LOW_40_BITS = (1 << 40) - 1

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


def _encode(value: int, length: int = _BODY_LENGTH) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


class _IdSource:
    """The process's randomness pool and the last id's millisecond and random part."""

    __slots__ = ("last_ms", "last_random", "lock", "pool", "position", "stamp")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.pool = b""
        self.position = 0
        self.last_ms = -1
        self.last_random = 0
        self.stamp = ""

    def take(self, count: int) -> bytes:
        """`count` random bytes; the caller holds the lock."""
        start = self.position
        if start + count > len(self.pool):
            self.pool = os.urandom(max(_POOL_BYTES, count))
            start = 0
        self.position = start + count
        return self.pool[start : start + count]

    def body(self, millis: int) -> str:
        """The 26 characters of an id minted at `millis`."""
        with self.lock:
            if millis == self.last_ms:
                random = self.last_random + 1 + int.from_bytes(self.take(_STEP_BYTES), "big")
            else:
                random = _RANDOM_LIMIT
            if random >= _RANDOM_LIMIT:  # a new millisecond (or, unreachably, an overflow)
                random = int.from_bytes(self.take(_RANDOM_BYTES), "big") >> 1
                if millis != self.last_ms:
                    self.stamp = _encode(millis, _TIMESTAMP_CHARS)
                    self.last_ms = millis
            self.last_random = random
            stamp = self.stamp
        high, low, pairs = random >> 40, random & _LOW_40_BITS, _PAIRS
        return "".join(
            (
                stamp,
                pairs[high >> 30], pairs[(high >> 20) & 1023], pairs[(high >> 10) & 1023],
                pairs[high & 1023], pairs[low >> 30], pairs[(low >> 20) & 1023],
                pairs[(low >> 10) & 1023], pairs[low & 1023],
            )
        )  # fmt: skip


_SOURCE = _IdSource()
os.register_at_fork(after_in_child=_SOURCE.reset)  # a child must not replay the parent's pool


def random_bytes(count: int) -> bytes:
    """`count` cryptographically random bytes (os.urandom, read in blocks; fork-safe)."""
    with _SOURCE.lock:
        return _SOURCE.take(count)


def new_id(prefix: str, *, now_ms: int | None = None) -> str:
    """Mint a new id with `prefix`; ids minted later sort after earlier ones (to the ms)."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}; known prefixes: {sorted(PREFIXES)}")
    if now_ms is None:
        millis = time.time_ns() // 1_000_000
    else:
        millis = now_ms
        if isinstance(millis, bool) or not isinstance(millis, int):
            raise TypeError(f"now_ms must be an int of milliseconds, not {type(millis).__name__}")
        if not 0 <= millis < _TIMESTAMP_LIMIT_MS:
            raise ValueError(f"now_ms {millis} is outside 0 <= now_ms < 2**{_TIMESTAMP_BITS}")
    return f"{prefix}_{_SOURCE.body(millis)}"


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
    return number >> _RANDOM_BITS
