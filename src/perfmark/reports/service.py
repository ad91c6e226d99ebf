"""Run a report: aggregate in the engine, convert currencies, derive metrics, compare, sort, page."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.schema import advertisers, campaigns, offers, publishers
from perfmark.billing.domain.pricing import RateTable
from perfmark.errors import ValidationError
from perfmark.money import Money
from perfmark.reports.domain.catalog import METRICS, TIME_DIMENSIONS, derive
from perfmark.reports.domain.request import ReportRequest
from perfmark.reports.query import GROUP_CURRENCY, VALUE_CURRENCY, LakeQuery, connect_engine
from perfmark.services.accounts import get_workspace
from perfmark.services.container import Container
from perfmark.settings import lake_directory

__all__ = ["ReportResult", "lake_query", "run_report"]

_DISTINCT = frozenset({"unique_clicks", "customers", "new_customers", "median_seconds_to_convert"})
_AMOUNTS_IN_BILLING = ("cost", "payout")
_AMOUNTS_IN_VALUE = ("revenue", "sales_revenue")
_NAMED = {
    "campaign": campaigns,
    "advertiser": advertisers,
    "publisher": publishers,
    "offer": offers,
}
_queries: dict[tuple[int, str], LakeQuery] = {}
_query_lock = threading.Lock()


@dataclass(frozen=True)
class ReportResult:
    """A report's rows (dimensions, metrics, optional previous-period values) and totals."""

    request: ReportRequest
    currency: str
    dimensions: tuple[str, ...]
    metrics: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    totals: dict[str, Any]
    total_rows: int
    previous_totals: dict[str, Any] | None = None


def lake_query(container: Container) -> LakeQuery:
    """The process's query layer for this container's lake and engine (built once)."""
    settings = container.settings
    key = (id(container), settings.lake_engine)
    with _query_lock:
        query = _queries.get(key)
        if query is None:
            backend = connect_engine(settings.lake_engine, settings.spark_master)
            query = LakeQuery(lake_directory(settings), backend, settings.lake_engine)
            _queries[key] = query
    return query


def run_report(
    container: Container,
    request: ReportRequest,
    *,
    rates: RateTable | None = None,
    query: LakeQuery | None = None,
) -> ReportResult:
    """Run `request` over the lake of `container`."""
    query = query or lake_query(container)
    currency = request.currency or get_workspace(container, request.workspace_id).spec.currency
    rows = _measured(query, request, currency, rates)
    total_rows = _measured(
        query, replace(request, dimensions=(), filters=request.filters), currency, rates
    )
    totals = _metrics(total_rows[0] if total_rows else {}, request.metrics)
    previous_totals = None
    previous_by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    if request.compare:
        before = request.previous()
        previous_rows = _measured(query, replace(before, dimensions=()), currency, rates)
        previous_totals = _metrics(previous_rows[0] if previous_rows else {}, request.metrics)
        _add_changes(totals, previous_totals, request.metrics)
        plain_dims = tuple(d for d in request.dimensions if d not in TIME_DIMENSIONS)
        if plain_dims == request.dimensions and plain_dims:
            for row in _measured(query, before, currency, rates):
                previous_by_key[tuple(row[d] for d in plain_dims)] = row
    output = []
    for row in rows:
        item: dict[str, Any] = {name: row.get(name) for name in request.dimensions}
        item.update(_metrics(row, request.metrics))
        if previous_by_key:
            before_row = previous_by_key.get(tuple(row.get(d) for d in request.dimensions), {})
            previous = _metrics(before_row, request.metrics)
            _add_changes(item, previous, request.metrics)
        output.append(item)
    _label(container, request, output)
    output.sort(key=_sort_key(request), reverse=request.descending and request.order_by is not None)
    page = output[request.offset : request.offset + request.limit]
    return ReportResult(
        request=request,
        currency=currency,
        dimensions=request.dimensions,
        metrics=request.metrics,
        rows=tuple(page),
        totals=totals,
        total_rows=len(output),
        previous_totals=previous_totals,
    )


