"""Outbound postback tables on the caller's connection: the queue, its attempt log, webhooks."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from perfmark.adapters.store.schema import (
    advertiser_webhooks,
    postback_attempts,
    postback_deliveries,
)

__all__ = [
    "claim_delivery",
    "due_deliveries",
    "finish_attempt",
    "insert_delivery",
    "put_webhook",
    "select_deliveries",
    "webhook_url",
]


def webhook_url(conn: Connection, workspace_id: str, advertiser_id: str) -> str | None:
    """Where the advertiser's conversion webhooks go, if it set a URL."""
    value = conn.execute(
        select(advertiser_webhooks.c.url).where(
            advertiser_webhooks.c.workspace_id == workspace_id,
            advertiser_webhooks.c.advertiser_id == advertiser_id,
        )
    ).scalar_one_or_none()
    return None if value is None else str(value)


def insert_delivery(conn: Connection, values: Mapping[str, Any]) -> bool:
    """Queue a delivery; False when one with the same dedupe key exists (a redone batch)."""
    # RETURNING tells reliably on both databases whether the row is new (psycopg reports no
    # rowcount for INSERT ... ON CONFLICT DO NOTHING).
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(postback_deliveries).values(**values).on_conflict_do_nothing()
    return conn.execute(statement.returning(postback_deliveries.c.id)).first() is not None


def due_deliveries(conn: Connection, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Deliveries waiting for an attempt whose time has come, oldest first."""
    table = postback_deliveries
    rows = conn.execute(
        select(table)
        .where(table.c.status.in_(["pending", "retrying"]), table.c.next_attempt_at <= now)
        .order_by(table.c.next_attempt_at, table.c.id)
        .limit(limit)
    ).mappings()
    return [dict(row) for row in rows]


def claim_delivery(
    conn: Connection, row: Mapping[str, Any], lease_until: datetime, now: datetime
) -> bool:
    """Take a delivery for one attempt (moves its next attempt to the lease's end).

    Conditional on the row being unchanged, so two workers never send the same attempt.
    """
    table = postback_deliveries
    claimed = conn.execute(
        update(table)
        .where(
            table.c.id == row["id"],
            table.c.total_attempts == row["total_attempts"],
            table.c.status == row["status"],
        )
        .values(next_attempt_at=lease_until, updated_at=now)
    )
    return claimed.rowcount == 1


def finish_attempt(
    conn: Connection,
    delivery_id: str,
    values: Mapping[str, Any],
    attempt: Mapping[str, Any],
) -> None:
    """Store a delivery's new state and log its attempt."""
    conn.execute(
        update(postback_deliveries).where(postback_deliveries.c.id == delivery_id).values(**values)
    )
    conn.execute(insert(postback_attempts).values(delivery_id=delivery_id, **attempt))


def select_deliveries(
    conn: Connection,
    workspace_id: str,
    *,
    status: str | None = None,
    conversion_id: str | None = None,
    target: str | None = None,
    party_id: str | None = None,
    delivery_id: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Deliveries of the workspace in id order, each with its `attempts_log`."""
    table = postback_deliveries
    query = select(table).where(table.c.workspace_id == workspace_id)
    for column, value in (
        (table.c.id, delivery_id),
        (table.c.status, status),
        (table.c.conversion_id, conversion_id),
        (table.c.target, target),
        (table.c.party_id, party_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if cursor:
        query = query.where(table.c.id > cursor)
    rows = [dict(row) for row in conn.execute(query.order_by(table.c.id).limit(limit)).mappings()]
    ids = [row["id"] for row in rows]
    log: dict[str, list[dict[str, Any]]] = {delivery_id: [] for delivery_id in ids}
    if ids:
        for attempt in conn.execute(
            select(postback_attempts)
            .where(postback_attempts.c.delivery_id.in_(ids))
            .order_by(postback_attempts.c.delivery_id, postback_attempts.c.seq)
        ).mappings():
            log[attempt["delivery_id"]].append(dict(attempt))
    for row in rows:
        row["attempts_log"] = log[row["id"]]
    return rows


def put_webhook(
    conn: Connection, workspace_id: str, advertiser_id: str, url: str | None, now: datetime
) -> None:
    """Set (or with None, remove) an advertiser's webhook URL."""
    conn.execute(
        advertiser_webhooks.delete().where(
            advertiser_webhooks.c.workspace_id == workspace_id,
            advertiser_webhooks.c.advertiser_id == advertiser_id,
        )
    )
    if url is not None:
        conn.execute(
            insert(advertiser_webhooks).values(
                advertiser_id=advertiser_id, workspace_id=workspace_id, url=url, updated_at=now
            )
        )
