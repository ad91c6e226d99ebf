"""Store access for the processor: clicks by id, conversions by transaction id, identities.

`BatchConversions` is the processor's view of one batch: the clicks and conversions its
events name, read with a few IN queries up front instead of three queries per conversion,
kept current in memory as the batch changes them, and written with one executemany each
(measured: per-conversion statements were most of the processor's own time).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from perfmark.adapters.store.schema import clicks, conversions, identities
from perfmark.clock import utc

__all__ = [
    "BatchConversions",
    "click_by_id",
    "clicks_by_ids",
    "clicks_of_visitors",
    "conversion_by_event",
    "conversion_by_txid",
    "conversions_by_event_ids",
    "conversions_by_txids",
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


#: Values per IN list: far below any database's bound-parameter limit (SQLite's is 32766).
IN_CHUNK = 500


def _rows_where_in(
    conn: Connection, table: Table, column: str, values: Iterable[str], *where: Any
) -> list[dict[str, Any]]:
    unique = sorted(set(values))
    rows: list[dict[str, Any]] = []
    for start in range(0, len(unique), IN_CHUNK):
        chunk = unique[start : start + IN_CHUNK]
        query = select(table).where(table.c[column].in_(chunk), *where)
        rows.extend(dict(row) for row in conn.execute(query).mappings())
    return rows


def clicks_by_ids(conn: Connection, click_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The stored clicks with these ids (with their full event data), by click id."""
    return {row["click_id"]: row for row in _rows_where_in(conn, clicks, "click_id", click_ids)}


def conversions_by_event_ids(
    conn: Connection, event_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The conversions recorded from these events, by event id."""
    rows = _rows_where_in(conn, conversions, "event_id", event_ids)
    return {row["event_id"]: row for row in rows}


def conversions_by_txids(
    conn: Connection, workspace_id: str, txids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The workspace's conversions with these transaction ids, by transaction id."""
    where = conversions.c.workspace_id == workspace_id
    return {row["txid"]: row for row in _rows_where_in(conn, conversions, "txid", txids, where)}


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


# Built once (the columns to set come from the parameters' names): the processor changes the
# row of nearly every conversion it bills, and building the statement each time cost more
# than running it on SQLite.
_SET_STATUS = update(conversions).where(conversions.c.id == bindparam("b_id"))


def set_conversion_status(
    conn: Connection,
    conversion_id: str,
    status: str,
    now: datetime,
    data: dict[str, Any] | None = None,
) -> None:
    """Change a conversion's status (and its data, when given)."""
    values: dict[str, Any] = {"b_id": conversion_id, "status": status, "updated_at": now}
    if data is not None:
        values["data"] = data
    conn.execute(_SET_STATUS, values)


class BatchConversions:
    """A batch's clicks and conversions: read together, kept current, written together.

    Lookups answer what the single-row queries (`click_by_id`, `conversion_by_event`,
    `conversion_by_txid`) would answer at that point of the batch, the batch's own
    inserts and status changes included: `prefetch` reads what the batch names with IN
    queries; a key it did not cover falls back to its single-row query. New conversions
    and status changes are held until `flush`, which must run before anything else reads
    the conversions table in the same transaction (the billing step does).
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._clicks: dict[str, dict[str, Any] | None] = {}
        self._by_event: dict[str, dict[str, Any] | None] = {}
        self._by_txid: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._new: dict[str, dict[str, Any]] = {}  # conversion id -> row to insert
        self._changed: dict[str, dict[str, Any]] = {}  # conversion id -> stored row changed

    def prefetch(
        self,
        event_ids: Iterable[str],
        click_ids: Iterable[str],
        txids: Iterable[tuple[str, str]],
    ) -> None:
        """Read the conversions of these event ids, the clicks and the (workspace, txid)s."""
        event_ids, click_ids = set(event_ids), set(click_ids)
        found_events = conversions_by_event_ids(self.conn, event_ids)
        self._by_event.update({key: found_events.get(key) for key in event_ids})
        found_clicks = clicks_by_ids(self.conn, click_ids)
        self._clicks.update({key: found_clicks.get(key) for key in click_ids})
        by_workspace: dict[str, set[str]] = {}
        for workspace_id, txid in txids:
            by_workspace.setdefault(workspace_id, set()).add(txid)
        for workspace_id, wanted in by_workspace.items():
            found = conversions_by_txids(self.conn, workspace_id, wanted)
            self._by_txid.update({(workspace_id, txid): found.get(txid) for txid in wanted})

    def click(self, click_id: str) -> dict[str, Any] | None:
        """The stored click with this id, or None."""
        if click_id not in self._clicks:
            self._clicks[click_id] = click_by_id(self.conn, click_id)
        return self._clicks[click_id]

    def by_event(self, event_id: str) -> dict[str, Any] | None:
        """The conversion recorded from this event (in the store or by this batch), or None."""
        if event_id not in self._by_event:
            self._by_event[event_id] = conversion_by_event(self.conn, event_id)
        return self._by_event[event_id]

    def by_txid(self, workspace_id: str, txid: str) -> dict[str, Any] | None:
        """The workspace's conversion with this transaction id, or None."""
        key = (workspace_id, txid)
        if key not in self._by_txid:
            self._by_txid[key] = conversion_by_txid(self.conn, workspace_id, txid)
        return self._by_txid[key]

    def insert(self, row: dict[str, Any]) -> None:
        """Record a new conversion (a row of the conversions table, its `id` included)."""
        self._new[row["id"]] = row
        self._remember(row)

    def set_status(self, row: dict[str, Any], status: str, now: datetime, data: Any) -> None:
        """Change a conversion's status and data, as `set_conversion_status` does.

        `row` (what a lookup returned) is left as it was; later lookups see the change.
        """
        changed = {**row, "status": status, "updated_at": now, "data": data}
        if row["id"] in self._new:
            self._new[row["id"]] = changed  # not written yet: written changed
        else:
            self._changed[row["id"]] = changed
        self._remember(changed)

    def _remember(self, row: dict[str, Any]) -> None:
        self._by_event[row["event_id"]] = row
        if row.get("txid"):
            self._by_txid[(row["workspace_id"], row["txid"])] = row

    def flush(self) -> None:
        """Write the new conversions and the status changes (one executemany each)."""
        if self._new:
            self.conn.execute(conversions.insert(), list(self._new.values()))
        if self._changed:
            statement = (
                update(conversions)
                .where(conversions.c.id == bindparam("changed_id"))
                .values(
                    status=bindparam("new_status"),
                    updated_at=bindparam("new_updated_at"),
                    data=bindparam("new_data"),
                )
            )
            self.conn.execute(
                statement,
                [
                    {
                        "changed_id": row["id"],
                        "new_status": row["status"],
                        "new_updated_at": row["updated_at"],
                        "new_data": row["data"],
                    }
                    for row in self._changed.values()
                ],
            )
        self._new.clear()
        self._changed.clear()


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
