"""Cost-data use cases: import a file or rows for a period (replacing it atomically), rates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.exc import IntegrityError

from perfmark.adapters.store.codec import storable_text
from perfmark.adapters.store.engine import transaction
from perfmark.billing.domain.pricing import ExchangeRate, RateTable, parse_rates_csv
from perfmark.clock import utc
from perfmark.costs import store
from perfmark.costs.domain import (
    CampaignMatcher,
    CostFileError,
    CostLine,
    CostRow,
    GenericMapping,
    ImportPeriod,
    Layout,
    aggregate_rows,
    check_source,
    import_period,
    parse_cost_file,
    resolve_lines,
)
from perfmark.costs.domain.csvfile import decode_export
from perfmark.costs.domain.rows import check_currency_at, check_spend
from perfmark.domain.accounts import WRITE_ROLES, Role
from perfmark.domain.records import Page
from perfmark.errors import ConflictError, ForbiddenError, ValidationError
from perfmark.ids import new_id
from perfmark.services.container import Container, Principal

__all__ = [
    "CostInput",
    "ImportResult",
    "RatesResult",
    "add_rates",
    "daily_costs",
    "import_cost_file",
    "import_cost_rows",
    "import_rates_csv",
    "list_costs",
    "list_rates",
    "rate_table",
]

#: Most rows one JSON request may carry (a file may hold more).
MAX_ROWS_PER_REQUEST = 10_000
#: Most rates one request or file may carry.
MAX_RATES_PER_IMPORT = 100_000
#: Longest exact rate kept, in characters of its decimal text.
MAX_RATE_CHARS = 40


@dataclass(frozen=True, slots=True)
class CostInput:
    """One row sent through the API: a campaign by id or by name, a day, a spend, a currency."""

    date: dt.date
    spend: Decimal | str | int
    currency: str
    campaign_id: str | None = None
    campaign_name: str | None = None


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did: the period and campaigns it replaced, rows written, totals."""

    import_id: str
    source: str
    period: ImportPeriod
    rows: int
    replaced: int
    campaign_ids: tuple[str, ...]
    totals: tuple[tuple[str, Decimal], ...]  #: (currency, spend) of the rows written


@dataclass(frozen=True, slots=True)
class RatesResult:
    """What a rates import did: rates written, of which replaced an existing one."""

    rates: int
    replaced: int


def _require_write(principal: Principal) -> None:
    if principal.role not in WRITE_ROLES:
        raise ForbiddenError(
            f"the {principal.role.value} role cannot import costs or rates; use an owner or "
            "admin key"
        )


def _replace(
    container: Container,
    principal: Principal,
    lines: Sequence[CostLine],
    *,
    source: str,
    match: Callable[[CampaignMatcher, Sequence[CostLine]], list[tuple[CostLine, str]]],
    describe: Callable[[CostLine], tuple[str, str]],
    locate_day: Callable[[CostLine], tuple[str, str]],
    mapping: Mapping[str, str] | None,
    start: dt.date | None,
    end: dt.date | None,
) -> ImportResult:
    """Match, aggregate and replace the period, all in one transaction."""
    period = import_period((line.day for line in lines), start, end)
    for line in lines:
        if not period.start <= line.day <= period.end:
            where, field = locate_day(line)
            raise CostFileError(
                f"{where}: the day {line.day} is outside the imported period {period.start} "
                f"to {period.end}; widen the period (start_date, end_date) or drop the row",
                row=line.row,
                field=field,
            )
    import_id = new_id("cost")
    try:
        with transaction(container.engine) as conn:
            # Imports of one source take turns, so a concurrent one cannot slip its rows in
            # between this delete and insert (PostgreSQL; SQLite writers queue anyway).
            store.lock_cost_source(conn, principal.workspace_id, source)
            matcher = CampaignMatcher(store.campaign_refs(conn, principal.workspace_id), mapping)
            rows = aggregate_rows(match(matcher, lines), source, describe)
            replaced = store.replace_costs(
                conn,
                principal.workspace_id,
                source,
                period,
                rows,
                import_id=import_id,
                now=container.clock.now(),
            )
    except IntegrityError:
        raise ConflictError(
            "the import collided with a concurrent change to the same costs or campaigns; "
            "import again"
        ) from None
    totals: dict[str, Decimal] = {}
    for row in rows:
        totals[row.currency] = totals.get(row.currency, Decimal(0)) + row.spend
    return ImportResult(
        import_id=import_id,
        source=source,
        period=period,
        rows=len(rows),
        replaced=replaced,
        campaign_ids=tuple(sorted({row.campaign_id for row in rows})),
        totals=tuple(sorted(totals.items())),
    )


