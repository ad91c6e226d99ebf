"""Shared validation helpers: names, URLs, currencies, decimals, integers, slugs, emails."""

from __future__ import annotations

from decimal import Decimal

import pytest

from perfmark.domain.rules import (
    check_currency,
    check_decimal,
    check_email,
    check_http_url,
    check_name,
    check_positive_int,
    check_slug,
)
from perfmark.errors import ValidationError

BAD_URLS = [
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "ftp://example.com/file",
    "file:///etc/passwd",
    "mailto:a@example.com",
    "/relative/path",
    "relative/path",
    "//example.com/no-scheme",
    "example.com",
    "http://",
    "https:///path-without-host",
    "",
    " https://example.com",
    "https://example.com ",
    "https://exa mple.com",
    "https://example.com/a b",
    "https://example.com/\ttab",
    "https://example.com/\r\nSet-Cookie:x=1",
    "https://example.com/\x00",
    "https://example.com/\x7f",
    "https://example.com\\@evil.com",
    "https://{sub1}/path",  # a macro choosing the host is an open redirect
    "https://example.{tld}/",
    "https://evil.com{x}/",
    "https://user@{sub1}/",
    "http://[::1/",
    "https://example.com/" + "a" * 2048,
]
GOOD_URLS = [
    "http://example.com",
    "https://example.com/landing?x=1#top",
    "https://shop.example.com:8443/p/{sub1}?click={click_id}&src={utm_source}",
    "HTTPS://EXAMPLE.COM/",
    "http://127.0.0.1:8000/",
    "http://[::1]:8000/",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_non_http_urls_are_refused_naming_the_field(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_http_url("landing_url", url)
    assert caught.value.field == "landing_url"
    assert caught.value.message.startswith("landing_url ")


@pytest.mark.parametrize("url", GOOD_URLS)
def test_absolute_http_urls_are_accepted_unchanged(url: str) -> None:
    assert check_http_url("landing_url", url) == url


@pytest.mark.parametrize("value", [None, 42, b"https://example.com"])
def test_a_url_must_be_text(value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        check_http_url("url", value)  # type: ignore[arg-type]
    assert caught.value.field == "url"


def test_macros_can_be_refused() -> None:
    check_http_url("url", "https://example.com/{sub1}")
    with pytest.raises(ValidationError):
        check_http_url("url", "https://{sub1}.example.com/", allow_macros=False)


def test_the_refusal_quotes_the_value() -> None:
    with pytest.raises(ValidationError, match=r"'ftp://x\.com' is not an absolute http"):
        check_http_url("url", "ftp://x.com")


def test_name_is_stripped_and_bounded() -> None:
    assert check_name("name", "  Spring sale ") == "Spring sale"
    assert check_name("name", "x" * 200) == "x" * 200
    for bad in ("", "   ", None, 5, "x" * 201):
        with pytest.raises(ValidationError) as caught:
            check_name("name", bad)  # type: ignore[arg-type]
        assert caught.value.field == "name"


@pytest.mark.parametrize("code", ["XYZ", "usd dollars", "", "EU"])
def test_unknown_currency_is_a_validation_error_naming_field_and_code(code: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_currency("currency", code)
    assert caught.value.field == "currency"
    assert repr(code) in caught.value.message


def test_currency_is_upper_cased() -> None:
    assert check_currency("currency", "eur") == "EUR"


def test_decimal_bounds() -> None:
    assert check_decimal("amount", "0") == 0
    assert check_decimal("amount", "2.50") == Decimal("2.50")
    with pytest.raises(ValidationError, match=r"amount is -0.01; it must be at least 0"):
        check_decimal("amount", "-0.01")
    with pytest.raises(ValidationError, match="greater than 0"):
        check_decimal("limit", "0", exclusive_minimum=True)
    with pytest.raises(ValidationError, match="at most 100"):
        check_decimal("percent", "100.01", maximum=Decimal(100))
    assert check_decimal("delta", "-5", minimum=None) == -5


@pytest.mark.parametrize("value", [1.5, "abc", "NaN", None, True, "1e30"])
def test_decimal_refusals_carry_the_field(value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        check_decimal("total_budget", value)
    assert caught.value.field == "total_budget"


@pytest.mark.parametrize(
    ("value", "allow_zero", "ok"),
    [(1, False, True), (0, False, False), (0, True, True), (-1, True, False), (10**9, False, True)],
)
def test_positive_int(value: int, allow_zero: bool, ok: bool) -> None:
    if ok:
        assert check_positive_int("days", value, allow_zero=allow_zero) == value
    else:
        with pytest.raises(ValidationError) as caught:
            check_positive_int("days", value, allow_zero=allow_zero)
        assert caught.value.field == "days"


@pytest.mark.parametrize("value", [True, 1.0, "3", None])
def test_positive_int_refuses_non_ints(value: object) -> None:
    with pytest.raises(ValidationError, match="must be an integer") as caught:
        check_positive_int("days", value)  # type: ignore[arg-type]
    assert caught.value.field == "days"


@pytest.mark.parametrize("slug", ["a", "Spring-Sale_2026", "0abc", "x" * 64])
def test_good_slugs(slug: str) -> None:
    assert check_slug("slug", slug) == slug


@pytest.mark.parametrize(
    "slug", ["", "-lead", "_lead", "has space", "slash/", "dot.ted", "x" * 65, "abc\n", "é", None]
)
def test_bad_slugs(slug: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_slug("slug", slug)
    assert caught.value.field == "slug"


@pytest.mark.parametrize(
    ("email", "normalized"),
    [("Ana@Example.com", "ana@example.com"), ("a.b+tag@mail.example.co.uk", None)],
)
def test_good_emails_are_lower_cased(email: str, normalized: str | None) -> None:
    assert check_email("email", email) == (normalized or email.lower())


@pytest.mark.parametrize(
    "email",
    [
        "",
        "plain",
        "@example.com",
        "a@",
        "a@example",
        "a@b@example.com",
        "a b@example.com",
        "a@example.c",
        "a@example.com\n",
        None,
        "x" * 65 + "@example.com",
    ],
)
def test_bad_emails(email: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_email("contact_email", email)
    assert caught.value.field == "contact_email"
