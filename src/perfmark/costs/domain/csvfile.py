"""Reading exported CSV files: encodings, delimiters, header rows, numbers and dates as exported."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from perfmark.costs.domain.rows import CostFileError, check_spend

__all__ = [
    "MAX_ROWS_PER_FILE",
    "CsvRow",
    "Header",
    "decode_export",
    "find_header",
    "parse_date_cell",
    "parse_number_cell",
    "read_csv_rows",
]

#: A file with more rows than this is refused before anything is matched or stored.
MAX_ROWS_PER_FILE = 200_000
#: Export tools put report titles above the header; it is looked for in this many first rows.
HEADER_SEARCH_ROWS = 20
_DELIMITERS = (",", ";", "\t")
_SHOWN_CHARS = 60

# Thousands separators as spreadsheets and ad platforms write them, by decimal separator.
_NUMBER_POINT = re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+")
_NUMBER_COMMA = re.compile(r"(?:\d{1,3}(?:[. \u00a0\u202f]\d{3})+|\d+)(?:,\d+)?|,\d+")


@dataclass(frozen=True, slots=True)
class CsvRow:
    """The cells of one CSV record and the file row (line) it starts on, counted from 1."""

    row: int
    cells: tuple[str, ...]

    def is_blank(self) -> bool:
        """Whether every cell is empty."""
        return not any(cell.strip() for cell in self.cells)


@dataclass(frozen=True, slots=True)
class Header:
    """The header row: its file row, and each wanted column's name as written and position."""

    row: int
    names: tuple[str, ...]
    positions: dict[str, int]

    def cell(self, record: CsvRow, column: str) -> str:
        """The stripped cell of `column` in `record` (empty when the record is short)."""
        index = self.positions[column]
        return record.cells[index].strip() if index < len(record.cells) else ""


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "...")


def decode_export(data: bytes) -> str:
    """The text of an export: UTF-16 with a byte-order mark (Excel-style) or UTF-8."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CostFileError(
            f"row {line}: the file is not {encoding.upper().removesuffix('-SIG')} text "
            f"(byte {exc.start}); export it as CSV in UTF-8 and import it again",
            row=line,
            field="file",
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise CostFileError(
            f"row {line}: the file contains a NUL character; it is not a CSV export",
            row=line,
            field="file",
        )
    return text


def _delimiter(text: str) -> str:
    """The delimiter that splits the most lines of the file's start into the same cell count.

    Counting lines that merely contain a delimiter is not enough: a tab-separated export has
    commas in its dates ("Jan 1, 2026") and amounts ("1,204.50") too.
    """
    sample = text.splitlines()[:HEADER_SEARCH_ROWS]
    best, best_score = ",", (0, 0)
    for delimiter in _DELIMITERS:
        try:
            counts = [len(cells) for cells in csv.reader(sample, delimiter=delimiter)]
        except csv.Error:
            continue
        widths = [count for count in counts if count > 1]
        if not widths:
            continue
        modal = max(set(widths), key=lambda width: (widths.count(width), width))
        score = (widths.count(modal), modal)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def read_csv_rows(text: str) -> list[CsvRow]:
    """Every record of a CSV text, with the file row each starts on (the delimiter is detected)."""
    reader = csv.reader(text.splitlines(keepends=True), delimiter=_delimiter(text), strict=True)
    rows: list[CsvRow] = []
    start = 1
    try:
        for cells in reader:
            rows.append(CsvRow(start, tuple(cells)))
            start = reader.line_num + 1
            if len(rows) > MAX_ROWS_PER_FILE:
                raise CostFileError(
                    f"the file has more than {MAX_ROWS_PER_FILE:,} rows; split it by date "
                    "range and import each part",
                    row=start,
                    field="file",
                )
    except csv.Error as exc:
        raise CostFileError(
            f"row {start}: the CSV is malformed ({exc}); check the quotes on that row",
            row=start,
            field="file",
        ) from None
    return rows


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


def find_header(rows: Sequence[CsvRow], wanted: Sequence[str], what: str) -> Header:
    """The first row (within the first rows) that has every `wanted` column, case-insensitively.

    When none has them all, the error names the row that has the most of them and the
    columns it lacks, so the user sees which column is missing and what was found instead.
    """
    best: CsvRow | None = None
    best_found = 0
    for record in rows[:HEADER_SEARCH_ROWS]:
        keys = [_key(cell) for cell in record.cells]
        found = sum(_key(column) in keys for column in wanted)
        if found == len(wanted):
            positions = {column: keys.index(_key(column)) for column in wanted}
            names = tuple(cell.strip() for cell in record.cells)
            return Header(record.row, names, positions)
        if found > best_found:
            best, best_found = record, found
    expected = ", ".join(repr(column) for column in wanted)
    if best is None:
        raise CostFileError(
            f"no header row with the columns {expected} in the first {HEADER_SEARCH_ROWS} rows; "
            f"is this a {what} export?",
            row=None,
            column=wanted[0],
        )
    keys = [_key(cell) for cell in best.cells]
    missing = [column for column in wanted if _key(column) not in keys]
    found_names = ", ".join(repr(cell.strip()) for cell in best.cells if cell.strip())
    raise CostFileError(
        f"row {best.row}: the header has no column {', '.join(repr(m) for m in missing)} "
        f"(a {what} export has {expected}; this header has {found_names})",
        row=best.row,
        column=missing[0],
    )


def parse_number_cell(text: str, *, row: int, column: str, decimal_separator: str = ".") -> Decimal:
    """A spend cell as exported ("1,234.56", or "1.234,56" with a decimal comma), exact."""
    where = f"row {row}, column {column!r}"
    raw = text.strip()
    pattern = _NUMBER_POINT if decimal_separator == "." else _NUMBER_COMMA
    negative = raw.startswith("-")
    body = raw[1:] if negative else raw
    if not pattern.fullmatch(body):
        example = "1,234.56" if decimal_separator == "." else "1.234,56"
        raise CostFileError(
            f"{where}: {_shown(raw)} is not an amount; write digits with "
            f"{decimal_separator!r} before the decimals, such as {example}",
            row=row,
            column=column,
        )
    if decimal_separator == ".":
        plain = body.replace(",", "")
    else:
        plain = re.sub(r"[. \u00a0\u202f]", "", body).replace(",", ".")
    return check_spend(("-" if negative else "") + plain, where=where, field=column, row=row)


def parse_date_cell(
    text: str, *, row: int, column: str, formats: Sequence[str], shown_format: str
) -> dt.date:
    """A date cell in one of `formats` (strptime patterns); the error shows the expected form."""
    raw = text.strip()
    for pattern in formats:
        try:
            return dt.datetime.strptime(raw, pattern).date()
        except ValueError:
            continue
    raise CostFileError(
        f"row {row}, column {column!r}: {_shown(raw)} is not a date like {shown_format}",
        row=row,
        column=column,
    )
