"""Visitor identity: IP anonymization, the cookie id, the daily-salted cookieless hash, language."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from perfmark.ingest.visitor import (
    anonymize_ip,
    cookieless_visitor_id,
    new_visitor_id,
    primary_language,
    valid_visitor_id,
)

UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"


@pytest.mark.parametrize(
    ("ip", "mode", "expected"),
    [
        ("203.0.113.77", "none", "203.0.113.77"),
        ("203.0.113.77", "truncate", "203.0.113.0"),
        ("203.0.113.77", "drop", None),
        ("10.1.255.254", "truncate", "10.1.255.0"),
        ("2001:db8:abcd:12:1:2:3:4", "truncate", "2001:db8:abcd::"),
        ("2001:db8:abcd:12:1:2:3:4", "none", "2001:db8:abcd:12:1:2:3:4"),
        ("2001:db8:abcd:12:1:2:3:4", "drop", None),
        ("not-an-ip", "truncate", None),
        (None, "none", None),
        (None, "truncate", None),
    ],
)
def test_ip_anonymization_modes(ip: str | None, mode: str, expected: str | None) -> None:
    assert anonymize_ip(ip, mode) == expected  # type: ignore[arg-type]


def test_new_visitor_ids_are_valid_unique_and_cookie_safe() -> None:
    ids = {new_visitor_id() for _ in range(500)}
    assert len(ids) == 500
    for value in ids:
        assert valid_visitor_id(value)
        assert value.isascii() and not set(value) & set(';,= "\\')


@pytest.mark.parametrize("value", [None, "", "v", "a;b", "x" * 65, "ab cd", "<script>", "é" * 4])
def test_forged_or_odd_cookie_values_are_not_visitor_ids(value: str | None) -> None:
    assert not valid_visitor_id(value)


def test_cookieless_id_is_the_documented_hmac_and_stable_within_a_day() -> None:
    morning = datetime(2026, 3, 1, 0, 0, 1, tzinfo=UTC)
    evening = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)
    salt = hmac.new(b"k", b"2026-03-01", hashlib.sha256).digest()
    expected = "h" + hmac.new(salt, f"1.2.3.4\n{UA}".encode(), hashlib.sha256).hexdigest()[:24]
    assert cookieless_visitor_id("k", "1.2.3.4", UA, morning) == expected
    assert cookieless_visitor_id("k", "1.2.3.4", UA, evening) == expected
    assert valid_visitor_id(expected)


def test_cookieless_salt_rotates_daily_and_depends_on_ip_agent_and_key() -> None:
    day = datetime(2026, 3, 1, 12, tzinfo=UTC)
    ids = [cookieless_visitor_id("k", "1.2.3.4", UA, day + timedelta(days=n)) for n in range(30)]
    assert len(set(ids)) == 30
    base = cookieless_visitor_id("k", "1.2.3.4", UA, day)
    assert cookieless_visitor_id("k", "1.2.3.5", UA, day) != base
    assert cookieless_visitor_id("k", "1.2.3.4", UA + "x", day) != base
    assert cookieless_visitor_id("other", "1.2.3.4", UA, day) != base


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("de-CH,de;q=0.9,en;q=0.8", "de"),
        ("EN-us", "en"),
        ("fr;q=0.5", "fr"),
        ("*", None),
        ("", None),
        (None, None),
        ("x", None),
        ("1234", None),
    ],
)
def test_primary_language(header: str | None, expected: str | None) -> None:
    assert primary_language(header) == expected