def import_cost_file(
    container: Container,
    principal: Principal,
    data: bytes,
    *,
    layout: Layout,
    source: str | None = None,
    campaign_map: Mapping[str, str] | None = None,
    mapping: GenericMapping | None = None,
    start_date: dt.date | None = None,
    end_date: dt.date | None = None,
) -> ImportResult:
    """Import an ad-platform export, replacing the source's costs of its campaigns and period.

    The period is `start_date`..`end_date` when given, else the range the report states in
    its title (Google Ads), else its first to last day. Nothing is written on any error.
    """
    _require_write(principal)
    parsed = parse_cost_file(data, layout, mapping)
    chosen_source = check_source(source) if source else parsed.source
    stated = parsed.stated_period
    start = start_date or (stated.start if stated and end_date is None else None)
    end = end_date or (stated.end if stated and start_date is None else None)

    def describe(line: CostLine) -> tuple[str, str]:
        return f"row {line.row}, column {parsed.campaign_column!r}", parsed.campaign_column

    def locate_day(line: CostLine) -> tuple[str, str]:
        return f"row {line.row}, column {parsed.date_column!r}", parsed.date_column

    return _replace(
        container,
        principal,
        parsed.lines,
        source=chosen_source,
        match=lambda matcher, lines: resolve_lines(lines, matcher, describe),
        describe=describe,
        locate_day=locate_day,
        mapping=campaign_map,
        start=start,
        end=end,
    )


def _input_lines(rows: Sequence[CostInput]) -> list[CostLine]:
    if not rows:
        raise ValidationError("rows is empty; send at least one cost row", field="rows")
    if len(rows) > MAX_ROWS_PER_REQUEST:
        raise ValidationError(
            f"rows holds {len(rows)} rows; send at most {MAX_ROWS_PER_REQUEST} per request",
            field="rows",
        )
    lines = []
    for index, item in enumerate(rows):
        named = [value for value in (item.campaign_id, item.campaign_name) if value]
        if len(named) != 1:
            raise CostFileError(
                f"rows[{index}]: give exactly one of campaign_id and campaign_name",
                row=index,
                field=f"rows[{index}].campaign_id",
            )
        if not storable_text(named[0]):
            raise CostFileError(
                f"rows[{index}]: the campaign contains a NUL character or an unpaired surrogate",
                row=index,
                field=f"rows[{index}].campaign_id",
            )
        spend = check_spend(
            item.spend, where=f"rows[{index}].spend", field=f"rows[{index}].spend", row=index
        )
        currency = check_currency_at(
            item.currency,
            where=f"rows[{index}].currency",
            field=f"rows[{index}].currency",
            row=index,
        )
        lines.append(CostLine(index, named[0], item.date, spend, currency))
    return lines


def import_cost_rows(
    container: Container,
    principal: Principal,
    rows: Sequence[CostInput],
    *,
    source: str,
    start_date: dt.date | None = None,
    end_date: dt.date | None = None,
) -> ImportResult:
    """Import rows sent through the API, with the same replace-the-period rule as files."""
    _require_write(principal)
    chosen_source = check_source(source)
    lines = _input_lines(rows)
    by_index = {index: item for index, item in enumerate(rows)}

    def describe(line: CostLine) -> tuple[str, str]:
        name = "campaign_id" if by_index[line.row].campaign_id else "campaign_name"
        return f"rows[{line.row}].{name}", f"rows[{line.row}].{name}"

    def match(matcher: CampaignMatcher, lines: Sequence[CostLine]) -> list[tuple[CostLine, str]]:
        resolved = []
        for line in lines:
            if by_index[line.row].campaign_id:
                found = matcher.by_id(line.campaign)
                if found is None:
                    where, field = describe(line)
                    raise CostFileError(
                        f"{where}: {line.campaign[:80]!r} names no campaign in this workspace; "
                        "list them with GET /api/campaigns",
                        row=line.row,
                        field=field,
                    )
                resolved.append((line, found))
            else:
                resolved.extend(resolve_lines([line], matcher, describe))
        return resolved

    return _replace(
        container,
        principal,
        lines,
        source=chosen_source,
        match=match,
        describe=describe,
        locate_day=lambda line: (f"rows[{line.row}].date", f"rows[{line.row}].date"),
        mapping=None,
        start=start_date,
        end=end_date,
    )


def _visible_campaigns(container: Container, principal: Principal) -> list[str] | None:
    """None for every campaign; an advertiser key sees its own; a publisher key sees no costs."""
    if principal.role is Role.PUBLISHER:
        raise ForbiddenError("the publisher role cannot see advertisers' costs")
    if principal.role is not Role.ADVERTISER:
        return None
    if not principal.advertiser_id:
        return []
    with transaction(container.engine) as conn:
        return store.campaign_ids_of_advertiser(
            conn, principal.workspace_id, principal.advertiser_id
        )


def _parse_cursor(cursor: str) -> store.CostCursor:
    day, sep1, rest = cursor.partition("|")
    campaign_id, sep2, source = rest.partition("|")
    try:
        if not (sep1 and sep2 and campaign_id and source and storable_text(cursor)):
            raise ValueError(cursor)
        return dt.date.fromisoformat(day), campaign_id, source
    except ValueError:
        raise ValidationError(
            f"cursor {cursor[:64]!r} is not a cursor this API returned; pass next_cursor from "
            "the previous page",
            field="cursor",
        ) from None