def _measured(
    query: LakeQuery, request: ReportRequest, currency: str, rates: RateTable | None
) -> list[dict[str, Any]]:
    """Base measures per group, with every amount in `currency`."""
    rows = query.aggregate(request)
    foreign = any(
        (row.get(GROUP_CURRENCY) or currency) != currency
        or (row.get(VALUE_CURRENCY) or currency) != currency
        for row in rows
    )
    if not foreign:
        return _merge(rows, request.dimensions)
    if rates is None:
        raise ValidationError(
            f"the report mixes currencies and no exchange rates are loaded to convert them to "
            f"{currency}; import rates (POST /api/rates) or filter to one currency",
            field="currency",
        )
    # Convert at the rate of each event's local day: aggregate per day, convert, merge.
    day_request = (
        request
        if "day" in request.dimensions
        else replace(request, dimensions=(*request.dimensions, "day"))
    )
    daily = query.aggregate(day_request)
    for row in daily:
        moment = datetime.combine(date.fromisoformat(row["day"]), time(12), request.zone)
        for name, column in ((n, GROUP_CURRENCY) for n in _AMOUNTS_IN_BILLING):
            row[name] = _convert(row.get(name), row.get(column), currency, moment, rates)
        for name, column in ((n, VALUE_CURRENCY) for n in _AMOUNTS_IN_VALUE):
            row[name] = _convert(row.get(name), row.get(column), currency, moment, rates)
    return _merge(daily, request.dimensions)


def _convert(
    amount: Any, source: str | None, target: str, moment: datetime, rates: RateTable
) -> Decimal:
    value = Decimal(amount or 0)
    if not value or not source or source == target:
        return value
    return rates.convert(Money(value, source), target, moment).amount


def _merge(rows: Iterable[dict[str, Any]], dimensions: tuple[str, ...]) -> list[dict[str, Any]]:
    """Sum the measures of rows that share dimension values (they differed only by currency)."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row.get(d) for d in dimensions)
        target = merged.get(key)
        if target is None:
            merged[key] = dict(row)
            continue
        for name, value in row.items():
            if name in dimensions or name in (GROUP_CURRENCY, VALUE_CURRENCY, "day"):
                continue
            if name in _DISTINCT:
                # Distinct counts cannot be added across currency groups; keep the larger as
                # a lower bound (documented in docs/metrics.md).
                target[name] = max(target.get(name) or 0, value or 0)
            else:
                target[name] = (target.get(name) or 0) + (value or 0)
    return list(merged.values())


def _metrics(row: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    values = {
        key: (Decimal(str(value)) if isinstance(value, float) else value)
        for key, value in row.items()
    }
    result = derive(values, names)
    return {name: _normalize(value) for name, value in result.items()}


def _normalize(value: Any) -> Any:
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return int(value)
        return value.quantize(Decimal("0.000001")).normalize()
    return value


def _add_changes(row: dict[str, Any], previous: Mapping[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        now, before = row.get(name), previous.get(name)
        row[f"{name}_previous"] = before
        if now is None or before is None or Decimal(before) == 0:
            row[f"{name}_change"] = None
        else:
            row[f"{name}_change"] = _normalize((Decimal(now) - Decimal(before)) / Decimal(before))


def _label(container: Container, request: ReportRequest, rows: list[dict[str, Any]]) -> None:
    """Add `<dimension>_name` beside campaign, advertiser, publisher and offer ids."""
    wanted = [name for name in request.dimensions if name in _NAMED]
    if not wanted or not rows:
        return
    with transaction(container.engine) as conn:
        for name in wanted:
            table = _NAMED[name]
            ids = {row[name] for row in rows if row.get(name)}
            names = dict(
                conn.execute(
                    select(table.c.id, table.c.name).where(
                        table.c.workspace_id == request.workspace_id, table.c.id.in_(ids)
                    )
                ).all()
            )
            for row in rows:
                row[f"{name}_name"] = names.get(row.get(name))


def _sort_key(request: ReportRequest) -> Any:
    order = request.order_by
    if order is None:
        return lambda row: tuple(
            "" if row.get(d) is None else str(row.get(d)) for d in request.dimensions
        )
    is_metric = order in METRICS

    def key(row: dict[str, Any]) -> Any:
        value = row.get(order)
        if value is None:
            return (0, Decimal(0) if is_metric else "")
        return (1, Decimal(value) if is_metric else str(value))

    return key
