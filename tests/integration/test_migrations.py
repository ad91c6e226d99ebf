"""Alembic migrations: an empty database upgrades to head, matches the metadata, and downgrades."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from perfmark.adapters.store.engine import alembic_config, downgrade, make_engine, migrate
from perfmark.adapters.store.schema import metadata


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on an empty database (SQLite file or a fresh PostgreSQL database)."""
    built = make_engine(database_url)
    yield built
    built.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _head() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None
    return head


def _current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_upgrade_creates_every_table_and_stamps_head(engine: Engine) -> None:
    assert _tables(engine) == set()
    migrate(engine)
    assert _tables(engine) == set(metadata.tables) | {"alembic_version"}
    assert _current(engine) == _head()


def test_migrated_schema_matches_the_metadata(engine: Engine) -> None:
    migrate(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": False}
        )
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_downgrade_to_base_leaves_only_the_version_table(engine: Engine) -> None:
    migrate(engine)
    downgrade(engine)
    assert _tables(engine) <= {"alembic_version"}
    assert _current(engine) is None


def test_upgrade_downgrade_upgrade_round_trip(engine: Engine) -> None:
    migrate(engine)
    downgrade(engine)
    migrate(engine)
    assert _tables(engine) == set(metadata.tables) | {"alembic_version"}
    assert _current(engine) == _head()


def test_upgrade_is_idempotent(engine: Engine) -> None:
    migrate(engine)
    migrate(engine)
    assert _current(engine) == _head()
