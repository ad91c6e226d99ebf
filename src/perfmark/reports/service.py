"""Run a report: aggregate in the engine, convert currencies, derive metrics, compare, sort, page."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.schema import advertisers, campaigns, offers, publishers
from perfmark.billing.domain.pricing import RateNotFoundError, RateTable
from perfmark.costs.domain import spend_in
from perfmark.costs.services import daily_costs, rate_table
from perfmark.errors import ValidationError
from perfmark.money import Money
from perfmark.reports.domain.catalog import (
    METRICS,
    NON_ADDITIVE_MEASURES,
    TIME_DIMENSIONS,
    derive,
    measures_of,
)
from perfmark.reports.domain.request import ReportRequest
from perfmark.reports.query import GROUP_CURRENCY, VALUE_CURRENCY, LakeQuery, connect_engine
from perfmark.reports.rollups import RollupQuery
from perfmark.services.accounts import get_workspace
from perfmark.services.container import Container
from perfmark.settings import lake_directory

__all__ = ["ReportResult", "lake_query", "run_report"]

_AMOUNTS_IN_BILLING = ("cost", "payout")
_AMOUNTS_IN_VALUE = ("revenue", "sales_revenue")
#: Dimensions imported spend can be split by: the campaign's own, and whole local days.
_SPEND_DIMENSIONS = frozenset(
    {"campaign", "advertiser", "channel", "offer", "day", "week", "month"}
)
_NAMED = {
    "campaign": campaigns,
    "advertiser": advertisers,
    "publisher": publishers,
    "offer": offers,
}
_queries: dict[tuple[str, str, str], list[LakeQuery]] = {}
#: Idle query layers kept per lake (each holds a DuckDB connection and its caches).
_POOL_SIZE = 4
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


@contextmanager
def lake_query(container: Container) -> Iterator[LakeQuery]:
    """A query layer for this container's lake and engine, lent to one caller at a time.

    It answers from the processor's rollups whenever a report allows it (identical
    results), and from raw events otherwise. A DuckDB connection must not be shared by
    threads (the API runs reports in a thread pool), so each query has its own; returned
    queries are kept (up to _POOL_SIZE) so the next report, on whatever thread, finds a
    connection whose caches are warm. One Spark session serves them all.
    """
    settings = container.settings
    lake = lake_directory(settings)
    # Keyed by what the query reads, not by the container object: an id() can be reused
    # by a later container with another lake once the first is garbage-collected.
    key = (str(lake.resolve()), settings.lake_engine, settings.spark_master)
    with _query_lock:
        pool = _queries.setdefault(key, [])
        query = pool.pop() if pool else None
    if query is None:
        backend = connect_engine(settings.lake_engine, settings.spark_master)
        query = RollupQuery(lake, backend, settings.lake_engine)
    try:
        yield query
    finally:
        with _query_lock:
            if len(pool) < _POOL_SIZE:
                pool.append(query)


def run_report(
    container: Container,
    request: ReportRequest,
    *,
    rates: RateTable | None = None,
    query: LakeQuery | None = None,
) -> ReportResult:
    """Run `request` over the lake of `container`.

    `rates` converts amounts in other currencies; by default the workspace's rates table,
    read only when a report mixes currencies.
    """
    if query is None:
        with lake_query(container) as leased:
            return run_report(container, request, rates=rates, query=leased)
    currency = request.currency or get_workspace(container, request.workspace_id).spec.currency
    source = _Sources(container, query, request.workspace_id, currency, rates)
    rows, total_values = source.measured(request)
    totals = _metrics(total_values, request.metrics)
    previous_totals = None
    previous_by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    # Rows get their own previous values unless they are periods (no day has a "before").
    by_row = bool(request.dimensions) and not set(request.dimensions) & TIME_DIMENSIONS
    if request.compare:
        before = request.previous()
        previous_rows, previous_values = source.measured(
            before if by_row else replace(before, dimensions=())
        )
        previous_totals = _metrics(previous_values, request.metrics)
        _add_changes(totals, previous_totals, request.metrics)
        if by_row:
            for row in previous_rows:
                previous_by_key[_key(row, request.dimensions)] = row
    output = []
    for row in rows:
        item: dict[str, Any] = {name: row.get(name) for name in request.dimensions}
        item.update(_metrics(row, request.metrics))
        if request.compare and by_row:
            before_row = previous_by_key.get(_key(row, request.dimensions), {})
            _add_changes(item, _metrics(before_row, request.metrics), request.metrics)
        output.append(item)
    _label(container, request, output)
    # Dimension order first, so rows that tie on the sorted metric keep a stable order
    # (the engines return groups in no particular order; pages must not depend on it).
    output.sort(key=_dimension_key(request))
    if request.order_by is not None:
        output.sort(key=_sort_key(request), reverse=request.descending)
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


class _Sources:
    """What a report reads: the lake, imported ad spend, and the rates (loaded once, if used)."""

    def __init__(
        self,
        container: Container,
        query: LakeQuery,
        workspace_id: str,
        currency: str,
        rates: RateTable | None,
    ) -> None:
        self.container = container
        self.query = query
        self.workspace_id = workspace_id
        self.currency = currency
        self._rates = rates

    def rates(self) -> RateTable:
        if self._rates is None:
            self._rates = rate_table(self.container, self.workspace_id)
        return self._rates

    def measured(self, request: ReportRequest) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        try:
            rows, totals = _measured(self.query, request, self.currency, self.rates)
            if "cost" in totals:
                _add_imported_spend(
                    self.container, request, self.currency, self.rates, rows, totals
                )
        except RateNotFoundError as error:
            raise ValidationError(
                f"the report mixes currencies and needs exchange rates to convert them to "
                f"{self.currency}: {error.message}; import rates (POST /api/rates) or "
                "filter to one currency",
                field="currency",
            ) from error
        return rows, totals


def _key(row: Mapping[str, Any], dimensions: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(row.get(name) for name in dimensions)


def _measured(
    query: LakeQuery, request: ReportRequest, currency: str, rates: Callable[[], RateTable]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Base measures per group and in total, every amount in `currency`.

    Additive measures are aggregated per currency, converted, and summed per group here
    (and the groups summed for the totals, exactly). Distinct counts and the median cannot
    be added up, so the engine computes them for the whole groups, and for the total.
    """
    needed = measures_of(request.metrics)
    additive = tuple(name for name in needed if name not in NON_ADDITIVE_MEASURES)
    distinct = tuple(name for name in needed if name in NON_ADDITIVE_MEASURES)
    dimensions = request.dimensions
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    totals: dict[str, Any] = dict.fromkeys(additive, 0)
    if additive:
        for row in _in_currency(query, request, additive, currency, rates):
            group = groups.setdefault(_key(row, dimensions), {d: row.get(d) for d in dimensions})
            for name in additive:
                amount = row.get(name) or 0
                group[name] = group.get(name, 0) + amount
                totals[name] += amount
    if distinct:
        for row in query.aggregate(request, distinct, by_currency=False):
            group = groups.setdefault(_key(row, dimensions), {d: row.get(d) for d in dimensions})
            group.update({name: row.get(name) for name in distinct})
        if dimensions:
            whole = query.aggregate(replace(request, dimensions=()), distinct, by_currency=False)
        else:
            whole = list(groups.values())
        totals.update({name: whole[0].get(name) if whole else None for name in distinct})
    return list(groups.values()), totals


