"""The one query layer over the event lake, written with Ibis: DuckDB by default, Spark at scale.

A report is a single Ibis expression: filter the events of one workspace and time range,
key each event by its local hour/day/week/month (its UTC time plus the zone's offset at
that instant, so any time zone works on any engine), then group by the requested
dimensions and sum the base measures. The same expression runs on DuckDB and on Spark; nothing is written twice.
"""

from __future__ import annotations

import functools
import glob
import itertools
import threading
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.parquet as pq

from perfmark.adapters.lake import EVENT_SCHEMA
from perfmark.reports.compiled import to_pyarrow
from perfmark.reports.domain.catalog import (
    BASE_MEASURES,
    DIMENSIONS,
    NON_ADDITIVE_MEASURES,
    TIME_DIMENSIONS,
)
from perfmark.reports.domain.request import BUCKET_MS, DateBasis, ReportRequest, calendar_rows

__all__ = [
    "CURRENCY_KEYS",
    "GROUP_CURRENCY",
    "LakeQuery",
    "REPORTED_TYPES",
    "VALUE_CURRENCY",
    "calendar_keys",
    "connect_engine",
    "label_local_periods",
    "label_periods",
    "local_periods",
    "measure_aggregates",
    "with_measure_terms",
]

#: The currency columns every result is also grouped by (amounts are summed per currency).
GROUP_CURRENCY = "billing_currency"
VALUE_CURRENCY = "currency"
CURRENCY_KEYS = (GROUP_CURRENCY, VALUE_CURRENCY)
#: The only event types any measure reads (page views, identify and track calls are not).
REPORTED_TYPES = ("click", "impression", "conversion", "conversion_status")
_CONVERSION_TYPES = ("conversion", "conversion_status")
_COUNTED = ("pending", "approved")
_STATUSES = ("pending", "approved", "rejected", "refunded", "over_cap")
_LEAD_GOAL_KEYS = ("lead", "signup")
_DECIMAL = "decimal(24,6)"
_IBIS_TYPES = {"int64": "int64", "bool": "boolean", "string": "string"}
#: View names of event reads (new files are seen; views do not pile up).
_EVENTS_VIEW = "perfmark_lake_events"
_VIEW_NAMES = 64
_CURRENT_COLUMNS = tuple(EVENT_SCHEMA.names)
#: Threads reading Parquet footers the first time a lake is listed (I/O bound).
_FOOTER_READERS = 8
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
#: Days from 1970-01-01 (a Thursday) back to its week's Monday: (day + 3) % 7.
_THURSDAY = 3
#: Spark shuffles into this many partitions; reports are aggregates, so a few suffice.
SPARK_SHUFFLE_PARTITIONS = 4


def connect_engine(engine: str, spark_master: str = "local[2]") -> Any:
    """An Ibis backend: an in-process DuckDB, or a Spark session at `spark_master`."""
    if engine == "spark":
        from pyspark.sql import SparkSession

        session = (
            SparkSession.builder.master(spark_master)
            .appName("perfmark")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", str(SPARK_SHUFFLE_PARTITIONS))
            .config("spark.ui.enabled", "false")
            .getOrCreate()
        )
        return ibis.pyspark.connect(session)
    return ibis.duckdb.connect()


def _status_delta(t: ir.Table, statuses: tuple[str, ...]) -> ir.IntegerValue:
    """+1 for a conversion in `statuses`; for a status change, +1 into / -1 out of them.

    now_in - was_in: a conversion has no previous status, and a change within (or outside)
    `statuses` adds 0.
    """
    now_in = (t.type.isin(_CONVERSION_TYPES) & t.status.isin(list(statuses))).fill_null(False)
    was_in = ((t.type == "conversion_status") & t.previous_status.isin(list(statuses))).fill_null(
        False
    )
    delta: ir.IntegerValue = now_in.ifelse(1, 0) - was_in.ifelse(1, 0)
    return delta