def list_costs(
    container: Container,
    principal: Principal,
    *,
    campaign_id: str | None = None,
    source: str | None = None,
    start_date: dt.date | None = None,
    end_date: dt.date | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[CostRow]:
    """A page of the caller's cost rows in (day, campaign, source) order."""
    visible = _visible_campaigns(container, principal)
    wanted: list[str] | None = visible
    if campaign_id is not None:
        if not storable_text(campaign_id) or (visible is not None and campaign_id not in visible):
            return Page((), None)
        wanted = [campaign_id]
    chosen_source = check_source(source) if source is not None else None
    after = _parse_cursor(cursor) if cursor else None
    with transaction(container.engine) as conn:
        rows = store.select_costs(
            conn,
            principal.workspace_id,
            start=start_date,
            end=end_date,
            campaign_ids=wanted,
            source=chosen_source,
            after=after,
            limit=limit + 1,
        )
    items = tuple(rows[:limit])
    next_cursor = None
    if len(rows) > limit and items:
        last = items[-1]
        next_cursor = f"{last.date.isoformat()}|{last.campaign_id}|{last.source}"
    return Page(items, next_cursor)


def daily_costs(
    container: Container, workspace_id: str, start_date: dt.date, end_date: dt.date
) -> list[CostRow]:
    """Every imported cost row of the workspace from `start_date` to `end_date` (both included).

    For the reports layer: rows are in (date, campaign_id, source) order, each in the
    currency it was paid in; convert with `rate_table` and `costs.domain.spend_in`.
    """
    with transaction(container.engine) as conn:
        return store.select_costs(conn, workspace_id, start=start_date, end=end_date)


def rate_table(
    container: Container, workspace_id: str, *, max_age: dt.timedelta | None = None
) -> RateTable:
    """The workspace's exchange rates as a pure lookup table (the rate in force at an instant)."""
    with transaction(container.engine) as conn:
        return RateTable(store.select_rates(conn, workspace_id), max_age=max_age)


def _check_rates(rates: Sequence[ExchangeRate], where: Callable[[int], str]) -> None:
    if not rates:
        raise ValidationError("there are no rates to import", field="rates")
    if len(rates) > MAX_RATES_PER_IMPORT:
        raise ValidationError(
            f"{len(rates)} rates in one import; send at most {MAX_RATES_PER_IMPORT}",
            field="rates",
        )
    seen: dict[tuple[str, str, dt.datetime], int] = {}
    for index, rate in enumerate(rates):
        if len(str(rate.rate)) > MAX_RATE_CHARS:
            raise ValidationError(
                f"{where(index)}: rate {str(rate.rate)[:60]} has more than {MAX_RATE_CHARS} "
                "characters; round it",
                field="rates",
            )
        key = (rate.base, rate.quote, rate.valid_from)
        if key in seen:
            raise ValidationError(
                f"{where(index)}: a {rate.base}->{rate.quote} rate from "
                f"{rate.valid_from.isoformat()} is already given by {where(seen[key])}; keep one",
                field="rates",
            )
        seen[key] = index


def add_rates(
    container: Container,
    principal: Principal,
    rates: Sequence[ExchangeRate],
    *,
    where: Callable[[int], str] | None = None,
) -> RatesResult:
    """Store exchange rates; a rate of the same pair and start replaces the stored one."""
    _require_write(principal)
    _check_rates(rates, where or (lambda index: f"rates[{index}]"))
    with transaction(container.engine) as conn:
        replaced = store.upsert_rates(conn, principal.workspace_id, rates, container.clock.now())
    return RatesResult(rates=len(rates), replaced=replaced)


def import_rates_csv(container: Container, principal: Principal, data: bytes) -> RatesResult:
    """Import a `base,quote,rate,valid_from` CSV (the billing rates format), all or nothing."""
    _require_write(principal)
    text = decode_export(data)
    try:
        rates = parse_rates_csv(text)
    except OverflowError:  # an instant whose UTC form falls outside years 1-9999
        raise ValidationError(
            f"rates CSV line {_overflowing_line(text)}: valid_from cannot be expressed in UTC; "
            "give a time between years 1 and 9999",
            field="rates",
        ) from None
    # parse_rates_csv numbers data lines from 2 (after the header).
    return add_rates(container, principal, rates, where=lambda index: f"rates CSV line {index + 2}")


def _overflowing_line(text: str) -> int:
    """The line of the first valid_from whose conversion to UTC overflows (0 if none does)."""
    for line_number, line in enumerate(text.splitlines(), start=1):
        try:
            utc(dt.datetime.fromisoformat(line.rsplit(",", 1)[-1].strip()))
        except OverflowError:
            return line_number
        except ValueError:
            continue
    return 0


def list_rates(
    container: Container,
    principal: Principal,
    *,
    base: str | None = None,
    quote: str | None = None,
) -> list[ExchangeRate]:
    """The workspace's exchange rates, optionally of one base and/or quote currency."""
    # Every role may read rates: they are public figures, not a workspace's secret.
    with transaction(container.engine) as conn:
        return store.select_rates(
            conn,
            principal.workspace_id,
            base=check_currency_at(base, where="base", field="base") if base else None,
            quote=check_currency_at(quote, where="quote", field="quote") if quote else None,
        )
