"""Passwords (argon2id), the return-path check, CSRF comparison and the lake's version."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from perfmark.dashboard.auth import (
    PASSWORD_MAX_CHARS,
    PASSWORD_MIN_CHARS,
    DashboardSession,
    csrf_matches,
    hash_password,
    verify_password,
)
from perfmark.dashboard.routing import safe_next
from perfmark.domain.accounts import Role
from perfmark.errors import ValidationError


def test_a_password_hash_is_argon2id_salted_and_verifies() -> None:
    first, second = hash_password("correct horse battery"), hash_password("correct horse battery")
    assert first.startswith("$argon2id$") and first != second  # a fresh salt each time
    assert verify_password(first, "correct horse battery")
    assert not verify_password(first, "correct horse batterY")
    assert not verify_password("not a hash", "correct horse battery")


def test_password_length_limits_name_the_field() -> None:
    with pytest.raises(ValidationError) as short:
        hash_password("x" * (PASSWORD_MIN_CHARS - 1))
    assert short.value.field == "password" and str(PASSWORD_MIN_CHARS) in short.value.message
    with pytest.raises(ValidationError):
        hash_password("x" * (PASSWORD_MAX_CHARS + 1))
    assert verify_password(hash_password("x" * PASSWORD_MIN_CHARS), "x" * PASSWORD_MIN_CHARS)


@pytest.mark.parametrize(
    ("wanted", "returned"),
    [
        ("/dashboard/campaigns?status=active", "/dashboard/campaigns?status=active"),
        ("/dashboard/", "/dashboard/"),
        (None, "/dashboard/"),
        ("https://evil.example/dashboard/", "/dashboard/"),
        ("//evil.example/dashboard/", "/dashboard/"),
        ("/dashboard\\@evil.example", "/dashboard/"),
        ("/api/apikeys", "/dashboard/"),
        ("/dashboard/sign-in?next=/dashboard/", "/dashboard/"),
        ("javascript:alert(1)", "/dashboard/"),
    ],
)
def test_only_dashboard_paths_are_returned_to(wanted: str | None, returned: str) -> None:
    assert safe_next(wanted) == returned


def _session(token: str) -> DashboardSession:
    return DashboardSession(
        digest="d", user_id="usr_1", workspace_id="ws_1", email="a@b.co", name="A",
        role=Role.ADMIN, csrf_token=token, expires_at=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip


def test_csrf_tokens_must_match_exactly() -> None:
    session = _session("token-123")
    assert csrf_matches(session, "token-123")
    for presented in (None, "", "token-12", "token-1234", "TOKEN-123"):
        assert not csrf_matches(session, presented)


def test_the_lake_version_changes_when_a_file_is_written(tmp_path: Path) -> None:
    from perfmark.adapters.lake import LakeWriter
    from perfmark.dashboard.cache import lake_version
    from perfmark.domain.events import TrackedEvent
    from perfmark.services.container import Container
    from perfmark.settings import lake_directory, load_settings

    settings = load_settings({"PERFMARK_HOME": str(tmp_path)})
    container = Container(settings=settings, engine=None)  # type: ignore[arg-type]
    assert lake_version(container) == "empty"
    writer = LakeWriter(lake_directory(settings))
    event = TrackedEvent(event_id="evt_1", type="click", ts_ms=1_767_225_600_000, workspace_id="w")
    writer.write("b1", [event])
    first = lake_version(container)
    assert lake_version(container) == first  # stable while nothing changes
    writer.write("b2", [TrackedEvent(event_id="evt_2", type="click", ts_ms=1_767_225_600_001,
                                     workspace_id="w")])  # fmt: skip
    assert lake_version(container) != first
