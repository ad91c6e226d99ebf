"""The optimizer's tables: rules, cooldowns, the audit log, experiments, weights, parked items."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    RowMapping,
    Table,
    and_,
    delete,
    insert,
    select,
    update,
)

from perfmark.adapters.store.schema import (
    optimize_audit,
    optimize_experiments,
    optimize_parked_items,
    optimize_rule_targets,
    optimize_rules,
    optimize_weight_history,
)
from perfmark.clock import utc

__all__ = [
    "AuditEntry",
    "ExperimentRow",
    "RuleRow",
    "add_audit",
    "add_weights",
    "archive_experiment_row",
    "archive_rule_row",
    "claim_experiment",
    "claim_rule",
    "due_experiment_ids",
    "due_rule_ids",
    "get_experiment_row",
    "get_rule_row",
    "insert_experiment_row",
    "insert_rule_row",
    "last_fired",
    "list_audit",
    "list_experiment_rows",
    "list_rule_rows",
    "mark_rule_run",
    "park_item",
    "set_last_fired",
    "unpark_item",
    "update_experiment_row",
    "update_rule_row",
    "weight_history",
]

#: Most audit rows one read returns.
MAX_AUDIT_ROWS = 1000


def _when(value: datetime | None) -> datetime | None:
    # SQLite hands timestamps back without a zone; everything stored here is UTC.
    return None if value is None else utc(value)


def _get_row(conn: Connection, table: Table, workspace_id: str, row_id: str) -> RowMapping | None:
    """One row of the workspace by id (archived ones too), or None."""
    return (
        conn.execute(
            select(table).where(table.c.workspace_id == workspace_id, table.c.id == row_id)
        )
        .mappings()
        .first()
    )


def _list_rows(
    conn: Connection, table: Table, workspace_id: str, *, include_archived: bool
) -> Sequence[RowMapping]:
    """The workspace's rows, oldest first (ids sort by time)."""
    query = select(table).where(table.c.workspace_id == workspace_id)
    if not include_archived:
        query = query.where(table.c.archived_at.is_(None))
    return conn.execute(query.order_by(table.c.id)).mappings().all()


def _due_rows(
    conn: Connection, table: Table, active: ColumnElement[bool], next_at: str, now: datetime
) -> list[tuple[str, str, datetime]]:
    """Active, unarchived rows whose `next_at` time has come: (id, workspace id, that time),
    earliest first."""
    column = table.c[next_at]
    rows = conn.execute(
        select(table.c.id, table.c.workspace_id, column)
        .where(active, table.c.archived_at.is_(None), column.is_not(None), column <= now)
        .order_by(column)
    ).all()
    return [(row_id, workspace_id, utc(planned)) for row_id, workspace_id, planned in rows]


def _claim(
    conn: Connection, table: Table, row_id: str, next_at: str, planned: datetime, later: datetime
) -> bool:
    """Move a due row's `next_at` time from `planned` to `later`, unless another scheduler
    already did (then False)."""
    column = table.c[next_at]
    result = conn.execute(
        update(table).where(table.c.id == row_id, column == planned).values({next_at: later})
    )
    return result.rowcount == 1


@dataclass(frozen=True)
class RuleRow:
    """A stored rule: its JSON definition and its schedule."""

    id: str
    workspace_id: str
    name: str
    data: dict[str, Any]
    enabled: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None


def _rule(row: RowMapping) -> RuleRow:
    return RuleRow(
        id=row["id"],
        workspace_id=row["workspace_id"],
        name=row["name"],
        data=dict(row["data"]),
        enabled=bool(row["enabled"]),
        next_run_at=_when(row["next_run_at"]),
        last_run_at=_when(row["last_run_at"]),
        created_at=utc(row["created_at"]),
        updated_at=utc(row["updated_at"]),
        archived_at=_when(row["archived_at"]),
    )


def insert_rule_row(conn: Connection, row: RuleRow) -> None:
    """Store a new rule (the row's fields are the table's columns)."""
    conn.execute(insert(optimize_rules).values(**asdict(row)))


def get_rule_row(conn: Connection, workspace_id: str, rule_id: str) -> RuleRow | None:
    """One rule of the workspace (archived ones too), or None."""
    row = _get_row(conn, optimize_rules, workspace_id, rule_id)
    return None if row is None else _rule(row)


def list_rule_rows(
    conn: Connection, workspace_id: str, *, include_archived: bool = False
) -> list[RuleRow]:
    """The workspace's rules, oldest first."""
    rows = _list_rows(conn, optimize_rules, workspace_id, include_archived=include_archived)
    return [_rule(row) for row in rows]


