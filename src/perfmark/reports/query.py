"""The one query layer over the event lake, written with Ibis: DuckDB by default, Spark at scale.

A report is a single Ibis expression: filter the events of one workspace and time range,
map each event to its local hour/day through a small calendar table (15-minute UTC buckets,
so any time zone works on any engine), then group by the requested dimensions and sum the
base measures. The same expression runs on DuckDB and on Spark; nothing is written twice.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from perfmark.adapters.lake import EVENT_SCHEMA
from perfmark.reports.domain.catalog import DIMENSIONS, TIME_DIMENSIONS
from perfmark.reports.domain.request import BUCKET_MS, DateBasis, ReportRequest, calendar_rows

__all__ = ["GROUP_CURRENCY", "LakeQuery", "VALUE_CURRENCY", "connect_engine"]

#: The currency columns every result is also grouped by (amounts are summed per currency).
GROUP_CURRENCY = "billing_currency"
VALUE_CURRENCY = "currency"
_COUNTED = ("pending", "approved")
_STATUSES = ("pending", "approved", "rejected", "refunded", "over_cap")
_LEAD_GOAL_KEYS = ("lead", "signup")
_DECIMAL = "decimal(24,6)"
_IBIS_TYPES = {"int64": "int64", "bool": "boolean", "string": "string"}


def connect_engine(engine: str, spark_master: str = "local[2]") -> Any:
    """An Ibis backend: an in-process DuckDB, or a Spark session at `spark_master`."""
    if engine == "spark":
        from pyspark.sql import SparkSession

        session = (
            SparkSession.builder.master(spark_master)
            .appName("perfmark")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.ui.enabled", "false")
            .getOrCreate()
        )
        return ibis.pyspark.connect(session)
    return ibis.duckdb.connect()


@dataclass
class LakeQuery:
    """Runs report aggregations over the Parquet files under `lake/events`."""

    lake: Path
    backend: Any
    engine: str = "duckdb"

    def _events(self) -> ir.Table | None:
        pattern = str(self.lake / "events" / "date=*" / "hour=*" / "*.parquet")
        if not glob.glob(pattern):
            return None
        if self.engine == "spark":
            table = self.backend.read_parquet(
                str(self.lake / "events"), mergeSchema="true", recursiveFileLookup="true"
            )
        else:
            table = self.backend.read_parquet(pattern, union_by_name=True, hive_partitioning=False)
        # Files written before a column existed lack it: add it as nulls (schema evolution).
        missing = {
            field.name: ibis.null().cast(_IBIS_TYPES.get(str(field.type), "string"))
            for field in EVENT_SCHEMA
            if field.name not in table.columns
        }
        return table.mutate(**missing) if missing else table

    def aggregate(
        self, request: ReportRequest, extra_keys: tuple[str, ...] = ()
    ) -> list[dict[str, Any]]:
        """Base measures per group of the request's dimensions (and currency columns)."""
        events = self._events()
        if events is None:
            return []
        expression = self.expression(events, request, extra_keys)
        table: pa.Table = self.backend.to_pyarrow(expression)
        rows: list[dict[str, Any]] = table.to_pylist()
        return rows

    def expression(
        self, events: ir.Table, request: ReportRequest, extra_keys: tuple[str, ...] = ()
    ) -> ir.Table:
        """The Ibis expression of a report (exposed so benchmarks can time it alone)."""
        start_ms, end_ms = request.utc_range_ms()
        t = events.filter(events.workspace_id == request.workspace_id)
        is_conversion = t.type.isin(["conversion", "conversion_status"])
        if request.date_basis is DateBasis.CLICK:
            basis = is_conversion.ifelse(t.click_ts_ms.fill_null(t.ts_ms), t.ts_ms)
        else:
            basis = t.ts_ms
        t = t.mutate(basis_ms=basis)
        t = t.filter((t.basis_ms >= start_ms) & (t.basis_ms < end_ms))
        for name, values in request.filters.items():
            column = DIMENSIONS[name].column
            t = t.filter(t[column].isin(list(values)))
        time_keys = [name for name in request.dimensions if name in TIME_DIMENSIONS]
        if time_keys:
            calendar = ibis.memtable(pa.table(calendar_rows(request)))
            t = t.mutate(bucket=(t.basis_ms // BUCKET_MS).cast("int64"))
            t = t.join(calendar, t.bucket == calendar.bucket)
        if {"new_customers", "cac"} & set(request.metrics):
            t = self._with_first_conversions(t, events, request.workspace_id)
        keys = {name: t[DIMENSIONS[name].column] for name in request.dimensions}
        keys.update({name: t[name] for name in (GROUP_CURRENCY, VALUE_CURRENCY, *extra_keys)})
        return t.group_by(**keys).aggregate(**self._measures(t, events, request))

    def _with_first_conversions(self, t: ir.Table, events: ir.Table, workspace_id: str) -> ir.Table:
        """Add each customer's first conversion time ever (this workspace, all of the lake)."""
        conversions = events.filter(
            (events.workspace_id == workspace_id)
            & (events.type == "conversion")
            & events.status.isin(list(_COUNTED))
        )
        firsts = conversions.group_by(
            first_customer=conversions.customer_id.fill_null(conversions.visitor_id)
        ).aggregate(first_conversion_ms=conversions.ts_ms.min())
        t = t.mutate(row_customer=t.customer_id.fill_null(t.visitor_id))
        joined = t.left_join(firsts, t.row_customer == firsts.first_customer)
        return joined.drop("row_customer", "first_customer")

    def _measures(self, t: ir.Table, events: ir.Table, request: ReportRequest) -> dict[str, Any]:
        valid = ~t.is_bot.fill_null(False) & t.drop_reason.isnull()
        is_conv = t.type == "conversion"
        is_change = t.type == "conversion_status"
        one = ibis.literal(1)
        zero = ibis.literal(0)

        def status_delta(statuses: tuple[str, ...]) -> Any:
            """+1 for a conversion in `statuses`; for a status change, +1 in / -1 out of them."""
            now_in = t.status.isin(list(statuses))
            was_in = t.previous_status.isin(list(statuses)).fill_null(False)
            return ibis.cases(
                (is_conv & now_in, one),
                (is_change & now_in & ~was_in, one),
                (is_change & ~now_in & was_in, -one),
                else_=zero,
            )

        counted = status_delta(_COUNTED)
        value = t.value.cast(_DECIMAL).fill_null(0)
        cost = t.cost.cast(_DECIMAL).fill_null(0)
        payout = t.payout.cast(_DECIMAL).fill_null(0)
        traffic_cost = (t.type.isin(["click", "impression"]) & valid).ifelse(cost, 0)
        traffic_payout = (t.type.isin(["click", "impression"]) & valid).ifelse(payout, 0)
        is_lead = t.goal_key.isin(list(_LEAD_GOAL_KEYS)).fill_null(False)
        is_sale = (t.goal_key == "sale").fill_null(False)
        customer = t.customer_id.fill_null(t.visitor_id)
        converted = is_conv & t.status.isin(list(_COUNTED))
        measures: dict[str, Any] = {
            "impressions": ((t.type == "impression") & valid).ifelse(1, 0).sum(),
            "clicks": ((t.type == "click") & valid).ifelse(1, 0).sum(),
            "unique_clicks": ((t.type == "click") & valid)
            .ifelse(t.visitor_id, ibis.null())
            .nunique(),
            "leads": (is_lead.ifelse(counted, 0)).sum(),
            "sales": (is_sale.ifelse(counted, 0)).sum(),
            "revenue": (value * counted).sum(),
            "sales_revenue": (is_sale.ifelse(value * counted, 0)).sum(),
            "cost": (traffic_cost + cost * counted).sum(),
            "payout": (traffic_payout + payout * counted).sum(),
            "customers": converted.ifelse(customer, ibis.null()).nunique(),
            "converted_after_click": (is_conv & t.click_ts_ms.notnull()).ifelse(1, 0).sum(),
            "median_seconds_to_convert": (is_conv & t.click_ts_ms.notnull())
            .ifelse((t.ts_ms - t.click_ts_ms) / 1000, ibis.null())
            .median(),
        }
        for status in _STATUSES:
            measures[f"conversions_{status}"] = status_delta((status,)).sum()
        if "first_conversion_ms" in t.columns:
            first = converted & (t.ts_ms == t.first_conversion_ms)
            measures["new_customers"] = first.ifelse(customer, ibis.null()).nunique()
        return measures
