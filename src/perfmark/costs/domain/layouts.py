"""The column layouts of cost exports: Google Ads, Meta Ads Manager, and a generic mapping."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum

from perfmark.costs.domain.csvfile import (
    CsvRow,
    Header,
    decode_export,
    find_header,
    parse_date_cell,
    parse_number_cell,
    read_csv_rows,
)
from perfmark.costs.domain.rows import (
    CostFileError,
    CostLine,
    ImportPeriod,
    check_currency_at,
)
from perfmark.domain.rules import check_currency
from perfmark.errors import ValidationError

__all__ = ["GenericMapping", "Layout", "ParsedFile", "parse_cost_file"]

#: Longest column name a mapping may give, in characters.
MAX_COLUMN_NAME_CHARS = 200


class Layout(StrEnum):
    """Which export a cost file is."""

    GOOGLE_ADS = "google_ads"  #: Google Ads report: Campaign, Day, Currency code, Cost
    META_ADS = "meta_ads"  #: Meta Ads Manager export: Campaign name, Reporting starts/ends, ...
    GENERIC = "generic"  #: any CSV, with its columns named by a `GenericMapping`


@dataclass(frozen=True)
class GenericMapping:
    """Which columns of a generic CSV hold the campaign, the day, the spend and the currency.

    `currency` gives one currency for every row of a file that has no currency column; when
    it is set, `currency_column` is not read. Dates follow `date_format` (strptime codes).
    """

    campaign_column: str = "campaign"
    date_column: str = "date"
    spend_column: str = "spend"
    currency_column: str = "currency"
    currency: str | None = None
    date_format: str = "%Y-%m-%d"
    decimal_separator: str = "."

    def __post_init__(self) -> None:
        for name in ("campaign_column", "date_column", "spend_column", "currency_column"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValidationError(f"{name} is empty; name a column of the file", field=name)
            if len(value) > MAX_COLUMN_NAME_CHARS:
                raise ValidationError(
                    f"{name} is {len(value)} characters long; the limit is {MAX_COLUMN_NAME_CHARS}",
                    field=name,
                )
            object.__setattr__(self, name, value.strip())
        if self.currency is not None:
            object.__setattr__(self, "currency", check_currency("currency", self.currency))
        if self.decimal_separator not in (".", ","):
            raise ValidationError(
                f"decimal_separator is {self.decimal_separator!r}; use '.' or ','",
                field="decimal_separator",
            )
        if "%" not in self.date_format or len(self.date_format) > MAX_COLUMN_NAME_CHARS:
            raise ValidationError(
                f"date_format {self.date_format[:80]!r} has no strptime codes; use one such as "
                "%Y-%m-%d or %d/%m/%Y",
                field="date_format",
            )


@dataclass(frozen=True)
class ParsedFile:
    """The rows of a cost file, the column campaigns were read from, and the period it states."""

    lines: tuple[CostLine, ...]
    campaign_column: str
    date_column: str
    source: str
    stated_period: ImportPeriod | None = None


# ---- Google Ads -----------------------------------------------------------------------------

_GOOGLE_COLUMNS = ("Campaign", "Day", "Currency code", "Cost")
_GOOGLE_DATE_FORMATS = ("%Y-%m-%d", "%b %d, %Y", "%B %d, %Y", "%a, %b %d, %Y")
#: Google Ads ends a report with summary rows ("Total: Account", "Total: Search campaigns").
_GOOGLE_TOTAL = re.compile(r"total(?::.*)?", re.IGNORECASE)
_DATE_RANGE = re.compile(r"(.+?)\s+[-\u2013]\s+(.+)")


def _stated_period(titles: list[CsvRow]) -> ImportPeriod | None:
    """The report's date range from a title line such as "January 1, 2026 - January 7, 2026"."""
    for record in titles:
        cells = [cell.strip() for cell in record.cells if cell.strip()]
        if len(cells) != 1:
            continue
        match = _DATE_RANGE.fullmatch(cells[0])
        if match is None:
            continue
        bounds: list[dt.date] = []
        for text in match.groups():
            for pattern in _GOOGLE_DATE_FORMATS:
                try:
                    bounds.append(dt.datetime.strptime(text.strip(), pattern).date())
                    break
                except ValueError:
                    continue
        if len(bounds) == 2 and bounds[0] <= bounds[1]:
            return ImportPeriod(bounds[0], bounds[1])
    return None


