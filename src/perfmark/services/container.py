"""The dependencies every use case needs, built once at start and passed in."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, NoSuchModuleError, OperationalError

from perfmark.adapters.store.engine import make_engine, migrate
from perfmark.clock import Clock, SystemClock
from perfmark.domain.accounts import Role
from perfmark.settings import Settings, SettingsError

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
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Several workers may start at once: each writes a private temp file and links it
        # into place, which only the first can do, so every process ends up with one key.
        temp = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(32))
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
        finally:
            temp.unlink()
    return path.read_text(encoding="utf-8").strip()


def build_container(
    settings: Settings, *, clock: Clock | None = None, run_migrations: bool = True
) -> Container:
    """Connect to the store (migrating it to the latest schema) and bundle the dependencies.

    A database that cannot be reached or a data directory that cannot be written is a
    SettingsError naming the setting, so commands report one line instead of a traceback.
    """
    url = settings.resolved_database_url
    try:
        engine = make_engine(url)
        if run_migrations:
            migrate(engine)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise SettingsError(
            f"setting database_url {_shown(url)!r} is not usable ({exc.__class__.__name__}); "
            "use sqlite:///path/to/file.db or postgresql://user@host/dbname",
            field="database_url",
        ) from None
    except (OperationalError, InterfaceError) as exc:
        raise SettingsError(
            f"cannot reach the database at {_shown(url)!r} ({_first_line(exc.orig)}); "
            "check that it runs and that database_url is right",
            field="database_url",
        ) from None
    except OSError as exc:
        raise SettingsError(
            f"cannot use the data directory {str(settings.home)!r}: {exc.strerror}; "
            "set home (PERFMARK_HOME) to a writable directory",
            field="home",
        ) from None
    try:
        secret_key = ensure_secret_key(settings)
    except OSError as exc:
        raise SettingsError(
            f"cannot keep the secret key in {str(settings.home)!r}: {exc.strerror}; "
            "set home (PERFMARK_HOME) to a writable directory or set secret_key",
            field="home",
        ) from None
    return Container(
        settings=settings, engine=engine, clock=clock or SystemClock(), secret_key=secret_key
    )


def _shown(url: str) -> str:
    """A database URL with any password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url[:200]


def _first_line(error: object) -> str:
    return str(error).strip().splitlines()[0][:200] if str(error).strip() else "no detail"