def _in_currency(
    query: LakeQuery,
    request: ReportRequest,
    measures: tuple[str, ...],
    currency: str,
    rates: Callable[[], RateTable],
) -> list[dict[str, Any]]:
    """Additive measures per group and currency, with every amount converted to `currency`."""
    if not set(measures) & {*_AMOUNTS_IN_BILLING, *_AMOUNTS_IN_VALUE}:
        return query.aggregate(request, measures, by_currency=False)  # counts only
    rows = query.aggregate(request, measures)
    foreign = any(
        (row.get(GROUP_CURRENCY) or currency) != currency
        or (row.get(VALUE_CURRENCY) or currency) != currency
        for row in rows
    )
    if not foreign:
        return rows
    table = rates()
    # Convert at the rate of each event's local day (at noon): aggregate per day, convert.
    day_request = (
        request
        if "day" in request.dimensions
        else replace(request, dimensions=(*request.dimensions, "day"))
    )
    daily = query.aggregate(day_request, measures)
    for row in daily:
        moment = datetime.combine(date.fromisoformat(row["day"]), time(12), request.zone)
        for name, column in ((n, GROUP_CURRENCY) for n in _AMOUNTS_IN_BILLING):
            if name in row:
                row[name] = _convert(row[name], row.get(column), currency, moment, table)
        for name, column in ((n, VALUE_CURRENCY) for n in _AMOUNTS_IN_VALUE):
            if name in row:
                row[name] = _convert(row[name], row.get(column), currency, moment, table)
    return daily


