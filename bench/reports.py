"""Report latency over a synthetic lake: the Ibis query layer against hand-written DuckDB SQL.

Generates N synthetic events (default 10M; `--sizes 10M,100M` for the 100M run) as Parquet
in the lake layout (`events/date=YYYY-MM-DD/hour=HH/*.parquet`, one file per hour over
`--days` days) under `bench/.data/` (git-ignored; generated once, reused). Then runs the
standard reports over the whole range through `LakeQuery.aggregate` (build the Ibis
expression, compile, execute, fetch) and as hand-written DuckDB SQL on the same files
computing the same measures, checks that both give the same rows, and prints the median
seconds of `--repeats` warm runs and their ratio (target: query layer <= 1.25 x the SQL;
campaign x day over 100M events <= 1 s).

It then builds the default rollups of the lake (hourly buckets x dashboard dimensions)
and times the reports they can answer, from rollups against raw events (identical rows).

Prints, never asserts.

    .venv/bin/python bench/reports.py [--sizes 10M[,100M]] [--days 90] [--repeats 5]
        [--data bench/.data] [--threads 0]
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from perfmark.adapters.lake import EVENT_SCHEMA
from perfmark.reports.domain.catalog import NON_ADDITIVE_MEASURES, measures_of
from perfmark.reports.domain.request import ReportRequest, parse_report_request
from perfmark.reports.query import LakeQuery
from perfmark.reports.rollups import DEFAULT_ROLLUPS, RollupQuery, build_rollups

WORKSPACE = "ws_bench"
FIRST_DAY = date(2026, 1, 1)
SEED = 20260101
CAMPAIGNS = 200
PUBLISHERS = 100
SUB1_VALUES = 1000
VISITORS = 5_000_000
COUNTRIES = ("US", "DE", "FR", "GB", "IT", "ES", "NL", "SE", "PL", "BR", "MX", "CA", "AU",
             "JP", "IN", "KR", "ZA", "NG", "EG", "TR", "AR", "CL", "CO", "PE", "NO", "DK",
             "FI", "IE", "PT", "AT")  # fmt: skip
DEVICES = ("desktop", "mobile", "tablet", "other")
TYPES = ("impression", "click", "conversion", "conversion_status", "pageview")
TYPE_SHARES = (0.58, 0.34, 0.04, 0.005, 0.035)
STATUSES = ("pending", "approved", "rejected", "over_cap")
STATUS_SHARES = (0.40, 0.50, 0.07, 0.03)
GOALS = ("sale", "lead", "install")
VALUES = tuple(f"{v:.2f}" for v in (9.9, 19.9, 29.9, 49.9, 79.0, 99.0, 149.0, 0.0))
#: The standard reports (name, dimensions, time zone).
REPORTS = (
    ("campaign x day", "campaign,day", "America/New_York"),
    ("publisher x sub1", "publisher,sub1", "UTC"),
    ("country x device", "country,device", "UTC"),
)
METRICS = "impressions,clicks,conversions,cost,revenue,cpa,roas"


def parse_size(text: str) -> int:
    """10M -> 10_000_000, 500K -> 500_000."""
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("KM")) * scale)


def _pick(rng: np.random.Generator, choices: tuple[str, ...], n: int, p: Any = None) -> pa.Array:
    indices = rng.choice(len(choices), size=n, p=p)
    return pa.array(choices, pa.string()).take(pa.array(indices))


def _masked(array: pa.Array, keep: np.ndarray) -> pa.Array:
    """`array` where `keep`, null elsewhere."""
    return pc.if_else(pa.array(keep), array, pa.scalar(None, array.type))


def _labels(prefix: str, count: int) -> pa.Array:
    """prefix0 .. prefix<count-1> as an Arrow string array (taken from by index)."""
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(np.arange(count)), pa.string()), "")


_POOLS: dict[str, pa.Array] = {}


def _pool(prefix: str, count: int) -> pa.Array:
    key = f"{prefix}{count}"
    if key not in _POOLS:
        _POOLS[key] = _labels(prefix, count)
    return _POOLS[key]


def _hour_table(rng: np.random.Generator, start_ms: int, n: int, first_id: int) -> pa.Table:
    """n events of one hour, sorted by time, with every column of the lake schema."""
    ts = np.sort(start_ms + rng.integers(0, 3_600_000, size=n))
    kind = rng.choice(len(TYPES), size=n, p=TYPE_SHARES)
    is_click, is_impression = kind == 1, kind == 0
    is_conversion = (kind == 2) | (kind == 3)
    campaign = rng.integers(0, CAMPAIGNS, size=n)
    publisher = (campaign * 7 + rng.integers(0, 3, size=n)) % PUBLISHERS
    is_bot = rng.random(n) < 0.03
    dropped = is_click & (rng.random(n) < 0.01)
    status = rng.choice(len(STATUSES), size=n, p=STATUS_SHARES)
    change = kind == 3
    ids = pa.array(np.arange(first_id, first_id + n))
    columns: dict[str, pa.Array] = {
        "event_id": pc.binary_join_element_wise("evt_", pc.cast(ids, pa.string()), ""),
        "type": pa.array(TYPES, pa.string()).take(pa.array(kind)),
        "ts_ms": pa.array(ts, pa.int64()),
        "workspace_id": pa.array([WORKSPACE, "ws_other"]).take(
            pa.array((rng.random(n) >= 0.9).astype(np.int8))
        ),
        "campaign_id": _pool("cmp_", CAMPAIGNS).take(pa.array(campaign)),
        "publisher_id": _pool("pub_", PUBLISHERS).take(pa.array(publisher)),
        "advertiser_id": _pool("adv_", CAMPAIGNS // 10).take(pa.array(campaign // 10)),
        "visitor_id": _pool("v", VISITORS).take(pa.array(rng.integers(0, VISITORS, size=n))),
        "sub1": _pool("s", SUB1_VALUES).take(pa.array(rng.integers(0, SUB1_VALUES, size=n))),
        "country": _pick(rng, COUNTRIES, n),
        "device": _pick(rng, DEVICES, n, (0.45, 0.45, 0.08, 0.02)),
        "is_bot": pa.array(is_bot),
        "drop_reason": _masked(pa.array(np.full(n, "paused_campaign")), dropped),
    }
    priced = ~is_bot & ~dropped
    # 0: not priced, 1: CPC click, 2: CPM impression, 3: a conversion's price.
    price = np.select([is_click & priced, is_impression & priced, is_conversion], [1, 2, 3], 0)
    columns["cost"] = pa.array([None, "0.40", "0.002", "12.50"], pa.string()).take(pa.array(price))
    columns["payout"] = pa.array([None, "0.25", "0.001", "8.00"], pa.string()).take(pa.array(price))
    columns["billing_currency"] = _masked(pa.array(np.full(n, "USD")), price > 0)
    columns["goal_key"] = _masked(_pick(rng, GOALS, n, (0.5, 0.4, 0.1)), is_conversion)
    columns["value"] = _masked(_pick(rng, VALUES, n), is_conversion)
    columns["currency"] = _masked(pa.array(np.full(n, "USD")), is_conversion)
    statuses = pa.array(STATUSES, pa.string()).take(pa.array(status))
    columns["status"] = _masked(
        pc.if_else(pa.array(change), pa.scalar("refunded"), statuses), is_conversion
    )
    columns["previous_status"] = _masked(pa.array(np.full(n, "approved")), change)
    click_ts = ts - rng.integers(1_000, 3 * 86_400_000, size=n)
    columns["click_ts_ms"] = _masked(pa.array(click_ts, pa.int64()), is_conversion)
    customers = _pool("cu", VISITORS // 4).take(pa.array(rng.integers(0, VISITORS // 4, size=n)))
    columns["customer_id"] = _masked(customers, is_conversion & (rng.random(n) < 0.5))
    arrays = [
        columns[field.name] if field.name in columns else pa.nulls(n, field.type)
        for field in EVENT_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def generate(lake: Path, events: int, days: int) -> None:
    """Write the synthetic lake once; a marker file records what it holds."""
    marker = lake / "_generated"
    wanted = f"{events} events over {days} days, seed {SEED}"
    if marker.exists() and marker.read_text() == wanted:
        return
    rng = np.random.default_rng(SEED)
    hours = days * 24
    # Traffic follows the day: a smooth daily curve, so hours differ in size.
    weights = 1 + 0.6 * np.sin(np.arange(hours) / 24 * 2 * np.pi)
    per_hour = np.floor(weights / weights.sum() * events).astype(int)
    per_hour[-1] += events - per_hour.sum()
    started = time.perf_counter()
    first = datetime.combine(FIRST_DAY, datetime.min.time(), UTC)
    written = 0
    for hour in range(hours):
        moment = first + timedelta(hours=hour)
        path = lake / "events" / f"date={moment:%Y-%m-%d}" / f"hour={moment:%H}" / "bench.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        table = _hour_table(rng, int(moment.timestamp() * 1000), int(per_hour[hour]), written)
        pq.write_table(table, path, compression="zstd")
        written += table.num_rows
        if hour % 240 == 0:
            print(f"  generated {written:,} events ({time.perf_counter() - started:.0f} s)")
    marker.write_text(wanted)
    print(f"  generated {written:,} events in {time.perf_counter() - started:.0f} s")


def _hand_sql(lake: Path, request: ReportRequest) -> str:
    """The report as a careful engineer would write it in DuckDB SQL, by hand."""
    start_ms, end_ms = request.utc_range_ms()
    glob = lake / "events" / "date=*" / "hour=*" / "*.parquet"
    key_sql = {
        "campaign": "campaign_id",
        "publisher": "publisher_id",
        "sub1": "sub1",
        "country": "country",
        "device": "device",
        "day": f"CAST(timezone('{request.timezone}', to_timestamp(ts_ms / 1000.0)) AS DATE)",
    }
    keys = ", ".join(f"{key_sql[d]} AS {d}" for d in request.dimensions)
    return f"""
        WITH e AS (
            SELECT *,
                NOT coalesce(is_bot, false) AND drop_reason IS NULL AS valid,
                CASE WHEN type = 'conversion' AND status IN ('pending', 'approved') THEN 1
                     WHEN type = 'conversion_status' AND status IN ('pending', 'approved')
                          AND coalesce(previous_status NOT IN ('pending', 'approved'), true)
                          THEN 1
                     WHEN type = 'conversion_status' AND status NOT IN ('pending', 'approved')
                          AND previous_status IN ('pending', 'approved') THEN -1
                     ELSE 0 END AS counted,
                CASE WHEN type = 'conversion' AND status = 'pending' THEN 1
                     WHEN type = 'conversion_status' AND status = 'pending'
                          AND coalesce(previous_status <> 'pending', true) THEN 1
                     WHEN type = 'conversion_status' AND status <> 'pending'
                          AND previous_status = 'pending' THEN -1
                     ELSE 0 END AS d_pending,
                CASE WHEN type = 'conversion' AND status = 'approved' THEN 1
                     WHEN type = 'conversion_status' AND status = 'approved'
                          AND coalesce(previous_status <> 'approved', true) THEN 1
                     WHEN type = 'conversion_status' AND status <> 'approved'
                          AND previous_status = 'approved' THEN -1
                     ELSE 0 END AS d_approved,
                coalesce(CAST(cost AS DECIMAL(24, 6)), 0) AS cost_d
            FROM read_parquet('{glob}')
            WHERE workspace_id = '{request.workspace_id}'
              AND type IN ('click', 'impression', 'conversion', 'conversion_status')
              AND ts_ms >= {start_ms} AND ts_ms < {end_ms}
        )
        SELECT {keys}, billing_currency, currency,
            sum(CASE WHEN type = 'impression' AND valid THEN 1 ELSE 0 END) AS impressions,
            sum(CASE WHEN type = 'click' AND valid THEN 1 ELSE 0 END) AS clicks,
            sum(d_pending) AS conversions_pending,
            sum(d_approved) AS conversions_approved,
            sum(coalesce(CAST(value AS DECIMAL(24, 6)), 0) * counted) AS revenue,
            sum(CASE WHEN type IN ('click', 'impression') AND valid THEN cost_d ELSE 0 END
                + cost_d * counted) AS cost
        FROM e
        GROUP BY ALL
    """


def _run_sql(connection: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = connection.sql(sql).to_arrow_table().to_pylist()
    return rows


@dataclass(frozen=True)
class Timing:
    """Best wall-clock and best CPU seconds (all threads of this process) of some runs."""

    wall_s: float
    cpu_s: float


def _timed_pair(
    first: Callable[[], Any], second: Callable[[], Any], repeats: int
) -> tuple[Timing, Timing, Any, Any]:
    """Best times of each over `repeats` alternated runs (after one warm-up each).

    Alternating, and keeping the best run, keeps a noisy neighbour on a shared machine
    from favouring one side; CPU seconds are also reported, as they depend far less on
    what else the machine runs than wall-clock seconds.
    """
    results = [first(), second()]
    walls: list[list[float]] = [[], []]
    cpus: list[list[float]] = [[], []]
    for _ in range(repeats):
        for index, run in enumerate((first, second)):
            wall, cpu = time.perf_counter(), time.process_time()
            results[index] = run()
            walls[index].append(time.perf_counter() - wall)
            cpus[index].append(time.process_time() - cpu)
    timings = [Timing(min(walls[i]), min(cpus[i])) for i in (0, 1)]
    return timings[0], timings[1], results[0], results[1]


def _normalized(rows: list[dict[str, Any]], dimensions: tuple[str, ...]) -> list[tuple[Any, ...]]:
    names = (*dimensions, "billing_currency", "currency", "impressions", "clicks",
             "conversions_pending", "conversions_approved", "revenue", "cost")  # fmt: skip
    out = []
    for row in rows:
        values = []
        for name in names:
            value = row[name]
            if isinstance(value, date):
                value = value.isoformat()
            elif isinstance(value, Decimal | int | float) and not isinstance(value, bool):
                value = Decimal(value).normalize()
            values.append(value)
        out.append(tuple(values))
    return sorted(out, key=repr)


def run_size(data: Path, events: int, days: int, repeats: int, threads: int) -> None:
    """Generate (once) and time the standard reports over one lake size."""
    label = f"{events // 1_000_000}M" if events >= 1_000_000 else f"{events // 1_000}K"
    lake = data / f"lake_{label}_{days}d"
    print(f"== {label} events over {days} days in {lake}")
    generate(lake, events, days)
    backend = ibis.duckdb.connect(threads=threads) if threads else ibis.duckdb.connect()
    query = LakeQuery(lake, backend, "duckdb")
    connection = duckdb.connect()
    if threads:
        connection.execute(f"SET threads = {threads}")
    end = FIRST_DAY + timedelta(days=days - 1)
    print(f"{'report':<18} {'layer s':>8} {'SQL s':>7} {'ratio':>6} {'layer cpu':>10} "
          f"{'SQL cpu':>8} {'ratio':>6}  rows")  # fmt: skip
    for name, dimensions, zone in REPORTS:
        request = parse_report_request(WORKSPACE, start=FIRST_DAY, end=end, timezone=zone,
                                       dimensions=dimensions, metrics=METRICS)  # fmt: skip
        measures = tuple(m for m in measures_of(request.metrics) if m not in NON_ADDITIVE_MEASURES)
        sql = _hand_sql(lake, request)
        layer_s, sql_s, layer_rows, sql_rows = _timed_pair(
            functools.partial(query.aggregate, request, measures),
            functools.partial(_run_sql, connection, sql),
            repeats,
        )
        same = _normalized(layer_rows, request.dimensions) == _normalized(sql_rows,
                                                                          request.dimensions)  # fmt: skip
        print(f"{name:<18} {layer_s.wall_s:>8.3f} {sql_s.wall_s:>7.3f} "
              f"{layer_s.wall_s / sql_s.wall_s:>6.2f} {layer_s.cpu_s:>10.3f} {sql_s.cpu_s:>8.3f} "
              f"{layer_s.cpu_s / sql_s.cpu_s:>6.2f}  "
              f"{len(layer_rows):,}{'' if same else '  RESULTS DIFFER'}")  # fmt: skip
    _rollup_figures(lake, backend, days, repeats)
    connection.close()
    backend.disconnect()


def _rollup_figures(lake: Path, backend: Any, days: int, repeats: int) -> None:
    """Rollup build time, and the standard reports from rollups against raw events."""
    raw = LakeQuery(lake, backend, "duckdb")
    rolled = RollupQuery(lake, backend, "duckdb")
    all_days = [FIRST_DAY + timedelta(days=n) for n in range(days)]
    started = time.perf_counter()
    build_rollups(rolled, all_days)
    built_s = time.perf_counter() - started
    for spec in DEFAULT_ROLLUPS:
        stored = pq.ParquetDataset(str(lake / "rollups" / spec.name)).read(columns=["bucket"])
        print(f"rollup {spec.name!r} ({', '.join(spec.dimensions)}; "
              f"{spec.bucket_ms // 60_000}-minute buckets): {stored.num_rows:,} rows")  # fmt: skip
    print(f"all rollups of {days} days built in {built_s:.1f} s")
    print(f"{'report':<18} {'raw s':>8} {'rollup s':>9} {'speed-up':>9} {'raw cpu':>8} "
          f"{'rollup cpu':>11}  rows")  # fmt: skip
    end = FIRST_DAY + timedelta(days=days - 1)
    for name, dimensions, zone in REPORTS:
        request = parse_report_request(WORKSPACE, start=FIRST_DAY, end=end, timezone=zone,
                                       dimensions=dimensions, metrics=METRICS)  # fmt: skip
        measures = tuple(m for m in measures_of(request.metrics) if m not in NON_ADDITIVE_MEASURES)
        chosen = rolled.rollup_for(request, measures)
        if chosen is None:
            print(f"{name:<18} (in no rollup: always from raw events)")
            continue
        raw_s, rolled_s, raw_rows, rolled_rows = _timed_pair(
            functools.partial(raw.aggregate, request, measures),
            functools.partial(rolled.aggregate, request, measures),
            repeats,
        )
        same = _normalized(raw_rows, request.dimensions) == _normalized(rolled_rows,
                                                                        request.dimensions)  # fmt: skip
        print(f"{name:<18} {raw_s.wall_s:>8.3f} {rolled_s.wall_s:>9.3f} "
              f"{raw_s.wall_s / rolled_s.wall_s:>8.1f}x {raw_s.cpu_s:>8.3f} {rolled_s.cpu_s:>11.3f}  "
              f"{len(rolled_rows):,}{'' if same else '  RESULTS DIFFER'}  ({chosen.name})")  # fmt: skip


def main() -> None:
    """Parse arguments and run every size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10M", help="comma-separated, e.g. 10M,100M")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", type=Path, default=Path(__file__).parent / ".data")
    parser.add_argument("--threads", type=int, default=0, help="DuckDB threads (0: default)")
    arguments = parser.parse_args()
    for size in arguments.sizes.split(","):
        run_size(arguments.data, parse_size(size), arguments.days, arguments.repeats,
                 arguments.threads)  # fmt: skip


if __name__ == "__main__":
    main()
