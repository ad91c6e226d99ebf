"""Cost rows: one campaign's spend on one day from one source, exact, with its currency."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from perfmark.billing.domain.pricing import RateTable
from perfmark.errors import ValidationError
from perfmark.money import Money, MoneyError, normalize_currency, parse_amount

__all__ = [
    "MAX_SPEND_PER_ROW",
    "SPEND_DECIMAL_PLACES",
    "CostFileError",
    "CostLine",
    "CostRow",
    "ImportPeriod",
    "aggregate_rows",
    "check_currency_at",
    "check_source",
    "check_spend",
    "import_period",
    "spend_in",
]

#: Spend is stored in millionths of the currency unit, so no finer amount can be kept exactly.
SPEND_DECIMAL_PLACES = 6
#: One campaign's spend on one day stays below this (in its currency): a bound far above any
#: real day's spend that keeps micro-units inside a 64-bit integer.
MAX_SPEND_PER_ROW = Decimal(10) ** 12
#: The time of day a cost is converted at (see `spend_in`).
NOON = dt.time(12)
#: A period longer than this is almost surely a typo in a date (2206 for 2026).
MAX_PERIOD_DAYS = 3 * 366

_SOURCE = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,63}")


class CostFileError(ValidationError):
    """A cost file or payload that cannot be imported; names the row and the column."""

    def __init__(
        self,
        message: str,
        *,
        row: int | None = None,
        column: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message, field=field if field is not None else column)
        self.row = row
        self.column = column


@dataclass(frozen=True, slots=True)
class CostLine:
    """One parsed row before its campaign is matched: `row` is where it was read from."""

    row: int
    campaign: str
    day: dt.date
    spend: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class CostRow:
    """A perfmark campaign's spend on one day from one source, in the currency it was paid."""

    date: dt.date
    campaign_id: str
    source: str
    spend: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class ImportPeriod:
    """The days an import covers (both ends included): the days it replaces."""

    start: dt.date
    end: dt.date

    @property
    def days(self) -> int:
        """How many days the period holds."""
        return (self.end - self.start).days + 1


def check_source(value: str, *, field: str = "source") -> str:
    """A cost source such as `google_ads` or `google_ads:123-456-7890` (lower-cased)."""
    text = value.strip().lower() if isinstance(value, str) else ""
    if not _SOURCE.fullmatch(text):
        raise ValidationError(
            f"{field} {str(value)[:80]!r} is not a source name; use 1-64 lower-case letters, "
            "digits, '_', '.', ':' or '-', such as google_ads or google_ads:123-456-7890",
            field=field,
        )
    return text


def check_spend(value: object, *, where: str, field: str, row: int | None = None) -> Decimal:
    """An exact, non-negative spend with at most 6 decimals, below `MAX_SPEND_PER_ROW`."""
    try:
        amount = parse_amount(value, field="spend")
    except MoneyError as exc:
        reason = str(exc).removeprefix("spend: ")
        raise CostFileError(f"{where}: {reason}", row=row, column=field) from None
    if amount < 0:
        raise CostFileError(
            f"{where}: spend is {amount}; it must not be negative (import credits and "
            "refunds as a lower spend for the day)",
            row=row,
            column=field,
        )
    if amount >= MAX_SPEND_PER_ROW:
        raise CostFileError(
            f"{where}: spend {amount} is not below {MAX_SPEND_PER_ROW:,} for one campaign "
            "and day; check the decimal and thousands separators",
            row=row,
            column=field,
        )
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > SPEND_DECIMAL_PLACES:
        raise CostFileError(
            f"{where}: spend {amount} has more than {SPEND_DECIMAL_PLACES} decimals; "
            "round it to millionths",
            row=row,
            column=field,
        )
    return amount + 0  # drops a negative zero's sign


def check_currency_at(value: str, *, where: str, field: str, row: int | None = None) -> str:
    """An ISO 4217 code, upper-cased; the error names where the value was read."""
    try:
        return normalize_currency(value)
    except MoneyError as exc:
        raise CostFileError(f"{where}: {exc}", row=row, column=field) from None


def import_period(
    days: Iterable[dt.date], start: dt.date | None = None, end: dt.date | None = None
) -> ImportPeriod:
    """The period an import replaces: the given bounds, or the first and last day of its rows."""
    seen = sorted(set(days))
    if not seen and (start is None or end is None):
        raise ValidationError("there are no cost rows to import", field="rows")
    first = start if start is not None else seen[0]
    last = end if end is not None else seen[-1]
    if first > last:
        raise ValidationError(
            f"start_date {first} is after end_date {last}; swap them", field="start_date"
        )
    period = ImportPeriod(first, last)
    if period.days > MAX_PERIOD_DAYS:
        raise ValidationError(
            f"the period {first} to {last} spans {period.days} days; import at most "
            f"{MAX_PERIOD_DAYS} days at a time (check the years of the dates)",
            field="end_date" if end is not None else "rows",
        )
    return period


def aggregate_rows(
    lines: Iterable[tuple[CostLine, str]],
    source: str,
    describe: Callable[[CostLine], tuple[str, str]],
) -> list[CostRow]:
    """Sum lines that land on the same (campaign, day): two platform campaigns mapped to one.

    Each line comes with the perfmark campaign id it matched. Lines of one (campaign, day)
    must share a currency: sums across currencies would need a rate, which the report applies.
    """
    totals: dict[tuple[str, dt.date], tuple[Decimal, str, CostLine]] = {}
    for line, campaign_id in lines:
        key = (campaign_id, line.day)
        if key in totals:
            spend, currency, first = totals[key]
            if currency != line.currency:
                where, field = describe(line)
                raise ValidationError(
                    f"{where}: spend for campaign {campaign_id} on {line.day} is in "
                    f"{line.currency}, but row {first.row} gives the same campaign and day in "
                    f"{currency}; import each currency under its own source",
                    field=field,
                )
            totals[key] = (spend + line.spend, currency, first)
        else:
            totals[key] = (line.spend, line.currency, line)
    rows = [
        CostRow(date=day, campaign_id=campaign_id, source=source, spend=spend, currency=currency)
        for (campaign_id, day), (spend, currency, _first) in totals.items()
    ]
    for row in rows:
        if row.spend >= MAX_SPEND_PER_ROW:
            raise ValidationError(
                f"the summed spend of campaign {row.campaign_id} on {row.date} is {row.spend}, "
                f"not below {MAX_SPEND_PER_ROW:,}",
                field="rows",
            )
    rows.sort(key=lambda row: (row.date, row.campaign_id))
    return rows


def spend_in(row: CostRow, currency: str, rates: RateTable, *, zone: dt.tzinfo = dt.UTC) -> Money:
    """A row's spend in `currency`, exact, at the rate in force at noon of its day in `zone`.

    Noon, as the reports layer converts events: with daily rates starting at 00:00 UTC, noon
    of a day falls on that same UTC day in every zone from UTC-11 to UTC+12.
    """
    at = dt.datetime.combine(row.date, NOON, tzinfo=zone)
    return rates.convert(Money(row.spend, row.currency), currency, at)
