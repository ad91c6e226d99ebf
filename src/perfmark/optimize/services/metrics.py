"""Windowed metrics for the optimizer, read through the one report layer (`run_report`).

A goal key (lead quality) changes what counts as a conversion: traffic and cost come from
every event, conversions and their value only from conversions of that goal. The report
layer filters whole events, so the two halves are read separately and joined by group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.schema import goals
from perfmark.clock import utc
from perfmark.errors import ValidationError
from perfmark.optimize.domain.rule_evaluation import MetricSnapshot
from perfmark.reports.domain.request import MAX_PAGE_SIZE, DateBasis, ReportRequest
from perfmark.reports.service import run_report
from perfmark.services.accounts import get_workspace
from perfmark.services.container import Container

__all__ = [
    "LEAD_GOAL_KEYS",
    "OUTCOME_METRICS",
    "SNAPSHOT_METRICS",
    "MetricQuery",
    "check_goal",
    "grouped_metrics",
    "local_today",
    "snapshot_of",
    "workspace_zone",
]

#: Metrics that count conversions or their value: read from the goal's conversions only.
OUTCOME_METRICS = frozenset({"conversions", "revenue", "customers"})
#: The metrics a rule snapshot is built from ("leads" only when a rule reads CPL).
SNAPSHOT_METRICS = ("impressions", "clicks", "conversions", "cost", "revenue")
#: "leads" is not a report metric: it is read as the conversions of these goals, which is
#: how the reports define leads for CPL.
LEAD_GOAL_KEYS = ("lead", "signup")
_ZERO = Decimal(0)


@dataclass(frozen=True)
class MetricQuery:
    """Sums of `metrics` per group of `dimensions` over local dates [start, end]."""

    workspace_id: str
    start: date
    end: date
    dimensions: tuple[str, ...]
    metrics: tuple[str, ...] = SNAPSHOT_METRICS
    filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    goal: str | None = None
    date_basis: DateBasis = DateBasis.CONVERSION
    currency: str | None = None  #: amounts in this currency (default: the workspace's)


def workspace_zone(container: Container, workspace_id: str) -> ZoneInfo:
    """The workspace's time zone (day boundaries of every window follow it)."""
    return ZoneInfo(get_workspace(container, workspace_id).spec.timezone)


def local_today(container: Container, workspace_id: str, now: datetime) -> date:
    """The local date of the last instant before `now`: at local midnight, the day just ended."""
    zone = workspace_zone(container, workspace_id)
    return (utc(now) - timedelta(microseconds=1)).astimezone(zone).date()


def check_goal(container: Container, workspace_id: str, goal: str | None) -> str | None:
    """A goal key that exists in the workspace (or None for every conversion)."""
    if goal is None:
        return None
    with transaction(container.engine) as conn:
        found = conn.execute(
            select(goals.c.id).where(
                goals.c.workspace_id == workspace_id,
                goals.c.key == goal,
                goals.c.archived_at.is_(None),
            )
        ).first()
    if found is None:
        raise ValidationError(
            f"goal {goal!r} is not a goal key of this workspace; list the keys at /api/goals",
            field="goal",
        )
    return goal


def _amount(value: object) -> Decimal:
    if value is None:
        return _ZERO
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _rows(
    container: Container,
    query: MetricQuery,
    metrics: tuple[str, ...],
    goals: tuple[str, ...] | None,
) -> dict[tuple[str, ...], dict[str, Decimal]]:
    filters = dict(query.filters)
    if goals is not None:
        filters["goal"] = goals
    zone = workspace_zone(container, query.workspace_id)
    groups: dict[tuple[str, ...], dict[str, Decimal]] = {}
    offset = 0
    while True:
        request = ReportRequest(
            workspace_id=query.workspace_id,
            start=query.start,
            end=query.end,
            timezone=str(zone),
            dimensions=query.dimensions,
            metrics=metrics,
            filters=filters,
            date_basis=query.date_basis,
            currency=query.currency,
            limit=MAX_PAGE_SIZE,
            offset=offset,
        )
        result = run_report(container, request)
        for row in result.rows:
            key = tuple(
                "" if row.get(name) is None else str(row[name]) for name in query.dimensions
            )
            groups[key] = {name: _amount(row.get(name)) for name in metrics}
        offset += MAX_PAGE_SIZE
        if offset >= result.total_rows:
            return groups


def grouped_metrics(
    container: Container, query: MetricQuery
) -> dict[tuple[str, ...], dict[str, Decimal]]:
    """Each group's metrics (0 where the group has none); groups with no events are absent."""
    wanted = tuple(name for name in query.metrics if name != "leads")
    parts: list[tuple[tuple[str, ...], tuple[str, ...] | None]]
    if query.goal is None:
        parts = [(wanted, None)]
    else:
        traffic = tuple(name for name in wanted if name not in OUTCOME_METRICS)
        outcome = tuple(name for name in wanted if name in OUTCOME_METRICS)
        parts = [(traffic, None), (outcome, (query.goal,))]
    merged: dict[tuple[str, ...], dict[str, Decimal]] = {}
    for metrics, goal_keys in parts:
        if metrics:
            for key, values in _rows(container, query, metrics, goal_keys).items():
                merged.setdefault(key, dict.fromkeys(query.metrics, _ZERO)).update(values)
    if "leads" in query.metrics:
        for key, values in _rows(container, query, ("conversions",), LEAD_GOAL_KEYS).items():
            merged.setdefault(key, dict.fromkeys(query.metrics, _ZERO))["leads"] = values[
                "conversions"
            ]
    return merged


def snapshot_of(values: Mapping[str, Decimal] | None) -> MetricSnapshot:
    """A rule snapshot from report sums.

    A status change moves a conversion out of the window it is read in (a rejection of an
    older conversion counts -1), so a window's sum can dip below 0; a snapshot cannot.
    """
    if not values:
        return MetricSnapshot()

    def count(name: str) -> int:
        return max(int(values.get(name, _ZERO)), 0)

    def money(name: str) -> Decimal:
        return max(values.get(name, _ZERO), _ZERO)

    return MetricSnapshot(
        impressions=count("impressions"),
        clicks=count("clicks"),
        conversions=count("conversions"),
        cost=money("cost"),
        revenue=money("revenue"),
        leads=count("leads") if "leads" in values else None,
    )
