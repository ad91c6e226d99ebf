"""Workspaces, users with roles and scopes, and API keys (shown once, stored as a SHA-256 digest)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest

from perfmark.domain.accounts import (
    API_KEY_PREFIX,
    WRITE_ROLES,
    Role,
    UserSpec,
    WorkspaceSpec,
    api_key_matches,
    check_scope,
    check_timezone,
    hash_api_key,
    mint_api_key,
)
from perfmark.errors import ValidationError

# --- API keys ---------------------------------------------------------------------------------


def test_minted_key_has_the_prefix_and_enough_randomness() -> None:
    key = mint_api_key()
    assert key.plaintext.startswith(API_KEY_PREFIX) and API_KEY_PREFIX == "pmk_"
    secret = key.plaintext.removeprefix(API_KEY_PREFIX)
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", secret)  # 24 bytes, base64url: 192 bits
    assert key.lookup == key.plaintext[:12]


def test_digest_is_the_sha256_hex_of_the_plaintext() -> None:
    key = mint_api_key()
    assert key.digest == hashlib.sha256(key.plaintext.encode()).hexdigest()
    assert hash_api_key("pmk_abc") == hashlib.sha256(b"pmk_abc").hexdigest()
    assert key.plaintext not in key.digest


def test_minted_keys_are_unique() -> None:
    keys = [mint_api_key() for _ in range(500)]
    assert len({key.plaintext for key in keys}) == 500
    assert len({key.digest for key in keys}) == 500


def test_api_key_matches_only_its_own_digest() -> None:
    key = mint_api_key()
    other = mint_api_key()
    assert api_key_matches(key.plaintext, key.digest)
    assert not api_key_matches(other.plaintext, key.digest)
    assert not api_key_matches(key.plaintext[:-1], key.digest)
    assert not api_key_matches(key.plaintext + "x", key.digest)
    assert not api_key_matches("", key.digest)
    assert not api_key_matches(key.plaintext, "")
    assert not api_key_matches(key.plaintext, key.digest.upper())


def test_api_key_check_uses_a_constant_time_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    import perfmark.domain.accounts as accounts

    calls: list[tuple[str, str]] = []
    real = accounts.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(accounts.hmac, "compare_digest", spy)
    key = mint_api_key()
    assert api_key_matches(key.plaintext, key.digest)
    assert calls == [(key.digest, key.digest)]


# --- roles and scopes -------------------------------------------------------------------------


def test_roles_and_write_roles() -> None:
    assert [role.value for role in Role] == ["owner", "admin", "analyst", "advertiser", "publisher"]
    assert {Role.OWNER, Role.ADMIN} == WRITE_ROLES


def user(**changes: Any) -> UserSpec:
    return UserSpec(**{"email": "ana@example.com", "name": "Ana", **changes})


@pytest.mark.parametrize("role", ["owner", "admin", "analyst"])
def test_staff_roles_take_no_scope(role: str) -> None:
    assert user(role=role).role == role
    for field in ("advertiser_id", "publisher_id"):
        with pytest.raises(ValidationError) as caught:
            user(role=role, **{field: "x_1"})
        assert caught.value.field == field
        assert role in caught.value.message


def test_advertiser_users_name_their_advertiser_only() -> None:
    assert user(role="advertiser", advertiser_id="adv_1").advertiser_id == "adv_1"
    with pytest.raises(ValidationError) as caught:
        user(role="advertiser")
    assert caught.value.field == "advertiser_id"
    with pytest.raises(ValidationError) as caught:
        user(role="advertiser", advertiser_id="adv_1", publisher_id="pub_1")
    assert caught.value.field == "publisher_id"


def test_publisher_users_name_their_publisher_only() -> None:
    assert user(role="publisher", publisher_id="pub_1").publisher_id == "pub_1"
    with pytest.raises(ValidationError) as caught:
        user(role="publisher", publisher_id="")
    assert caught.value.field == "publisher_id"
    with pytest.raises(ValidationError) as caught:
        user(role="publisher", publisher_id="pub_1", advertiser_id="adv_1")
    assert caught.value.field == "advertiser_id"


def test_check_scope_directly() -> None:
    check_scope(Role.OWNER, None, None)
    check_scope(Role.ADVERTISER, "adv_1", None)
    check_scope(Role.PUBLISHER, None, "pub_1")
    with pytest.raises(ValidationError):
        check_scope(Role.ANALYST, None, "pub_1")


def test_unknown_role() -> None:
    with pytest.raises(ValidationError) as caught:
        user(role="superuser")
    assert caught.value.field == "role"
    assert "owner, admin, analyst, advertiser, publisher" in caught.value.message


def test_user_defaults_and_email_normalization() -> None:
    spec = user(email="Ana.Silva@Example.COM", name=" Ana ")
    assert spec.email == "ana.silva@example.com"
    assert spec.name == "Ana"
    assert spec.role is Role.ANALYST


@pytest.mark.parametrize(
    "email", ["", "ana", "ana@", "@example.com", "ana@example", "a na@example.com", "a@b.co\n", 7]
)
def test_bad_emails_are_refused(email: object) -> None:
    with pytest.raises(ValidationError) as caught:
        user(email=email)
    assert caught.value.field == "email"


# --- workspaces and time zones ----------------------------------------------------------------


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"])
def test_iana_time_zones_are_accepted(zone: str) -> None:
    assert check_timezone("timezone", zone) == zone
    assert WorkspaceSpec(name="W", timezone=zone).timezone == zone


@pytest.mark.parametrize("zone", ["", "Mars/Olympus", "+02:00", "CEST", "europe/paris", None])
def test_other_time_zones_are_refused(zone: object) -> None:
    with pytest.raises(ValidationError) as caught:
        WorkspaceSpec(name="W", timezone=zone)  # type: ignore[arg-type]
    assert caught.value.field == "timezone"


def test_workspace_defaults() -> None:
    spec = WorkspaceSpec(name=" Acme ", currency="eur")
    assert (spec.name, spec.timezone, spec.currency) == ("Acme", "UTC", "EUR")
    assert (spec.click_lookback_days, spec.view_lookback_days) == (30, 1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("currency", "ABC"),
        ("fallback_url", "javascript:alert(1)"),
        ("fallback_url", "//example.com"),
        ("click_lookback_days", 0),
        ("view_lookback_days", -1),
        ("click_lookback_days", 1.5),
    ],
)
def test_workspace_refusals_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        WorkspaceSpec(**{"name": "W", field: value})
    assert caught.value.field == field
