"""Shared validation helpers; each error names the field, the value and what is allowed."""

from __future__ import annotations

import re
from decimal import Decimal
from urllib.parse import urlsplit

from perfmark.errors import ValidationError
from perfmark.money import MoneyError, normalize_currency, parse_amount

__all__ = [
    "check_currency",
    "check_decimal",
    "check_email",
    "check_http_url",
    "check_name",
    "check_positive_int",
    "check_slug",
]

# Patterns are used with fullmatch: `$` alone would accept a trailing newline.
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,}")
_MACRO = re.compile(r"\{[a-z0-9_]+\}")
_MAX_URL_CHARS = 2048


def check_name(field: str, value: str, *, max_length: int = 200) -> str:
    """A non-blank display name of bounded length."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{field} is empty; give a non-blank name", field=field)
    if len(value) > max_length:
        raise ValidationError(
            f"{field} is {len(value)} characters long; the limit is {max_length}", field=field
        )
    return value.strip()


def check_http_url(field: str, value: str, *, allow_macros: bool = True) -> str:
    """An absolute http(s) URL with a host; `{macros}` are allowed in path and query."""
    if not isinstance(value, str) or len(value) > _MAX_URL_CHARS:
        raise ValidationError(
            f"{field} must be an http(s) URL of at most {_MAX_URL_CHARS} characters", field=field
        )
    # Control characters would reach the Location header; browsers read "\\" as "/".
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value) or "\\" in value:
        raise ValidationError(
            f"{field} {value!r} contains whitespace, control characters or backslashes; "
            "percent-encode them",
            field=field,
        )
    probe = _MACRO.sub("x", value) if allow_macros else value
    try:
        parts = urlsplit(probe)
        netloc = urlsplit(value).netloc
    except ValueError:
        raise ValidationError(f"{field} {value!r} is not a valid URL", field=field) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(
            f"{field} {value!r} is not an absolute http:// or https:// URL", field=field
        )
    if "{" in netloc or "}" in netloc:
        raise ValidationError(
            f"{field} {value!r} has a macro in its host; macros may only fill the path and "
            "query (a host taken from a parameter would be an open redirect)",
            field=field,
        )
    return value


def check_email(field: str, value: str) -> str:
    """An email address (one @, a dotted domain, no spaces), lower-cased."""
    if not isinstance(value, str) or not _EMAIL.fullmatch(value):
        raise ValidationError(
            f"{field} {value!r} is not an email address such as name@example.com", field=field
        )
    return value.lower()


def check_currency(field: str, value: str) -> str:
    """An ISO 4217 currency code, upper-cased."""
    try:
        return normalize_currency(value)
    except MoneyError as exc:
        raise ValidationError(f"{field}: {exc}", field=field) from None


def check_decimal(
    field: str,
    value: object,
    *,
    minimum: Decimal | None = Decimal(0),
    maximum: Decimal | None = None,
    exclusive_minimum: bool = False,
) -> Decimal:
    """An exact decimal (string or int, never float) within bounds."""
    try:
        amount = parse_amount(value, field=field)
    except MoneyError as exc:
        raise ValidationError(str(exc), field=field) from None
    if minimum is not None:
        too_small = amount <= minimum if exclusive_minimum else amount < minimum
        if too_small:
            relation = "greater than" if exclusive_minimum else "at least"
            raise ValidationError(
                f"{field} is {value}; it must be {relation} {minimum}", field=field
            )
    if maximum is not None and amount > maximum:
        raise ValidationError(f"{field} is {value}; it must be at most {maximum}", field=field)
    return amount


def check_positive_int(field: str, value: int, *, allow_zero: bool = False) -> int:
    """A positive (or non-negative) integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} is {value!r}; it must be an integer", field=field)
    if value < 0 or (value == 0 and not allow_zero):
        relation = "0 or more" if allow_zero else "1 or more"
        raise ValidationError(f"{field} is {value}; it must be {relation}", field=field)
    return value


def check_slug(field: str, value: str) -> str:
    """A URL-safe slug: letters, digits, '-' and '_', 1-64 characters."""
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        raise ValidationError(
            f"{field} {value!r} is not a valid slug; use 1-64 letters, digits, '-' or '_', "
            "starting with a letter or digit",
            field=field,
        )
    return value