def with_measure_terms(t: ir.Table, names: Collection[str]) -> ir.Table:
    """`t` plus a column `m_<measure>` per named measure: what each event adds to it.

    The shared per-event inputs (valid, counted, the decimal amounts) are computed once in
    a first projection, as one would write by hand; the engine then only sums columns.
    """
    t = t.mutate(
        p_valid=~t.is_bot.fill_null(False) & t.drop_reason.isnull(),
        p_counted=_status_delta(t, _COUNTED),
        p_value=t.value.cast(_DECIMAL).fill_null(0),
        p_cost=t.cost.cast(_DECIMAL).fill_null(0),
        p_payout=t.payout.cast(_DECIMAL).fill_null(0),
    )
    is_traffic = t.type.isin(["click", "impression"]) & t.p_valid
    is_lead = t.goal_key.isin(list(_LEAD_GOAL_KEYS)).fill_null(False)
    is_sale = (t.goal_key == "sale").fill_null(False)
    customer = t.customer_id.fill_null(t.visitor_id)
    # A conversion recorded as pending or approved (later status changes do not undo it).
    converted = (t.type == "conversion") & t.status.isin(list(_COUNTED)).fill_null(False)
    after_click = converted & t.click_ts_ms.notnull()
    terms: dict[str, Callable[[], ir.Value]] = {
        "impressions": lambda: ((t.type == "impression") & t.p_valid).ifelse(1, 0),
        "clicks": lambda: ((t.type == "click") & t.p_valid).ifelse(1, 0),
        "unique_clicks": lambda: ((t.type == "click") & t.p_valid).ifelse(
            t.visitor_id, ibis.null()
        ),
        "leads": lambda: is_lead.ifelse(t.p_counted, 0),
        "sales": lambda: is_sale.ifelse(t.p_counted, 0),
        "revenue": lambda: t.p_value * t.p_counted,
        "sales_revenue": lambda: is_sale.ifelse(t.p_value * t.p_counted, 0),
        "cost": lambda: is_traffic.ifelse(t.p_cost, 0) + t.p_cost * t.p_counted,
        "payout": lambda: is_traffic.ifelse(t.p_payout, 0) + t.p_payout * t.p_counted,
        "customers": lambda: converted.ifelse(customer, ibis.null()),
        "converted_after_click": lambda: after_click.ifelse(1, 0),
        "median_seconds_to_convert": lambda: after_click.ifelse(
            t.ts_ms - t.click_ts_ms, ibis.null()
        ),
        "new_customers": lambda: (converted & (t.ts_ms == t.first_conversion_ms)).ifelse(
            customer, ibis.null()
        ),
    }
    for status in _STATUSES:
        terms[f"conversions_{status}"] = _status_term(t, status)
    return t.mutate(**{f"m_{name}": terms[name]() for name in BASE_MEASURES if name in names})


def _status_term(t: ir.Table, status: str) -> Callable[[], ir.Value]:
    return lambda: _status_delta(t, (status,))


def measure_aggregates(t: ir.Table, names: Collection[str]) -> dict[str, ir.Scalar]:
    """The aggregate of each named measure over a table made by `with_measure_terms`."""
    aggregates: dict[str, ir.Scalar] = {}
    for name in BASE_MEASURES:
        if name not in names:
            continue
        term = t[f"m_{name}"]
        if name == "median_seconds_to_convert":
            # The median of integer milliseconds is exact on both engines (a value or the
            # mean of two), and one IEEE division by 1000 then rounds identically everywhere.
            aggregates[name] = term.median() / 1000
        elif name in NON_ADDITIVE_MEASURES:
            aggregates[name] = term.nunique()
        else:
            aggregates[name] = term.sum()
    return aggregates


@functools.lru_cache(maxsize=64)
def _calendar(start: date, end: date, timezone: str) -> tuple[pa.Table, dict[str, list[str]]]:
    """The calendar of a range with integer period keys, and each key's label.

    Grouping on a small integer is cheaper for the engine than on a date string; the
    labels replace the keys in the (few) result rows.
    """
    rows = calendar_rows(ReportRequest("", start, end, timezone))
    columns: dict[str, pa.Array] = {"bucket": pa.array(rows["bucket"], pa.int64())}
    labels: dict[str, list[str]] = {}
    for name in sorted(TIME_DIMENSIONS):
        distinct = list(dict.fromkeys(str(value) for value in rows[name]))
        index = {label: key for key, label in enumerate(distinct)}
        columns[name] = pa.array([index[str(value)] for value in rows[name]], pa.int32())
        labels[name] = distinct
    return pa.table(columns), labels


def calendar_keys(request: ReportRequest) -> pa.Table:
    """The request's 15-minute buckets with the integer keys of their local periods."""
    table, _ = _calendar(request.start, request.end, request.timezone)
    return table