def _add_imported_spend(
    container: Container,
    request: ReportRequest,
    currency: str,
    rates: Callable[[], RateTable],
    rows: list[dict[str, Any]],
    totals: dict[str, Any],
) -> None:
    """Add imported ad spend (Google Ads, Meta Ads, CSV, API) to `cost`, per group and total.

    Spend is known per campaign and day, in the report's time zone (ad platforms report
    days in the ad account's zone). It lands in the groups of the campaign's own dimensions
    (campaign, advertiser, channel, offer) and of its day, week or month; a dimension spend
    cannot be split by (publisher, country, hour, sub ids, ...) is empty in its row, the
    "(not set)" row, so rows always add up to the totals. A filter on such a dimension
    leaves spend out: it cannot be known to belong to that value.
    """
    if set(request.filters) - _SPEND_DIMENSIONS:
        return
    spend_rows = daily_costs(container, request.workspace_id, request.start, request.end)
    if not spend_rows:
        return
    with transaction(container.engine) as conn:
        owners = {
            row.id: {"campaign": row.id, "advertiser": row.advertiser_id,
                     "channel": row.channel, "offer": row.offer_id}
            for row in conn.execute(
                select(campaigns.c.id, campaigns.c.advertiser_id, campaigns.c.channel,
                       campaigns.c.offer_id).where(campaigns.c.workspace_id == request.workspace_id)
            )
        }  # fmt: skip
    groups = {_key(row, request.dimensions): row for row in rows}
    for spend in spend_rows:
        owner = owners.get(spend.campaign_id)
        if owner is None:
            continue
        if any(owner[name] not in values for name, values in request.filters.items()):
            continue
        amount = spend_in(spend, currency, rates(), zone=request.zone).amount
        values = {**owner, **_periods_of(spend.date)}
        key = tuple(values.get(name) for name in request.dimensions)
        group = groups.get(key)
        if group is None:
            group = groups[key] = dict(zip(request.dimensions, key, strict=True))
            rows.append(group)
        group["cost"] = (group.get("cost") or 0) + amount
        totals["cost"] = (totals.get("cost") or 0) + amount


def _periods_of(day: date) -> dict[str, str]:
    """A day's labels as the calendar gives them (day, week's Monday, month's first day)."""
    return {
        "day": day.isoformat(),
        "week": (day - timedelta(days=day.weekday())).isoformat(),
        "month": day.replace(day=1).isoformat(),
    }


def _convert(
    amount: Any, source: str | None, target: str, moment: datetime, rates: RateTable
) -> Decimal:
    value = Decimal(amount or 0)
    if not value or not source or source == target:
        return value
    return rates.convert(Money(value, source), target, moment).amount


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


def _dimension_key(request: ReportRequest) -> Any:
    return lambda row: tuple(
        (0, "") if row.get(d) is None else (1, str(row.get(d))) for d in request.dimensions
    )


def _sort_key(request: ReportRequest) -> Any:
    order = request.order_by
    is_metric = order in METRICS

    def key(row: dict[str, Any]) -> Any:
        value = row.get(order or "")
        if value is None:
            return (0, Decimal(0) if is_metric else "")
        return (1, Decimal(value) if is_metric else str(value))

    return key
