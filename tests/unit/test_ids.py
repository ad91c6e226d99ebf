"""Ids: a known prefix, a 26-character Crockford base32 body, URL-safe, sortable by mint time."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.ids import PREFIXES, id_timestamp_ms, is_valid_id, new_id

CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
MAX_TIMESTAMP_MS = 2**48 - 1
timestamps = st.integers(min_value=0, max_value=MAX_TIMESTAMP_MS)


@pytest.mark.parametrize("prefix", sorted(PREFIXES))
def test_every_prefix_mints_a_valid_id_of_that_kind(prefix: str) -> None:
    value = new_id(prefix)
    head, body = value.split("_")
    assert head == prefix
    assert len(body) == 26
    assert set(body) <= set(CROCKFORD)
    assert is_valid_id(value)
    assert is_valid_id(value, prefix)


def test_ids_are_url_safe() -> None:
    for _ in range(200):
        value = new_id("clk")
        assert quote(value, safe="") == value
        assert re.fullmatch(r"[a-z0-9_]+", value)


def test_unknown_prefix_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="'nope'"):
        new_id("nope")


def test_ten_thousand_ids_in_the_same_millisecond_are_unique() -> None:
    minted = {new_id("evt", now_ms=1_700_000_000_000) for _ in range(10_000)}
    assert len(minted) == 10_000


@settings(max_examples=200)
@given(timestamps, timestamps)
def test_ids_sort_by_mint_time(first_ms: int, second_ms: int) -> None:
    first = new_id("cmp", now_ms=first_ms)
    second = new_id("cmp", now_ms=second_ms)
    if first_ms < second_ms:
        assert first < second
    elif first_ms > second_ms:
        assert first > second


@settings(max_examples=50)
@given(st.lists(timestamps, min_size=2, max_size=50, unique=True))
def test_a_batch_sorts_in_timestamp_order(stamps: list[int]) -> None:
    ids = {new_id("clk", now_ms=ms): ms for ms in stamps}
    assert [ids[value] for value in sorted(ids)] == sorted(stamps)


@settings(max_examples=200)
@given(timestamps)
def test_timestamp_round_trips(ms: int) -> None:
    assert id_timestamp_ms(new_id("cnv", now_ms=ms)) == ms


def test_default_timestamp_is_now() -> None:
    import time

    before = time.time_ns() // 1_000_000
    value = new_id("usr")
    after = time.time_ns() // 1_000_000
    assert before <= id_timestamp_ms(value) <= after


def test_extreme_timestamps_encode_to_known_bodies() -> None:
    assert new_id("ws", now_ms=0).startswith("ws_0000000000")
    # 48 one-bits then randomness: the first ten characters hold 50 bits, the top two zero.
    assert new_id("ws", now_ms=MAX_TIMESTAMP_MS).startswith("ws_7zzzzzzzzz")


@pytest.mark.parametrize("now_ms", [-1, 2**48, 2**60])
def test_timestamps_outside_48_bits_are_refused(now_ms: int) -> None:
    with pytest.raises(ValueError, match="now_ms"):
        new_id("cmp", now_ms=now_ms)


@pytest.mark.parametrize("now_ms", [1.5, True, "1"])
def test_non_integer_timestamps_are_refused(now_ms: object) -> None:
    with pytest.raises(TypeError):
        new_id("cmp", now_ms=now_ms)  # type: ignore[arg-type]


def test_is_valid_id_checks_the_prefix_when_given() -> None:
    value = new_id("lnk")
    assert is_valid_id(value, "lnk")
    assert not is_valid_id(value, "cmp")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "cmp",
        "cmp_",
        "zzz_01jd0000000000000000000000",  # unknown prefix
        "cmp_01jd000000000000000000000",  # 25 characters
        "cmp_01jd00000000000000000000000",  # 27 characters
        "cmp_01JD0000000000000000000000",  # upper case
        "cmp_01jd000000000000000000000i",  # i is not Crockford
        "cmp_01jd000000000000000000000u",  # u is not Crockford
        "cmp_81jd0000000000000000000000",  # more than 128 bits
        "cmp-01jd0000000000000000000000",
        " cmp_01jd0000000000000000000000",
        "cmp_01jd0000000000000000000000\n",  # `$` would let this through
        "cmp_01jd0000000000000000000000 ",
    ],
)
def test_malformed_ids_are_invalid(value: str) -> None:
    assert not is_valid_id(value)


def test_non_text_is_not_an_id() -> None:
    assert not is_valid_id(None)  # type: ignore[arg-type]
    assert not is_valid_id(12)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["cmp_!!", "nonsense", "cmp_01jd0000000000000000000000\n"])
def test_timestamp_of_a_malformed_id_is_a_value_error(value: str) -> None:
    with pytest.raises(ValueError, match="not a perfmark id"):
        id_timestamp_ms(value)
