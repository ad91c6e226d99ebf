"""Alembic environment: runs migrations on the connection perfmark hands in, or on the URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from perfmark.adapters.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")


def _run(connection_to_use: object) -> None:
    context.configure(
        connection=connection_to_use,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as new_connection:
        _run(new_connection)
