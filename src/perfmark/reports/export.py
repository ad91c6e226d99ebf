"""Report output formats: JSON-ready dicts, CSV text, Parquet bytes."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

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


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def report_to_json(result: ReportResult) -> dict[str, Any]:
    """The API's JSON body: amounts and ratios as decimal strings (exact), nulls for n/a."""
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
        "rows": [{c: _plain(row.get(c)) for c in columns} for row in result.rows],
        "totals": {k: _plain(v) for k, v in result.totals.items()},
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


def report_to_parquet(result: ReportResult) -> bytes:
    """The rows as a Parquet file (amounts as decimal strings, like the JSON)."""
    columns = report_columns(result)
    data = {
        c: [None if row.get(c) is None else str(row.get(c)) for row in result.rows] for c in columns
    }
    table = pa.table({c: pa.array(values, pa.string()) for c, values in data.items()})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
