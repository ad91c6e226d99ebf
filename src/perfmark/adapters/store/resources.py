"""Generic storage of workspace-owned objects: insert, get, filtered and paged lists, update."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, RowMapping, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from perfmark.adapters.store.codec import decode_spec, encode_spec, storable_text
from perfmark.adapters.store.schema import config_version
from perfmark.clock import utc
from perfmark.domain.records import InvalidRecord, Page, Record
from perfmark.errors import ConflictError, StoredObjectInvalidError, ValidationError
from perfmark.ids import new_id

__all__ = ["ResourceKind", "ResourceStore", "bump_config_version", "read_config_version"]

SpecT = TypeVar("SpecT")
ItemT = TypeVar("ItemT")

logger = logging.getLogger("perfmark.store")


@dataclass(frozen=True)
class ResourceKind(Generic[SpecT]):
    """How one kind of object is stored: its table, id prefix, spec type and indexed columns."""

    name: str
    singular: str
    prefix: str
    table: Table
    spec_type: type[SpecT]
    columns: Callable[[SpecT], dict[str, Any]]
    filters: tuple[str, ...] = ()


class ResourceStore(Generic[SpecT]):
    """Reads and writes one kind of object; every call runs on the caller's connection."""

    def __init__(self, kind: ResourceKind[SpecT]) -> None:
        self.kind = kind
        self.table = kind.table

    def _record(self, row: RowMapping) -> Record[SpecT]:
        try:
            spec = decode_spec(self.kind.spec_type, row["data"])
        except ValidationError as error:
            raise StoredObjectInvalidError(
                f"{self.kind.singular} {row['id']} as stored no longer passes validation: "
                f"{error.message}. Send a PATCH with a valid "
                f"{error.field or 'value'} to repair it",
                field=error.field,
            ) from None
        return _with_spec(row, spec)

    def stored(
        self, conn: Connection, workspace_id: str, object_id: str
    ) -> Record[dict[str, Any]] | None:
        """One object as stored, its data not validated (None when not in this workspace).

        For the updates that repair an object whose data no longer passes validation.
        """
        row = self._row(conn, workspace_id, object_id)
        return None if row is None else _with_spec(row, dict(row["data"]))

    def insert(
        self,
        conn: Connection,
        workspace_id: str,
        spec: SpecT,
        now: datetime,
        extra: Mapping[str, Any] | None = None,
    ) -> Record[SpecT]:
        """Store a new object and return it."""
        object_id = new_id(self.kind.prefix)
        values = {
            "id": object_id,
            "workspace_id": workspace_id,
            "data": encode_spec(spec),
            "created_at": now,
            "updated_at": now,
            "archived_at": None,
            "version": 1,
            **self.kind.columns(spec),
            **(extra or {}),
        }
        try:
            with conn.begin_nested():
                conn.execute(insert(self.table).values(**values))
        except IntegrityError as exc:
            raise ConflictError(_conflict_message(self.kind.singular, exc)) from None
        bump_config_version(conn)
        return Record(object_id, workspace_id, spec, now, now, None, 1)

    def _row(self, conn: Connection, workspace_id: str, object_id: str) -> RowMapping | None:
        if not storable_text(object_id):
            return None  # no stored id contains NUL; PostgreSQL would refuse the query
        query = select(self.table).where(
            self.table.c.id == object_id, self.table.c.workspace_id == workspace_id
        )
        row: RowMapping | None = conn.execute(query).mappings().first()
        return row

    def get(self, conn: Connection, workspace_id: str, object_id: str) -> Record[SpecT] | None:
        """One object of this workspace, or None (another workspace's id is None too)."""
        row = self._row(conn, workspace_id, object_id)
        return None if row is None else self._record(row)

    def get_column(self, conn: Connection, workspace_id: str, object_id: str, column: str) -> Any:
        """One stored column of an object (secrets are columns, not part of the spec)."""
        if not storable_text(object_id):
            return None
        return conn.execute(
            select(self.table.c[column]).where(
                self.table.c.id == object_id, self.table.c.workspace_id == workspace_id
            )
        ).scalar_one_or_none()

    def find_by(self, conn: Connection, column: str, value: Any) -> Record[SpecT] | None:
        """The object whose unique `column` equals `value`, across workspaces (e.g. a slug)."""
        if isinstance(value, str) and not storable_text(value):
            return None
        row = conn.execute(select(self.table).where(self.table.c[column] == value)).mappings()
        first = row.first()
        return None if first is None else self._record(first)

    def list(
        self,
        conn: Connection,
        workspace_id: str,
        *,
        filters: Mapping[str, str | list[str]] | None = None,
        cursor: str | None = None,
        limit: int = 50,
        include_archived: bool = False,
    ) -> Page[Record[SpecT]]:
        """A page of objects in id (= creation) order, after `cursor` when given.

        Objects whose stored data no longer validates are in `invalid`, not `items`.
        """
        if cursor is not None and not storable_text(cursor):
            raise ValidationError(
                f"cursor {cursor[:64]!r} is not a cursor this API returned; pass next_cursor "
                "from the previous page",
                field="cursor",
            )
        query = select(self.table).where(self.table.c.workspace_id == workspace_id)
        for column, value in (filters or {}).items():
            values = value if isinstance(value, list) else [value]
            if not all(storable_text(item) for item in values):
                return Page((), None)  # nothing stored can equal text with NUL in it
            if isinstance(value, list):
                query = query.where(self.table.c[column].in_(value))
            else:
                query = query.where(self.table.c[column] == value)
        if not include_archived:
            query = query.where(self.table.c.archived_at.is_(None))
        if cursor:
            query = query.where(self.table.c.id > cursor)
        rows = conn.execute(query.order_by(self.table.c.id).limit(limit + 1)).mappings().all()
        # An object that no longer validates is left out and named, so that one broken object
        # does not make the whole list (and every job that reads it) unusable.
        items: list[Record[SpecT]] = []
        invalid: list[InvalidRecord] = []
        for row in rows[:limit]:
            try:
                items.append(self._record(row))
            except StoredObjectInvalidError as error:
                logger.warning("left out of a list of %s: %s", self.kind.name, error.message)
                invalid.append(InvalidRecord(row["id"], error.message, error.field))
        next_cursor = rows[limit - 1]["id"] if len(rows) > limit else None
        return Page(tuple(items), next_cursor, tuple(invalid))

    def replace(
        self,
        conn: Connection,
        record: Record[Any],
        spec: SpecT,
        now: datetime,
        *,
        archived_at: datetime | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Record[SpecT]:
        """Store a new spec for an existing object (optimistic: fails if it changed meanwhile).

        `record` is the object as read (its spec, or its stored data, is not used).
        """
        values = {
            "data": encode_spec(spec),
            "updated_at": now,
            "archived_at": archived_at,
            "version": record.version + 1,
            **self.kind.columns(spec),
            **(extra or {}),
        }
        self._update(conn, record, values)
        return Record(
            record.id,
            record.workspace_id,
            spec,
            record.created_at,
            now,
            archived_at,
            record.version + 1,
        )

    def archive_as_stored(
        self, conn: Connection, record: Record[dict[str, Any]], now: datetime
    ) -> Record[dict[str, Any]]:
        """Archive an object whose stored data no longer validates, its data kept as stored."""
        values = {"updated_at": now, "archived_at": now, "version": record.version + 1}
        self._update(conn, record, values)
        return Record(
            record.id, record.workspace_id, record.spec, record.created_at, now, now,
            record.version + 1,
        )  # fmt: skip

    def _update(self, conn: Connection, record: Record[Any], values: Mapping[str, Any]) -> None:
        """Write `values` to the object if it is still at `record.version`, else a conflict."""
        try:
            with conn.begin_nested():
                result = conn.execute(
                    update(self.table)
                    .where(
                        self.table.c.id == record.id,
                        self.table.c.workspace_id == record.workspace_id,
                        self.table.c.version == record.version,
                    )
                    .values(**values)
                )
        except IntegrityError as exc:
            raise ConflictError(_conflict_message(self.kind.singular, exc)) from None
        if result.rowcount != 1:
            raise ConflictError(
                f"{self.kind.singular} {record.id} was changed by another request; "
                "fetch it again and retry"
            )
        bump_config_version(conn)


def _with_spec(row: RowMapping, spec: ItemT) -> Record[ItemT]:
    return Record(
        id=row["id"],
        workspace_id=row["workspace_id"],
        spec=spec,
        created_at=_aware(row["created_at"]),
        updated_at=_aware(row["updated_at"]),
        archived_at=_aware(row["archived_at"]) if row["archived_at"] else None,
        version=row["version"],
    )


def _conflict_message(singular: str, exc: IntegrityError) -> str:
    text = str(exc.orig).lower()
    for column in ("slug", "key", "email"):
        if column in text:
            return f"another {singular} already uses this {column}; choose a different one"
    return f"this {singular} conflicts with an existing one or names an unknown object"


def _aware(value: datetime) -> datetime:
    return utc(value)


def bump_config_version(conn: Connection) -> None:
    """Count a configuration change, so trackers know to reload their cache."""
    updated = conn.execute(
        update(config_version)
        .where(config_version.c.id == 1)
        .values(version=config_version.c.version + 1)
    )
    if updated.rowcount == 0:
        conn.execute(insert(config_version).values(id=1, version=1))


def read_config_version(conn: Connection) -> int:
    """The current configuration version (0 when nothing was ever configured)."""
    value = conn.execute(
        select(config_version.c.version).where(config_version.c.id == 1)
    ).scalar_one_or_none()
    return int(value or 0)
