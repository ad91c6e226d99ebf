"""Store access for the processor: clicks by id, conversions by transaction id, identities."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from perfmark.adapters.store.schema import clicks, conversions, identities
from perfmark.clock import utc

__all__ = [
    "click_by_id",
    "clicks_of_visitors",
    "conversion_by_event",
    "conversion_by_txid",
    "insert_ignoring_duplicates",
    "set_conversion_status",
    "upsert_identity",
    "visitors_of_customer",
]


def insert_ignoring_duplicates(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]]
) -> int:
    """Insert rows, skipping those whose key already exists; returns how many were new."""
    if not rows:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).on_conflict_do_nothing()
    result = conn.execute(statement, list(rows))
    return max(result.rowcount, 0)


def click_by_id(conn: Connection, click_id: str) -> dict[str, Any] | None:
    """A stored click (with its full event data), or None."""
    row = conn.execute(select(clicks).where(clicks.c.click_id == click_id)).mappings().first()
    return dict(row) if row else None


def clicks_of_visitors(
    conn: Connection, workspace_id: str, visitor_ids: Sequence[str], since: datetime
) -> list[dict[str, Any]]:
    """Non-bot clicks of these visitors since `since`, oldest first."""
    if not visitor_ids:
        return []
    rows = conn.execute(
        select(clicks)
        .where(
            clicks.c.workspace_id == workspace_id,
            clicks.c.visitor_id.in_(list(visitor_ids)),
            clicks.c.ts >= since,
            clicks.c.is_bot.is_(False),
        )
        .order_by(clicks.c.ts, clicks.c.click_id)
    ).mappings()
    return [dict(row) for row in rows]


def conversion_by_txid(conn: Connection, workspace_id: str, txid: str) -> dict[str, Any] | None:
    """The conversion already recorded with this transaction id, or None."""
    row = (
        conn.execute(
            select(conversions).where(
                conversions.c.workspace_id == workspace_id, conversions.c.txid == txid
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def conversion_by_event(conn: Connection, event_id: str) -> dict[str, Any] | None:
    """The conversion recorded from this event, or None."""
    row = (
        conn.execute(select(conversions).where(conversions.c.event_id == event_id))
        .mappings()
        .first()
    )
    return dict(row) if row else None


def set_conversion_status(
    conn: Connection,
    conversion_id: str,
    status: str,
    now: datetime,
    data: dict[str, Any] | None = None,
) -> None:
    """Change a conversion's status (and its data, when given)."""
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if data is not None:
        values["data"] = data
    conn.execute(update(conversions).where(conversions.c.id == conversion_id).values(**values))


def upsert_identity(
    conn: Connection, workspace_id: str, visitor_id: str, customer_id: str, ts: datetime
) -> None:
    """Link a visitor (anonymous id) to a customer id; the latest link wins."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(identities).values(
        workspace_id=workspace_id, visitor_id=visitor_id, customer_id=customer_id, ts=ts
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[identities.c.workspace_id, identities.c.visitor_id],
            set_={"customer_id": customer_id, "ts": ts},
        )
    )


def visitors_of_customer(conn: Connection, workspace_id: str, customer_id: str) -> list[str]:
    """Every visitor id linked to a customer id."""
    return list(
        conn.execute(
            select(identities.c.visitor_id).where(
                identities.c.workspace_id == workspace_id, identities.c.customer_id == customer_id
            )
        ).scalars()
    )


def count_rows(conn: Connection, table: Table) -> int:
    """Rows in a table (for tests and status output)."""
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def aware(value: datetime) -> datetime:
    """Stored times come back naive from SQLite; they are UTC."""
    return utc(value)
