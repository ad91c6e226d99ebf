"""A report request, validated: dimensions, metrics, range, time zone, filters, order, page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from perfmark.errors import ValidationError
from perfmark.reports.domain.catalog import DIMENSIONS, METRICS, TIME_DIMENSIONS

__all__ = [
    "BUCKET_MS",
    "DateBasis",
    "MAX_RANGE_DAYS",
    "ReportRequest",
    "calendar_rows",
    "parse_report_request",
]

#: Events are placed in 15-minute buckets before being mapped to local hours and days:
#: every time zone's offset from UTC is a multiple of 15 minutes.
BUCKET_MS = 15 * 60 * 1000
MAX_RANGE_DAYS = 3660
MAX_PAGE_SIZE = 10_000
DEFAULT_METRICS = ("impressions", "clicks", "conversions", "cost", "revenue", "cpa", "roas")


class DateBasis(StrEnum):
    """Which time a conversion counts on."""

    CONVERSION = "conversion"  #: when the conversion happened
    CLICK = "click"  #: when the click it is attributed to happened


@dataclass(frozen=True)
class ReportRequest:
    """Everything a report needs to run."""

    workspace_id: str
    start: date
    end: date  #: inclusive
    timezone: str = "UTC"
    dimensions: tuple[str, ...] = ()
    metrics: tuple[str, ...] = DEFAULT_METRICS
    filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    date_basis: DateBasis = DateBasis.CONVERSION
    compare: bool = False
    order_by: str | None = None
    descending: bool = True
    limit: int = 100
    offset: int = 0
    currency: str | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def utc_range_ms(self) -> tuple[int, int]:
        """[start, end) of the local date range, as UTC epoch milliseconds."""
        first = datetime.combine(self.start, time(0), self.zone)
        after = datetime.combine(self.end + timedelta(days=1), time(0), self.zone)
        return int(first.timestamp() * 1000), int(after.timestamp() * 1000)

    def previous(self) -> ReportRequest:
        """The same report over the equally long period just before."""
        length = (self.end - self.start).days + 1
        return replace(
            self,
            start=self.start - timedelta(days=length),
            end=self.start - timedelta(days=1),
            compare=False,
            limit=MAX_PAGE_SIZE,
            offset=0,
        )


def _date(field_name: str, value: str | date) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValidationError(
            f"{field_name} {value!r} is not a date; use YYYY-MM-DD", field=field_name
        ) from None


def _names(
    field_name: str, raw: str | Sequence[str] | None, known: Mapping[str, object]
) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = [part.strip() for part in (raw.split(",") if isinstance(raw, str) else raw)]
    names = tuple(dict.fromkeys(item for item in items if item))
    for name in names:
        if name not in known:
            raise ValidationError(
                f"{field_name} has unknown {field_name.rstrip('s')} {name!r}; use one of "
                + ", ".join(known),
                field=field_name,
            )
    return names


def parse_report_request(
    workspace_id: str,
    *,
    start: str | date,
    end: str | date,
    timezone: str = "UTC",
    dimensions: str | Sequence[str] | None = None,
    metrics: str | Sequence[str] | None = None,
    filters: Mapping[str, str | Sequence[str]] | None = None,
    date_basis: str = "conversion",
    compare: bool = False,
    order_by: str | None = None,
    descending: bool = True,
    limit: int = 100,
    offset: int = 0,
    currency: str | None = None,
) -> ReportRequest:
    """Check every part of a report request; errors name the field, the value and the choices."""
    first, last = _date("from", start), _date("to", end)
    if last < first:
        raise ValidationError(f"to ({last}) is before from ({first})", field="to")
    if (last - first).days >= MAX_RANGE_DAYS:
        raise ValidationError(
            f"from {first} to {last} is {(last - first).days + 1} days; "
            f"ask for at most {MAX_RANGE_DAYS} days",
            field="to",
        )
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"tz {timezone!r} is not an IANA time zone; use e.g. UTC or America/New_York",
            field="tz",
        ) from None
    dims = _names("dimensions", dimensions, DIMENSIONS)
    if len(set(dims) & TIME_DIMENSIONS) > 1:
        raise ValidationError("use at most one of hour, day, week, month", field="dimensions")
    chosen = _names("metrics", metrics, METRICS) or DEFAULT_METRICS
    parsed_filters: dict[str, tuple[str, ...]] = {}
    for name, value in (filters or {}).items():
        if name not in DIMENSIONS or name in TIME_DIMENSIONS:
            raise ValidationError(
                f"cannot filter on {name!r}; filter on a non-time dimension: "
                + ", ".join(n for n in DIMENSIONS if n not in TIME_DIMENSIONS),
                field=f"filter.{name}",
            )
        values = tuple(value.split(",")) if isinstance(value, str) else tuple(value)
        if not values or any(len(v) > 256 for v in values):
            raise ValidationError(
                f"filter.{name} needs 1+ values of at most 256 characters", field=f"filter.{name}"
            )
        parsed_filters[name] = values
    try:
        basis = DateBasis(date_basis)
    except ValueError:
        raise ValidationError(
            f"date_basis {date_basis!r} is unknown; use conversion or click", field="date_basis"
        ) from None
    if order_by is not None and order_by not in chosen and order_by not in dims:
        raise ValidationError(
            f"sort {order_by!r} is not one of the report's metrics or dimensions", field="sort"
        )
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValidationError(f"limit {limit} must be between 1 and {MAX_PAGE_SIZE}", field="limit")
    if offset < 0:
        raise ValidationError(f"offset {offset} must be 0 or more", field="offset")
    return ReportRequest(
        workspace_id=workspace_id,
        start=first,
        end=last,
        timezone=timezone,
        dimensions=dims,
        metrics=chosen,
        filters=parsed_filters,
        date_basis=basis,
        compare=compare,
        order_by=order_by,
        descending=descending,
        limit=limit,
        offset=offset,
        currency=currency.upper() if currency else None,
    )


def calendar_rows(request: ReportRequest) -> dict[str, list[object]]:
    """One row per 15-minute UTC bucket of the range: its local hour, day, week and month."""
    start_ms, end_ms = request.utc_range_ms()
    zone = request.zone
    buckets: list[object] = []
    hours: list[object] = []
    days: list[object] = []
    weeks: list[object] = []
    months: list[object] = []
    for bucket in range(start_ms // BUCKET_MS, (end_ms + BUCKET_MS - 1) // BUCKET_MS):
        local = datetime.fromtimestamp(bucket * BUCKET_MS / 1000, zone)
        day = local.date()
        buckets.append(bucket)
        hours.append(
            local.replace(minute=0, second=0, microsecond=0, tzinfo=None).isoformat(
                timespec="minutes"
            )
        )
        days.append(day.isoformat())
        weeks.append((day - timedelta(days=day.weekday())).isoformat())
        months.append(day.replace(day=1).isoformat())
    return {"bucket": buckets, "hour": hours, "day": days, "week": weeks, "month": months}