def update_rule_row(conn: Connection, row: RuleRow) -> None:
    """Write a rule's definition, switch and schedule."""
    conn.execute(
        update(optimize_rules)
        .where(optimize_rules.c.id == row.id)
        .values(
            name=row.name,
            data=row.data,
            enabled=row.enabled,
            next_run_at=row.next_run_at,
            updated_at=row.updated_at,
        )
    )


def archive_rule_row(conn: Connection, rule_id: str, at: datetime) -> None:
    """Stop a rule for good; its audit log stays."""
    conn.execute(
        update(optimize_rules)
        .where(optimize_rules.c.id == rule_id)
        .values(archived_at=at, enabled=False, next_run_at=None, updated_at=at)
    )


def due_rule_ids(conn: Connection, now: datetime) -> list[tuple[str, str, datetime]]:
    """Enabled rules due at `now`: (rule id, workspace id, the planned time), earliest first."""
    return _due_rows(conn, optimize_rules, optimize_rules.c.enabled.is_(True), "next_run_at", now)


def claim_rule(conn: Connection, rule_id: str, planned: datetime, next_run_at: datetime) -> bool:
    """Move a due rule's next run on, unless another scheduler already did (then False)."""
    return _claim(conn, optimize_rules, rule_id, "next_run_at", planned, next_run_at)


def mark_rule_run(conn: Connection, rule_id: str, at: datetime) -> None:
    """Remember when a rule last ran."""
    conn.execute(
        update(optimize_rules).where(optimize_rules.c.id == rule_id).values(last_run_at=at)
    )


def last_fired(conn: Connection, rule_id: str) -> dict[str, datetime]:
    """When the rule last fired on each target it ever fired on."""
    rows = conn.execute(
        select(optimize_rule_targets.c.target_id, optimize_rule_targets.c.last_fired_at).where(
            optimize_rule_targets.c.rule_id == rule_id
        )
    ).all()
    return {row.target_id: utc(row.last_fired_at) for row in rows}


def set_last_fired(conn: Connection, rule_id: str, target_id: str, at: datetime) -> None:
    """Start a target's cooldown."""
    table = optimize_rule_targets
    conn.execute(delete(table).where(table.c.rule_id == rule_id, table.c.target_id == target_id))
    conn.execute(insert(table).values(rule_id=rule_id, target_id=target_id, last_fired_at=at))


@dataclass(frozen=True)
class AuditEntry:
    """One line of the optimizer's audit log, with every number behind it in `data`."""

    workspace_id: str
    source: str  #: "rule", "bandit" or "autopilot"
    source_id: str  #: the rule or experiment id ("" for the autopilot)
    target_kind: str
    target_id: str
    at: datetime
    status: str
    applied: bool
    reason: str
    data: Mapping[str, Any]
    id: int | None = None


def add_audit(conn: Connection, entry: AuditEntry) -> None:
    """Append to the audit log (rows are never edited)."""
    conn.execute(
        insert(optimize_audit).values(
            workspace_id=entry.workspace_id,
            source=entry.source,
            source_id=entry.source_id,
            target_kind=entry.target_kind,
            target_id=entry.target_id[:300],
            at=entry.at,
            status=entry.status,
            applied=entry.applied,
            reason=entry.reason,
            data=dict(entry.data),
        )
    )