def _google_ads(rows: list[CsvRow]) -> ParsedFile:
    header = find_header(rows, _GOOGLE_COLUMNS, "Google Ads report")
    campaign, day, currency, cost = _GOOGLE_COLUMNS
    titles = [record for record in rows if record.row < header.row]
    lines: list[CostLine] = []
    for record in rows:
        if record.row <= header.row or record.is_blank():
            continue
        if _GOOGLE_TOTAL.fullmatch(record.cells[0].strip()):
            continue
        name = _required(header, record, campaign)
        lines.append(
            CostLine(
                row=record.row,
                campaign=name,
                day=parse_date_cell(
                    _required(header, record, day),
                    row=record.row,
                    column=header.names[header.positions[day]],
                    formats=_GOOGLE_DATE_FORMATS,
                    shown_format="2026-01-31",
                ),
                spend=parse_number_cell(
                    _required(header, record, cost),
                    row=record.row,
                    column=header.names[header.positions[cost]],
                ),
                currency=_currency_cell(header, record, currency),
            )
        )
    return ParsedFile(
        tuple(lines),
        header.names[header.positions[campaign]],
        header.names[header.positions[day]],
        "google_ads",
        _stated_period(titles),
    )


# ---- Meta Ads Manager -----------------------------------------------------------------------

_META_COLUMNS = ("Campaign name", "Reporting starts", "Reporting ends")
_META_SPEND = re.compile(r"amount spent \((.*)\)", re.IGNORECASE)
_META_DATE_FORMATS = ("%Y-%m-%d",)


def _meta_spend_column(header: Header) -> tuple[int, str, str]:
    """The position, name and currency of the "Amount spent (EUR)" column."""
    for index, name in enumerate(header.names):
        match = _META_SPEND.fullmatch(" ".join(name.split()))
        if match is not None:
            where = f"row {header.row}, column {name!r}"
            currency = check_currency_at(match.group(1), where=where, field=name, row=header.row)
            return index, name, currency
    raise CostFileError(
        f"row {header.row}: the header has no column 'Amount spent (EUR)' (with the account's "
        "currency in brackets); add the Amount spent column to the exported table",
        row=header.row,
        column="Amount spent",
    )


def _meta_ads(rows: list[CsvRow]) -> ParsedFile:
    header = find_header(rows, _META_COLUMNS, "Meta Ads Manager")
    campaign, starts, ends = _META_COLUMNS
    spend_index, spend_name, currency = _meta_spend_column(header)
    day_index = next((i for i, name in enumerate(header.names) if name.casefold() == "day"), None)
    lines: list[CostLine] = []
    for record in rows:
        if record.row <= header.row or record.is_blank():
            continue
        name = _required(header, record, campaign)
        first, last = (
            parse_date_cell(
                _required(header, record, column),
                row=record.row,
                column=header.names[header.positions[column]],
                formats=_META_DATE_FORMATS,
                shown_format="2026-01-31",
            )
            for column in (starts, ends)
        )
        if day_index is not None:
            day = parse_date_cell(
                _cell_at(record, day_index, header.names[day_index]),
                row=record.row,
                column=header.names[day_index],
                formats=_META_DATE_FORMATS,
                shown_format="2026-01-31",
            )
            if not first <= day <= last:
                raise CostFileError(
                    f"row {record.row}, column {header.names[day_index]!r}: the day {day} is "
                    f"outside the row's reporting period {first} to {last}",
                    row=record.row,
                    column=header.names[day_index],
                )
        elif first == last:
            day = first
        else:
            raise CostFileError(
                f"row {record.row}, column {header.names[header.positions[ends]]!r}: the row "
                f"covers {first} to {last}; export with Breakdown > By time > Day so that each "
                "row is one day's spend",
                row=record.row,
                column=header.names[header.positions[ends]],
            )
        spend = parse_number_cell(
            _cell_at(record, spend_index, spend_name), row=record.row, column=spend_name
        )
        lines.append(CostLine(record.row, name, day, spend, currency))
    day_column = header.names[day_index if day_index is not None else header.positions[starts]]
    return ParsedFile(
        tuple(lines), header.names[header.positions[campaign]], day_column, "meta_ads"
    )


