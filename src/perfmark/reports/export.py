"""Report output formats: JSON-ready dicts, CSV text, Parquet bytes."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from perfmark.reports.domain.catalog import METRICS
from perfmark.reports.service import ReportResult

__all__ = ["report_columns", "report_to_csv", "report_to_json", "report_to_parquet"]


def report_columns(result: ReportResult) -> list[str]:
    """Column order: dimensions (with names), metrics, then previous values and changes."""
    columns: list[str] = []
    for dimension in result.dimensions:
        columns.append(dimension)
        if result.rows and f"{dimension}_name" in result.rows[0]:
            columns.append(f"{dimension}_name")
    columns.extend(result.metrics)
    if result.request.compare and result.rows and f"{result.metrics[0]}_previous" in result.rows[0]:
        for metric in result.metrics:
            columns.extend((f"{metric}_previous", f"{metric}_change"))
    return columns


#: Exports keep 6 decimal places, as the service rounds every non-integer value.
_DECIMAL_TYPE = pa.decimal128(38, 6)


def _is_count(column: str) -> bool:
    """Counts and their previous values are integers; amounts, ratios, changes are decimals."""
    name = column.removesuffix("_previous")
    return name in METRICS and METRICS[name].count


def _is_decimal(column: str) -> bool:
    name = column.removesuffix("_previous").removesuffix("_change")
    return name in METRICS and not _is_count(column)


def _plain(column: str, value: Any) -> Any:
    """A JSON value: an int for counts, a decimal string for other metrics, null for n/a."""
    if value is None:
        return None
    if _is_count(column):
        return int(value)
    if _is_decimal(column):
        return str(value)
    return value


def report_to_json(result: ReportResult) -> dict[str, Any]:
    """The API's JSON body: counts as integers, amounts and ratios as exact decimal strings
    (the same type in every row), nulls for n/a."""
    columns = report_columns(result)
    return {
        "currency": result.currency,
        "timezone": result.request.timezone,
        "from": result.request.start.isoformat(),
        "to": result.request.end.isoformat(),
        "date_basis": result.request.date_basis.value,
        "dimensions": list(result.dimensions),
        "metrics": list(result.metrics),
        "columns": columns,
        "rows": [{c: _plain(c, row.get(c)) for c in columns} for row in result.rows],
        "totals": {k: _plain(k, v) for k, v in result.totals.items()},
        "total_rows": result.total_rows,
        "limit": result.request.limit,
        "offset": result.request.offset,
    }


def report_to_csv(result: ReportResult) -> str:
    """CSV with a header row; cells that look like spreadsheet formulas are neutralized."""
    columns = report_columns(result)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in result.rows:
        cells = []
        for column in columns:
            value = row.get(column)
            text = "" if value is None else str(value)
            if text[:1] in ("=", "+", "-", "@") and not _is_number(text):
                text = "'" + text
            cells.append(text)
        writer.writerow(cells)
    return buffer.getvalue()


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True


def _parquet_column(column: str, values: list[Any]) -> pa.Array:
    if _is_count(column):
        return pa.array([None if v is None else int(v) for v in values], pa.int64())
    if _is_decimal(column):
        return pa.array([None if v is None else Decimal(v) for v in values], _DECIMAL_TYPE)
    return pa.array([None if v is None else str(v) for v in values], pa.string())


def report_to_parquet(result: ReportResult) -> bytes:
    """The rows as a Parquet file: counts int64, amounts and ratios decimal(38, 6), exact."""
    columns = report_columns(result)
    table = pa.table({c: _parquet_column(c, [row.get(c) for row in result.rows]) for c in columns})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
