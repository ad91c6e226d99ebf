"""Workspaces (tenants), users with roles, and API keys that are shown once and stored hashed."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import available_timezones

from perfmark.domain.rules import (
    check_currency,
    check_email,
    check_http_url,
    check_name,
    check_positive_int,
)
from perfmark.errors import ValidationError

__all__ = [
    "API_KEY_PREFIX",
    "ApiKeySecret",
    "Role",
    "UserSpec",
    "WorkspaceSpec",
    "check_timezone",
    "hash_api_key",
    "mint_api_key",
    "WRITE_ROLES",
    "api_key_matches",
    "check_scope",
]

#: Every API key starts with this, so a leaked key is recognisable by secret scanners.
API_KEY_PREFIX = "pmk_"
_API_KEY_BYTES = 24


class Role(StrEnum):
    """What a user or API key may do."""

    OWNER = "owner"  #: everything, including team and keys
    ADMIN = "admin"  #: everything but deleting the workspace
    ANALYST = "analyst"  #: read-only
    ADVERTISER = "advertiser"  #: own campaigns, spend, conversions, invoices
    PUBLISHER = "publisher"  #: own links, stats, payouts, postback settings


#: Roles that may create and change configuration.
WRITE_ROLES = frozenset({Role.OWNER, Role.ADMIN})

_TIMEZONES: frozenset[str] | None = None


def check_timezone(field: str, value: str) -> str:
    """An IANA time-zone name such as Europe/Paris."""
    global _TIMEZONES
    if _TIMEZONES is None:
        _TIMEZONES = frozenset(available_timezones()) | {"UTC"}
    if value not in _TIMEZONES:
        raise ValidationError(
            f"{field} {value!r} is not an IANA time zone; use a name such as UTC or Europe/Paris",
            field=field,
        )
    return value


@dataclass(frozen=True)
class WorkspaceSpec:
    """A tenant: everything else belongs to exactly one workspace."""

    name: str
    timezone: str = "UTC"
    currency: str = "USD"
    fallback_url: str | None = None
    click_lookback_days: int = 30
    view_lookback_days: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", check_name("name", self.name))
        check_timezone("timezone", self.timezone)
        object.__setattr__(self, "currency", check_currency("currency", self.currency))
        if self.fallback_url is not None:
            check_http_url("fallback_url", self.fallback_url)
        check_positive_int("click_lookback_days", self.click_lookback_days)
        check_positive_int("view_lookback_days", self.view_lookback_days)


@dataclass(frozen=True)
class UserSpec:
    """A person who signs in; advertiser and publisher users see only their own data."""

    email: str
    name: str
    role: Role = Role.ANALYST
    advertiser_id: str | None = None
    publisher_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "email", check_email("email", self.email))
        object.__setattr__(self, "name", check_name("name", self.name))
        try:
            role = Role(self.role)
        except ValueError:
            raise ValidationError(
                f"role {self.role!r} is unknown; use one of {', '.join(Role)}", field="role"
            ) from None
        object.__setattr__(self, "role", role)
        check_scope(role, self.advertiser_id, self.publisher_id)


def check_scope(role: Role, advertiser_id: str | None, publisher_id: str | None) -> None:
    """Advertiser users name their advertiser, publisher users their publisher, others neither."""
    if role is Role.ADVERTISER and not advertiser_id:
        raise ValidationError("an advertiser user needs advertiser_id", field="advertiser_id")
    if role is Role.PUBLISHER and not publisher_id:
        raise ValidationError("a publisher user needs publisher_id", field="publisher_id")
    if role is not Role.ADVERTISER and advertiser_id:
        raise ValidationError(
            f"advertiser_id is only for the advertiser role, not {role.value}",
            field="advertiser_id",
        )
    if role is not Role.PUBLISHER and publisher_id:
        raise ValidationError(
            f"publisher_id is only for the publisher role, not {role.value}", field="publisher_id"
        )


@dataclass(frozen=True)
class ApiKeySecret:
    """A freshly minted API key: `plaintext` is shown once; only `digest` is stored."""

    plaintext: str
    lookup: str
    digest: str


def hash_api_key(plaintext: str) -> str:
    """The stored digest of a key.

    SHA-256 rather than a slow password hash: keys carry 192 random bits, so there is nothing
    to brute-force, and the check runs on every API request.
    """
    return hashlib.sha256(plaintext.encode()).hexdigest()


def mint_api_key() -> ApiKeySecret:
    """A new random key; `lookup` (the first characters) finds its row without the secret."""
    plaintext = API_KEY_PREFIX + secrets.token_urlsafe(_API_KEY_BYTES)
    return ApiKeySecret(plaintext=plaintext, lookup=plaintext[:12], digest=hash_api_key(plaintext))


def api_key_matches(plaintext: str, digest: str) -> bool:
    """Constant-time comparison of a presented key with a stored digest."""
    return hmac.compare_digest(hash_api_key(plaintext), digest)