@functools.lru_cache(maxsize=64)
def _offset_steps(start: date, end: date, timezone: str) -> tuple[tuple[int, int], ...]:
    """The zone's UTC offsets over the range: (first UTC ms it applies from, offset ms).

    Offsets change on 15-minute boundaries in every zone (the calendar's assumption too),
    so stepping by 15 minutes finds every change: one step for most ranges, a few for DST.
    """
    request = ReportRequest("", start, end, timezone)
    start_ms, end_ms = request.utc_range_ms()
    zone = request.zone
    steps: list[tuple[int, int]] = []
    for ms in range(start_ms - start_ms % BUCKET_MS, end_ms, BUCKET_MS):
        delta = datetime.fromtimestamp(ms / 1000, zone).utcoffset()
        offset = int(delta.total_seconds() * 1000) if delta is not None else 0
        if not steps or steps[-1][1] != offset:
            steps.append((ms, offset))
    return tuple(steps)


def local_periods(
    basis_ms: ir.IntegerValue, request: ReportRequest, periods: Collection[str]
) -> dict[str, ir.IntegerValue]:
    """Integer keys of each event's local hour, day, week and month (as asked).

    The event's time plus its zone's offset at that instant (a CASE over the few offset
    changes of the range) is its local wall time counted from the epoch; whole hours and
    days of it are the local hour and day, the day's Monday its week, and its year and
    month the month. Plain arithmetic on both engines, no join; `label_local_periods`
    turns the keys into labels.
    """
    steps = _offset_steps(request.start, request.end, request.timezone)
    offset: ir.IntegerValue | int = steps[-1][1]
    if len(steps) > 1:
        offset = ibis.cases(
            *(
                (basis_ms < following[0], current[1])
                for current, following in itertools.pairwise(steps)
            ),
            else_=steps[-1][1],
        )
    local = basis_ms + offset
    day = (local // DAY_MS).cast("int64")
    keys: dict[str, ir.IntegerValue] = {}
    if "hour" in periods:
        keys["hour"] = (local // HOUR_MS).cast("int64")
    if "day" in periods:
        keys["day"] = day
    if "week" in periods:
        keys["week"] = day - (day + _THURSDAY) % 7  # 1970-01-01 was a Thursday
    if "month" in periods:
        stamp = (local // 1000).cast("int64").as_timestamp("s")  # Spark takes seconds only
        keys["month"] = (stamp.year() * 12 + stamp.month() - 1).cast("int64")
    return keys


def label_local_periods(request: ReportRequest, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace the keys of `local_periods` by their labels, as the calendar writes them."""
    for name in (name for name in request.dimensions if name in TIME_DIMENSIONS):
        label = _LOCAL_LABELS[name]
        for row in rows:
            row[name] = label(row[name])
    return rows


_EPOCH = datetime(1970, 1, 1)
_LOCAL_LABELS: dict[str, Callable[[int], str]] = {
    "hour": lambda key: (_EPOCH + timedelta(hours=key)).isoformat(timespec="minutes"),
    "day": lambda key: (_EPOCH + timedelta(days=key)).date().isoformat(),
    "week": lambda key: (_EPOCH + timedelta(days=key)).date().isoformat(),
    "month": lambda key: f"{key // 12:04d}-{key % 12 + 1:02d}-01",
}


def label_periods(request: ReportRequest, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace the integer period keys of result rows by their labels (e.g. "2026-01-14")."""
    names = [name for name in request.dimensions if name in TIME_DIMENSIONS]
    if names:
        _, labels = _calendar(request.start, request.end, request.timezone)
        for row in rows:
            for name in names:
                row[name] = labels[name][row[name]]
    return rows


def _conformed(table: ir.Table) -> ir.Table:
    """`table` with exactly the lake's columns, in order; absent ones as typed nulls."""
    columns = {
        column.name: table[column.name]
        if column.name in table.columns
        else ibis.null().cast(_IBIS_TYPES.get(str(column.type), "string"))
        for column in EVENT_SCHEMA
    }
    if list(table.columns) == list(columns):
        return table
    return table.select(**columns)


def _column_names(path: str) -> tuple[str, ...] | None:
    try:
        return tuple(pq.read_schema(path).names)
    except FileNotFoundError:  # removed since it was listed (a batch being redone)
        return None


class _SchemaCache:
    """The columns of each lake file, read once from its footer (files never change).

    One per lake and process, shared by every thread's query: a server answers reports on
    many threads, and each reading hundreds of footers again would cost more than the
    report itself.
    """

    def __init__(self) -> None:
        self._names: dict[str, tuple[str, ...] | None] = {}
        self._lock = threading.Lock()

    def groups(self, files: list[str], *, complete: bool) -> dict[tuple[str, ...], list[str]]:
        """The files grouped by their column names, in listing order.

        `complete` says `files` lists the whole lake, so files missing from it are gone.
        """
        with self._lock:
            return self._groups(files, complete=complete)

    def _groups(self, files: list[str], *, complete: bool) -> dict[tuple[str, ...], list[str]]:
        new = [path for path in files if path not in self._names]
        if new:
            with ThreadPoolExecutor(_FOOTER_READERS) as pool:
                self._names.update(zip(new, pool.map(_column_names, new), strict=True))
        if complete and len(self._names) > len(files):  # forget files that are gone
            listed = set(files)
            self._names = {path: names for path, names in self._names.items() if path in listed}
        groups: dict[tuple[str, ...], list[str]] = {}
        for path in files:
            names = self._names[path]
            if names is not None:
                groups.setdefault(names, []).append(path)
        return groups


_SCHEMA_CACHES: dict[str, _SchemaCache] = {}
_SCHEMA_CACHES_LOCK = threading.Lock()


def _shared_schema_cache(lake: Path) -> _SchemaCache:
    with _SCHEMA_CACHES_LOCK:
        return _SCHEMA_CACHES.setdefault(str(lake.resolve()), _SchemaCache())


@dataclass
class LakeQuery:
    """Runs report aggregations over the Parquet files under `lake/events`."""

    lake: Path
    backend: Any
    engine: str = "duckdb"
    _schemas: _SchemaCache = field(default_factory=_SchemaCache, repr=False, compare=False)
    _reads: int = field(default=0, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._schemas = _shared_schema_cache(self.lake)

    def event_files(self, first: date | None = None, last: date | None = None) -> list[str]:
        """The lake's event files, sorted, of the UTC dates from `first` to `last` if given."""
        root = self.lake / "events"
        if first is not None and first == last:
            pattern = str(root / f"date={first.isoformat()}" / "hour=*" / "*.parquet")
            return sorted(glob.glob(pattern))
        files = sorted(glob.glob(str(root / "date=*" / "hour=*" / "*.parquet")))
        if first is None and last is None:
            return files
        low = f"date={first.isoformat()}" if first else ""
        high = f"date={last.isoformat()}" if last else "date=~"
        # date=YYYY-MM-DD partitions sort as their dates do.
        return [path for path in files if low <= Path(path).parent.parent.name <= high]

    def events(self, day: date | None = None) -> ir.Table | None:
        """Every event of the lake, or of one UTC date partition (None when there are none)."""
        root = self.lake / "events"
        if day is not None:
            root = root / f"date={day.isoformat()}"
        if self.engine == "spark":
            if not self.event_files(day, day):
                return None
            view = _EVENTS_VIEW if day is None else f"{_EVENTS_VIEW}_{day:%Y%m%d}"
            table = self.backend.read_parquet(
                str(root),
                table_name=view,
                mergeSchema="true",
                recursiveFileLookup="true",
                # A file being written is `*.parquet.tmp` until renamed: never read it.
                pathGlobFilter="*.parquet",
            )
            return _conformed(table)
        return self.events_of(self.event_files(day, day), complete=day is None)

    def events_between(self, first: date | None, last: date | None) -> ir.Table | None:
        """The events of the UTC dates from `first` to `last` (None: open end).

        DuckDB reads only those partitions; Spark reads the lake and the report's time
        filter does the rest (it prunes by itself when it lists the files).
        """
        if self.engine == "spark" or (first is None and last is None):
            return self.events()
        return self.events_of(self.event_files(first, last))

    def events_of(self, files: list[str], *, complete: bool = False) -> ir.Table | None:
        """The events of the given lake files (DuckDB), schema generations stacked.

        `complete` says `files` is the whole lake (files missing from it are gone).
        """
        if not files:
            return None
        # A view per read, its name reused after _VIEW_NAMES reads: an expression reads a
        # few views, and a long-running server must not pile up views in the catalog.
        self._reads = (self._reads + 1) % _VIEW_NAMES
        view = f"{_EVENTS_VIEW}_{self._reads}"
        groups = self._schemas.groups(files, complete=complete)
        if list(groups) == [_CURRENT_COLUMNS]:
            # Every file has today's columns: one plain read of the listed files. DuckDB's
            # union_by_name would open every footer on every query instead.
            return self.backend.read_parquet(files, table_name=view, hive_partitioning=False)
        # Files written before a column existed lack it: read each schema generation alone,
        # add the missing columns as nulls, and stack them (schema evolution).
        parts = [
            _conformed(
                self.backend.read_parquet(
                    paths, table_name=f"{view}_{index}", hive_partitioning=False
                )
            )
            for index, paths in enumerate(groups.values())
        ]
        return parts[0] if len(parts) == 1 else ibis.union(*parts)

    def aggregate(
        self,
        request: ReportRequest,
        measures: Collection[str] = BASE_MEASURES,
        *,
        by_currency: bool = True,
        extra_keys: tuple[str, ...] = (),
    ) -> list[dict[str, Any]]:
        """The named base measures per group of the request's dimensions.

        With `by_currency`, groups are also split by the two currency columns, so amounts
        are never added across currencies; distinct counts and medians need the whole
        group and are asked for with `by_currency=False`.
        """
        events = self.events_for(request, measures)
        if events is None:
            return []
        expression = self.expression(
            events, request, measures, by_currency=by_currency, extra_keys=extra_keys
        )
        table = to_pyarrow(self.backend, expression)
        return label_local_periods(request, table.to_pylist())

    def events_for(self, request: ReportRequest, measures: Collection[str]) -> ir.Table | None:
        """The events a report must read: the date partitions its time range touches.

        Counted on the click's date, a conversion lands on or after its click's date, so
        the range stays open at the end; a first conversion ever needs the whole lake.
        """
        if "new_customers" in measures:
            return self.events()
        start_ms, end_ms = request.utc_range_ms()
        first = datetime.fromtimestamp(start_ms / 1000, UTC).date()
        last = datetime.fromtimestamp((end_ms - 1) / 1000, UTC).date()
        return self.events_between(first, None if request.date_basis is DateBasis.CLICK else last)

    def expression(
        self,
        events: ir.Table,
        request: ReportRequest,
        measures: Collection[str] = BASE_MEASURES,
        *,
        by_currency: bool = True,
        extra_keys: tuple[str, ...] = (),
    ) -> ir.Table:
        """The Ibis expression of a report (exposed so benchmarks can time it alone)."""
        t = self.scoped(events, request)
        if "new_customers" in measures:
            t = self._with_first_conversions(t, events, request.workspace_id)
        measures = measures or ("clicks",)  # a group needs at least one aggregate to exist
        t = with_measure_terms(t, measures)
        keys = {name: t[DIMENSIONS[name].column] for name in request.dimensions}
        currency_keys = CURRENCY_KEYS if by_currency else ()
        keys.update({name: t[name] for name in (*currency_keys, *extra_keys)})
        aggregates = measure_aggregates(t, measures)
        if not keys:
            return t.aggregate(**aggregates)
        return t.group_by(**keys).aggregate(**aggregates)

    def scoped(self, events: ir.Table, request: ReportRequest) -> ir.Table:
        """The request's events: workspace, event types, local date range, filters, calendar."""
        start_ms, end_ms = request.utc_range_ms()
        t = events.filter(
            (events.workspace_id == request.workspace_id) & events.type.isin(REPORTED_TYPES)
        )
        if request.date_basis is DateBasis.CLICK:
            is_conversion = t.type.isin(["conversion", "conversion_status"])
            basis = is_conversion.ifelse(t.click_ts_ms.fill_null(t.ts_ms), t.ts_ms)
        else:
            basis = t.ts_ms
        t = t.mutate(basis_ms=basis)
        t = t.filter((t.basis_ms >= start_ms) & (t.basis_ms < end_ms))
        for name, values in request.filters.items():
            column = DIMENSIONS[name].column
            t = t.filter(t[column].isin(list(values)))
        periods = [name for name in request.dimensions if name in TIME_DIMENSIONS]
        if periods:
            t = t.mutate(**local_periods(t.basis_ms, request, periods))
        return t

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
