"""Shared fixtures: services that tests need, which skip with a reason locally and fail in CI."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from perfmark.clock import FixedClock
from perfmark.domain.accounts import WorkspaceSpec
from perfmark.services.accounts import NewWorkspace, create_workspace
from perfmark.services.container import Container, build_container
from perfmark.settings import Settings, load_settings

#: Set in CI: a missing service is then a failure, never a silent skip.
REQUIRE_SERVICES = os.environ.get("PERFMARK_REQUIRE_SERVICES", "") not in ("", "0", "false")
POSTGRES_URL = os.environ.get(
    "PERFMARK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_HOST_PORT = ("127.0.0.1", 6379)
CHROMIUM = os.environ.get("PERFMARK_TEST_CHROMIUM", "/usr/bin/chromium")


def missing_service(reason: str) -> None:
    """Skip with a visible reason on a developer's machine; fail when services are required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"PERFMARK_REQUIRE_SERVICES is set but {reason}", pytrace=False)
    pytest.skip(reason)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """A URL of a reachable PostgreSQL server with rights to create databases."""
    try:
        engine = create_engine(POSTGRES_URL)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:  # any connection failure means "not available"
        missing_service(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc.__class__.__name__}")
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"perfmark_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = postgres_admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def redis_available() -> tuple[str, int]:
    """The host and port of a running Redis."""
    if not _port_open(*REDIS_HOST_PORT):
        missing_service(f"Redis is not running on {REDIS_HOST_PORT[0]}:{REDIS_HOST_PORT[1]}")
    return REDIS_HOST_PORT


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's chromium binary for Playwright."""
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        missing_service(f"chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium"))


@pytest.fixture(scope="session")
def java_available() -> str:
    """A Java runtime for Spark in local mode."""
    java = shutil.which("java")
    if java is None:
        missing_service("java is not installed (Spark needs a JRE: apt-get install default-jre)")
    return str(java)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings pointing at a temporary data directory (SQLite store)."""
    return load_settings({"PERFMARK_HOME": str(tmp_path / "home")})


@pytest.fixture
def clock() -> FixedClock:
    """A clock that stands still at 2026-01-01T00:00Z until advanced."""
    return FixedClock()


@pytest.fixture
def container(settings: Settings, clock: FixedClock) -> Iterator[Container]:
    """A migrated store on SQLite in a temporary directory."""
    built = build_container(settings, clock=clock)
    yield built
    built.engine.dispose()


@pytest.fixture
def any_container(database_url: str, tmp_path: Path, clock: FixedClock) -> Iterator[Container]:
    """A migrated store, once on SQLite and once on PostgreSQL."""
    built = build_container(
        load_settings(
            {"PERFMARK_HOME": str(tmp_path / "home"), "PERFMARK_DATABASE_URL": database_url}
        ),
        clock=clock,
    )
    yield built
    built.engine.dispose()


@pytest.fixture
def workspace(container: Container) -> NewWorkspace:
    """A workspace with an owner and an owner API key."""
    return create_workspace(container, WorkspaceSpec(name="Test"), "owner@example.com")