# ---- Generic --------------------------------------------------------------------------------


def _generic(rows: list[CsvRow], mapping: GenericMapping) -> ParsedFile:
    wanted = [mapping.campaign_column, mapping.date_column, mapping.spend_column]
    if mapping.currency is None:
        wanted.append(mapping.currency_column)
    header = find_header(rows, wanted, "cost CSV with the mapped")
    lines: list[CostLine] = []
    for record in rows:
        if record.row <= header.row or record.is_blank():
            continue
        day_column = header.names[header.positions[mapping.date_column]]
        spend_column = header.names[header.positions[mapping.spend_column]]
        # Read in the order of the row's meaning, so the first bad cell is the one reported.
        name = _required(header, record, mapping.campaign_column)
        day = parse_date_cell(
            _required(header, record, mapping.date_column),
            row=record.row,
            column=day_column,
            formats=(mapping.date_format,),
            shown_format=_example_date(mapping.date_format),
        )
        spend = parse_number_cell(
            _required(header, record, mapping.spend_column),
            row=record.row,
            column=spend_column,
            decimal_separator=mapping.decimal_separator,
        )
        currency = (
            mapping.currency
            if mapping.currency is not None
            else _currency_cell(header, record, mapping.currency_column)
        )
        lines.append(CostLine(record.row, name, day, spend, currency))
    campaign_column = header.names[header.positions[mapping.campaign_column]]
    date_column = header.names[header.positions[mapping.date_column]]
    return ParsedFile(tuple(lines), campaign_column, date_column, "generic")


def _example_date(date_format: str) -> str:
    try:
        return dt.date(2026, 1, 31).strftime(date_format)
    except ValueError:
        return date_format


# ---- shared ---------------------------------------------------------------------------------


def _cell_at(record: CsvRow, index: int, column: str) -> str:
    text = record.cells[index].strip() if index < len(record.cells) else ""
    if not text:
        raise CostFileError(
            f"row {record.row}, column {column!r}: the cell is empty; every row needs a value "
            "there",
            row=record.row,
            column=column,
        )
    return text


def _required(header: Header, record: CsvRow, column: str) -> str:
    return _cell_at(record, header.positions[column], header.names[header.positions[column]])


def _currency_cell(header: Header, record: CsvRow, column: str) -> str:
    name = header.names[header.positions[column]]
    return check_currency_at(
        _required(header, record, column),
        where=f"row {record.row}, column {name!r}",
        field=name,
        row=record.row,
    )


def parse_cost_file(
    data: bytes, layout: Layout, mapping: GenericMapping | None = None
) -> ParsedFile:
    """Read a cost export into lines (campaign as the platform names it, day, spend, currency).

    Every error is a `CostFileError` naming the file row (as a spreadsheet numbers it) and
    the column; the caller imports nothing when one is raised.
    """
    rows = read_csv_rows(decode_export(data))
    if layout is Layout.GOOGLE_ADS:
        parsed = _google_ads(rows)
    elif layout is Layout.META_ADS:
        parsed = _meta_ads(rows)
    else:
        parsed = _generic(rows, mapping or GenericMapping())
    if not parsed.lines:
        raise CostFileError(
            "the file has a header but no data rows; export a period with spend",
            row=None,
            field="file",
        )
    return parsed
