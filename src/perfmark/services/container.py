"""The dependencies every use case needs, built once at start and passed in."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from perfmark.adapters.store.engine import make_engine, migrate
from perfmark.clock import Clock, SystemClock
from perfmark.domain.accounts import Role
from perfmark.settings import Settings

__all__ = ["Container", "Principal", "build_container", "ensure_secret_key"]


@dataclass(frozen=True)
class Principal:
    """Who is calling: a workspace, a role and, for portal roles, the advertiser or publisher."""

    workspace_id: str
    role: Role
    advertiser_id: str | None = None
    publisher_id: str | None = None
    actor_id: str = ""


@dataclass(frozen=True)
class Container:
    """Settings, store engine and clock for one running process."""

    settings: Settings
    engine: Engine
    clock: Clock = field(default_factory=SystemClock)
    secret_key: str = ""


def ensure_secret_key(settings: Settings) -> str:
    """The configured secret key, or one generated once and kept in the data directory."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.home) / "secret_key"
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    path.write_text(key, encoding="utf-8")
    path.chmod(0o600)
    return key


def build_container(
    settings: Settings, *, clock: Clock | None = None, run_migrations: bool = True
) -> Container:
    """Connect to the store (migrating it to the latest schema) and bundle the dependencies."""
    engine = make_engine(settings.resolved_database_url)
    if run_migrations:
        migrate(engine)
    return Container(
        settings=settings,
        engine=engine,
        clock=clock or SystemClock(),
        secret_key=ensure_secret_key(settings),
    )