def list_audit(
    conn: Connection,
    workspace_id: str,
    *,
    source: str | None = None,
    source_id: str | None = None,
    target_ids: Collection[str] | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """The newest audit rows first, filtered by source, rule/experiment, targets and time."""
    table = optimize_audit
    conditions = [table.c.workspace_id == workspace_id]
    if source is not None:
        conditions.append(table.c.source == source)
    if source_id is not None:
        conditions.append(table.c.source_id == source_id)
    if target_ids is not None:
        conditions.append(table.c.target_id.in_(list(target_ids)))
    if since is not None:
        conditions.append(table.c.at >= since)
    rows = (
        conn.execute(
            select(table)
            .where(and_(*conditions))
            .order_by(table.c.at.desc(), table.c.id.desc())
            .limit(min(max(limit, 1), MAX_AUDIT_ROWS))
        )
        .mappings()
        .all()
    )
    return [
        AuditEntry(
            id=row["id"],
            workspace_id=row["workspace_id"],
            source=row["source"],
            source_id=row["source_id"],
            target_kind=row["target_kind"],
            target_id=row["target_id"],
            at=utc(row["at"]),
            status=row["status"],
            applied=bool(row["applied"]),
            reason=row["reason"],
            data=dict(row["data"]),
        )
        for row in rows
    ]


@dataclass(frozen=True)
class ExperimentRow:
    """A stored experiment: its JSON definition, status and allocation schedule."""

    id: str
    workspace_id: str
    name: str
    campaign_id: str | None
    status: str
    data: dict[str, Any]
    next_allocation_at: datetime | None
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None


def _experiment(row: RowMapping) -> ExperimentRow:
    return ExperimentRow(
        id=row["id"],
        workspace_id=row["workspace_id"],
        name=row["name"],
        campaign_id=row["campaign_id"],
        status=row["status"],
        data=dict(row["data"]),
        next_allocation_at=_when(row["next_allocation_at"]),
        created_at=utc(row["created_at"]),
        updated_at=utc(row["updated_at"]),
        archived_at=_when(row["archived_at"]),
    )


def insert_experiment_row(conn: Connection, row: ExperimentRow) -> None:
    """Store a new experiment (the row's fields are the table's columns)."""
    conn.execute(insert(optimize_experiments).values(**asdict(row)))


def get_experiment_row(
    conn: Connection, workspace_id: str, experiment_id: str
) -> ExperimentRow | None:
    """One experiment of the workspace, or None."""
    row = _get_row(conn, optimize_experiments, workspace_id, experiment_id)
    return None if row is None else _experiment(row)


def list_experiment_rows(
    conn: Connection, workspace_id: str, *, include_archived: bool = False
) -> list[ExperimentRow]:
    """The workspace's experiments, oldest first."""
    rows = _list_rows(conn, optimize_experiments, workspace_id, include_archived=include_archived)
    return [_experiment(row) for row in rows]


def update_experiment_row(conn: Connection, row: ExperimentRow) -> None:
    """Write an experiment's definition, status and schedule."""
    conn.execute(
        update(optimize_experiments)
        .where(optimize_experiments.c.id == row.id)
        .values(
            name=row.name,
            status=row.status,
            data=row.data,
            next_allocation_at=row.next_allocation_at,
            updated_at=row.updated_at,
        )
    )


def archive_experiment_row(conn: Connection, experiment_id: str, at: datetime) -> None:
    """Stop an experiment for good; its history stays."""
    conn.execute(
        update(optimize_experiments)
        .where(optimize_experiments.c.id == experiment_id)
        .values(archived_at=at, status="stopped", next_allocation_at=None, updated_at=at)
    )


def due_experiment_ids(conn: Connection, now: datetime) -> list[tuple[str, str, datetime]]:
    """Experiments whose bandit allocation is due: (id, workspace id, planned time)."""
    table = optimize_experiments
    return _due_rows(conn, table, table.c.status == "running", "next_allocation_at", now)


def claim_experiment(
    conn: Connection, experiment_id: str, planned: datetime, next_at: datetime
) -> bool:
    """Move a due allocation on, unless another scheduler already did (then False)."""
    return _claim(conn, optimize_experiments, experiment_id, "next_allocation_at", planned, next_at)


def add_weights(
    conn: Connection, experiment_id: str, at: datetime, weights: Mapping[str, int]
) -> None:
    """Record the arms' rotation weights in force from `at` on."""
    table = optimize_weight_history
    conn.execute(delete(table).where(table.c.experiment_id == experiment_id, table.c.at == at))
    conn.execute(insert(table).values(experiment_id=experiment_id, at=at, weights=dict(weights)))


def weight_history(conn: Connection, experiment_id: str) -> list[tuple[datetime, dict[str, int]]]:
    """Every recorded set of weights of an experiment, oldest first."""
    table = optimize_weight_history
    rows = conn.execute(
        select(table.c.at, table.c.weights)
        .where(table.c.experiment_id == experiment_id)
        .order_by(table.c.at)
    ).all()
    return [(utc(row.at), {str(k): int(v) for k, v in row.weights.items()}) for row in rows]


def park_item(
    conn: Connection,
    workspace_id: str,
    campaign_id: str,
    kind: str,
    key: str,
    data: Mapping[str, Any],
    at: datetime,
) -> None:
    """Keep a landing page or creative taken out of a rotation, to put back on resume."""
    table = optimize_parked_items
    conn.execute(
        delete(table).where(
            table.c.campaign_id == campaign_id, table.c.kind == kind, table.c.key == key
        )
    )
    conn.execute(
        insert(table).values(
            campaign_id=campaign_id,
            kind=kind,
            key=key,
            workspace_id=workspace_id,
            data=dict(data),
            parked_at=at,
        )
    )


def unpark_item(conn: Connection, campaign_id: str, kind: str, key: str) -> dict[str, Any] | None:
    """Take a parked item back (None when it was never parked)."""
    table = optimize_parked_items
    where = (table.c.campaign_id == campaign_id, table.c.kind == kind, table.c.key == key)
    row = conn.execute(select(table.c.data).where(*where)).first()
    if row is None:
        return None
    conn.execute(delete(table).where(*where))
    return dict(row.data)
