"""Minting ids fast: monotonic within a millisecond, unique across threads and forks."""

from __future__ import annotations

import itertools
import os
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.ids import id_timestamp_ms, is_valid_id, new_id, random_bytes

CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
MAX_TIMESTAMP_MS = 2**48 - 1


def body_value(value: str) -> int:
    """The 128-bit number an id's body spells, decoded digit by digit (the reference)."""
    number = 0
    for char in value.split("_", 1)[1]:
        number = number * 32 + CROCKFORD.index(char)
    return number


def spelled(number: int) -> str:
    """The 26 Crockford digits of a number, most significant first (the reference)."""
    digits = []
    for _ in range(26):
        number, digit = divmod(number, 32)
        digits.append(CROCKFORD[digit])
    return "".join(reversed(digits))


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=MAX_TIMESTAMP_MS), st.integers(1, 5))
def test_the_body_is_the_timestamp_then_80_random_bits(now_ms: int, count: int) -> None:
    for _ in range(count):
        value = new_id("clk", now_ms=now_ms)
        number = body_value(value)
        assert number >> 80 == now_ms == id_timestamp_ms(value)
        assert spelled(number) == value[4:]
        assert is_valid_id(value, "clk")


def test_ids_of_one_millisecond_increase_in_mint_order() -> None:
    minted = [new_id("clk", now_ms=1_750_000_000_000) for _ in range(20_000)]
    assert minted == sorted(minted)
    assert len(set(minted)) == len(minted)
    numbers = [body_value(value) for value in minted]
    steps = [later - earlier for earlier, later in itertools.pairwise(numbers)]
    # Each step adds 1 plus 32 random bits: never 0, and not a constant (not guessable).
    assert min(steps) >= 1 and max(steps) <= 2**32
    assert len(set(steps)) > len(steps) // 2


def test_a_new_millisecond_starts_from_fresh_randomness() -> None:
    first = [new_id("evt", now_ms=1_000) for _ in range(50)]
    later = [new_id("evt", now_ms=1_001) for _ in range(50)]
    assert first + later == sorted(first + later)
    starts = {body_value(new_id("evt", now_ms=ms)) & (2**80 - 1) for ms in range(2_000, 2_040)}
    assert len(starts) == 40  # not a counter carried over from millisecond to millisecond
    assert max(starts) < 2**79  # the top bit is kept clear: room to count up


def test_going_back_in_time_still_mints_valid_sortable_ids() -> None:
    late = new_id("cnv", now_ms=5_000)
    early = new_id("cnv", now_ms=4_000)
    assert early < late
    assert (id_timestamp_ms(early), id_timestamp_ms(late)) == (4_000, 5_000)


def test_threads_minting_at_once_never_collide_and_each_sees_order() -> None:
    results: list[list[str]] = [[] for _ in range(6)]

    def mint(into: list[str]) -> None:
        for _ in range(4_000):
            into.append(new_id("clk", now_ms=1_760_000_000_000))

    threads = [threading.Thread(target=mint, args=(bucket,)) for bucket in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [value for bucket in results for value in bucket]
    assert len(set(everything)) == len(everything) == 24_000
    for bucket in results:
        assert bucket == sorted(bucket)


def test_a_forked_child_does_not_replay_the_parents_randomness() -> None:
    new_id("clk", now_ms=7)  # the parent now holds a block of unused random bytes
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's report travels through the pipe
        try:
            minted = [new_id("clk", now_ms=9) for _ in range(200)]
            os.write(write_end, ("\n".join(minted) + "\n" + random_bytes(32).hex()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(child, 0)
    *child_ids, child_bytes = b"".join(chunks).decode().split("\n")
    parent_ids = [new_id("clk", now_ms=9) for _ in range(200)]
    assert len(child_ids) == 200
    assert not set(child_ids) & set(parent_ids)
    assert child_bytes != random_bytes(32).hex()


def test_random_bytes_have_the_length_asked_and_do_not_repeat() -> None:
    chunks = [random_bytes(12) for _ in range(2_000)] + [random_bytes(5_000)]
    assert [len(chunk) for chunk in chunks[:3]] == [12, 12, 12] and len(chunks[-1]) == 5_000
    assert len(set(chunks)) == len(chunks)
    # About half of all bits set: a pool that was never filled would be zeros.
    ones = sum(bin(byte).count("1") for byte in b"".join(chunks))
    assert 0.45 < ones / (8 * sum(len(chunk) for chunk in chunks)) < 0.55
