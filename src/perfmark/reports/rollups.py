"""Rollups: the additive base measures pre-summed per UTC time bucket and a few dimensions.

A rollup partition holds, for one UTC date of the lake, one row per (workspace, bucket,
rollup dimensions, currencies) with every additive base measure summed: the same
`with_measure_terms` / `measure_aggregates` as a report, grouped at a coarser grain. A
report whose dimensions and filters are all in a rollup, whose metrics need no distinct
count or median, that counts conversions on their own date, and whose local periods start
and end on the rollup's bucket boundaries (hourly buckets: every zone with a whole-hour
offset; 15-minute buckets: every zone) then sums rollup rows instead of reading events.

A partition is used only while it is fresh: `_sources.json` beside it lists the event
files it was built from, and any other set of files under that date (a new batch, a batch
redone) makes it stale. Stale dates are aggregated from raw events to the same grain in
the same expression, so a report is identical with or without rollups (tested).
"""

from __future__ import annotations

import functools
import glob
import json
import math
import os
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from perfmark.reports.compiled import to_pyarrow
from perfmark.reports.domain.catalog import (
    BASE_MEASURES,
    DIMENSIONS,
    NON_ADDITIVE_MEASURES,
    TIME_DIMENSIONS,
)
from perfmark.reports.domain.request import BUCKET_MS, DateBasis, ReportRequest
from perfmark.reports.query import (
    CURRENCY_KEYS,
    REPORTED_TYPES,
    LakeQuery,
    calendar_keys,
    connect_engine,
    label_periods,
    measure_aggregates,
    with_measure_terms,
)

__all__ = [
    "ADDITIVE_MEASURES",
    "DEFAULT_ROLLUPS",
    "HOUR_MS",
    "RollupKeeper",
    "RollupQuery",
    "RollupSpec",
    "Freshness",
    "build_rollups",
    "dates_of_files",
    "freshness",
    "rollup_dates",
]

#: Measures that can be summed from rollup rows (no distinct counts, no medians).
ADDITIVE_MEASURES = tuple(name for name in BASE_MEASURES if name not in NON_ADDITIVE_MEASURES)
HOUR_MS = 3_600_000
_DAY_MS = 86_400_000
_SOURCES = "_sources.json"
#: Dates whose last build time the keeper remembers (older ones count as never built).
_REMEMBERED_BUILDS = 64
_PART = "part.parquet"


@dataclass(frozen=True)
class RollupSpec:
    """A rollup: its directory under `lake/rollups`, the dimensions it keeps, its bucket."""

    name: str
    dimensions: tuple[str, ...]
    bucket_ms: int = HOUR_MS

    def __post_init__(self) -> None:
        for dimension in self.dimensions:
            if dimension not in DIMENSIONS or dimension in TIME_DIMENSIONS:
                raise ValueError(f"rollup dimension {dimension!r} is not a non-time dimension")
        if self.bucket_ms % BUCKET_MS or _DAY_MS % self.bucket_ms:
            raise ValueError(f"bucket_ms {self.bucket_ms} must be 15 min x n and divide a day")

    @property
    def columns(self) -> tuple[str, ...]:
        """The event columns behind the dimensions."""
        return tuple(DIMENSIONS[name].column for name in self.dimensions)


#: Two hourly rollups for dashboards: who (campaign and its parties) and audience (geo and
#: device). Sub ids, UTMs, creatives and landing pages have too many values to roll up.
DEFAULT_ROLLUPS = (
    RollupSpec("parties", ("campaign", "advertiser", "publisher", "channel", "offer", "goal")),
    RollupSpec("audience", ("country", "device", "os", "browser")),
)


def rollup_dates(start_ms: int, end_ms: int) -> list[date]:
    """The UTC dates that [start_ms, end_ms) touches."""
    first = datetime.fromtimestamp(start_ms / 1000, UTC).date()
    last = datetime.fromtimestamp((end_ms - 1) / 1000, UTC).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _day_start_ms(day: date) -> int:
    return int(datetime.combine(day, datetime.min.time(), UTC).timestamp() * 1000)


def _rollup_expression(events: ir.Table, spec: RollupSpec) -> ir.Table:
    """Raw events summed to the rollup grain (the one definition, for files and for gaps)."""
    t = events.filter(events.type.isin(REPORTED_TYPES))
    t = t.mutate(bucket=(t.ts_ms // spec.bucket_ms).cast("int64"))
    t = with_measure_terms(t, ADDITIVE_MEASURES)
    keys = ("workspace_id", "bucket", *spec.columns, *CURRENCY_KEYS)
    return t.group_by(*keys).aggregate(**measure_aggregates(t, ADDITIVE_MEASURES))


def _day_directory(lake: Path, spec: RollupSpec, day: date) -> Path:
    return lake / "rollups" / spec.name / f"date={day.isoformat()}"


def _event_files_by_day(lake: Path, days: Iterable[date] | None = None) -> dict[str, list[str]]:
    """The event files (of `days`, else all), relative to the lake as `_sources.json` lists
    them, by date=."""
    if days is None:
        patterns = [str(lake / "events" / "date=*" / "hour=*" / "*.parquet")]
    else:
        patterns = [
            str(lake / "events" / f"date={d.isoformat()}" / "hour=*" / "*.parquet") for d in days
        ]
    by_day: dict[str, list[str]] = {}
    for pattern in patterns:
        for path in glob.glob(pattern):
            relative = os.path.relpath(path, lake)
            by_day.setdefault(relative.split(os.sep)[1], []).append(relative)
    return {key: sorted(files) for key, files in by_day.items()}


@dataclass(frozen=True)
class Freshness:
    """How a report's dates stand against their stored rollup partitions.

    `stale` dates are read from raw events alone; `extra_files` are event files that landed
    on a date after its partition was built (the partition covers the rest of that date).
    """

    stale: tuple[date, ...]
    extra_files: tuple[str, ...]


def freshness(lake: Path, spec: RollupSpec, days: list[date]) -> Freshness:
    """Which of `days` a stored rollup covers, wholly or but for newer event files."""
    files_by_day = _event_files_by_day(lake, days)
    stale = []
    extra: list[str] = []
    for day in days:
        sources = files_by_day.get(f"date={day.isoformat()}", [])
        directory = _day_directory(lake, spec, day)
        try:
            built_from = json.loads((directory / _SOURCES).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            built_from = None
        if built_from is None and not sources and not (directory / _PART).exists():
            continue  # no events, no rollup: nothing to read either way
        if built_from is None or not set(built_from) <= set(sources):
            stale.append(day)  # never built, or built from a file since removed (redone)
            continue
        covered = set(built_from)
        extra.extend(str(lake / path) for path in sources if path not in covered)
    return Freshness(tuple(stale), tuple(extra))


def _write_atomically(path: Path, write: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    write(temporary)
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def build_rollups(
    query: LakeQuery, days: Iterable[date], specs: Iterable[RollupSpec] = DEFAULT_ROLLUPS
) -> list[date]:
    """(Re)build the rollup partitions of the given UTC dates; returns the dates with events.

    The source list is taken before the events are read, so a batch landing meanwhile
    can only make the partition look stale (and be rebuilt), never be counted twice.
    """
    built = []
    specs = tuple(specs)
    for day in sorted(set(days)):
        sources = _event_files_by_day(query.lake, [day]).get(f"date={day.isoformat()}", [])
        events = query.events(day) if sources else None
        for spec in specs:
            directory = _day_directory(query.lake, spec, day)
            (directory / _SOURCES).unlink(missing_ok=True)  # stale while the part changes
            if events is None:
                (directory / _PART).unlink(missing_ok=True)
                continue
            table = to_pyarrow(query.backend, _rollup_expression(events, spec))
            directory.mkdir(parents=True, exist_ok=True)
            _write_atomically(
                directory / _PART,
                lambda target, table=table: pq.write_table(table, target, compression="zstd"),
            )
            _write_atomically(
                directory / _SOURCES,
                lambda target, sources=sources: target.write_text(json.dumps(sources), "utf-8"),
            )
        if events is not None:
            built.append(day)
    return built


@functools.lru_cache(maxsize=64)
def _coarse_calendar(start: date, end: date, timezone: str, bucket_ms: int) -> pa.Table | None:
    """The calendar at `bucket_ms` grain, or None when a local period splits a bucket."""
    fine = calendar_keys(ReportRequest("", start, end, timezone))
    coarse = pa.array(fine["bucket"].to_numpy() // (bucket_ms // BUCKET_MS), pa.int64())
    table = fine.set_column(0, "bucket", coarse)
    distinct = table.group_by(table.column_names).aggregate([])
    if distinct.num_rows != len(pc.unique(coarse)):
        return None  # e.g. hourly buckets in a +05:45 zone: an hour spans two local hours
    return distinct


@dataclass
class RollupQuery(LakeQuery):
    """The query layer, answering from rollups whenever a report allows it."""

    specs: tuple[RollupSpec, ...] = DEFAULT_ROLLUPS

    def rollup_for(self, request: ReportRequest, measures: Collection[str]) -> RollupSpec | None:
        """The first rollup that holds everything this aggregation needs, if any."""
        if request.date_basis is not DateBasis.CONVERSION:
            return None
        if not set(measures) <= set(ADDITIVE_MEASURES):
            return None
        start_ms, end_ms = request.utc_range_ms()
        wanted = (set(request.dimensions) - TIME_DIMENSIONS) | set(request.filters)
        for spec in self.specs:
            if not wanted <= set(spec.dimensions):
                continue
            if start_ms % spec.bucket_ms or end_ms % spec.bucket_ms:
                continue
            if set(request.dimensions) & TIME_DIMENSIONS and (
                _coarse_calendar(request.start, request.end, request.timezone, spec.bucket_ms)
                is None
            ):
                continue
            return spec
        return None

    def aggregate(
        self,
        request: ReportRequest,
        measures: Collection[str] = BASE_MEASURES,
        *,
        by_currency: bool = True,
        extra_keys: tuple[str, ...] = (),
    ) -> list[dict[str, Any]]:
        """As `LakeQuery.aggregate`, from rollups when the request allows it."""
        spec = None if extra_keys else self.rollup_for(request, measures)
        days = rollup_dates(*request.utc_range_ms())
        state = freshness(self.lake, spec, days) if spec else None
        if spec is None or state is None or len(state.stale) == len(days):
            # Not allowed, or nothing built yet: the plain report over raw events.
            return super().aggregate(
                request, measures, by_currency=by_currency, extra_keys=extra_keys
            )
        source = self.rollup_rows(spec, state)
        if source is None:
            return []
        expression = self.rollup_expression(
            spec, source, request, measures, by_currency=by_currency
        )
        table = to_pyarrow(self.backend, expression)
        return label_periods(request, table.to_pylist())

    def rollup_rows(self, spec: RollupSpec, state: Freshness) -> ir.Table | None:
        """Rollup rows: stored partitions, plus raw events summed where they are not covered.

        Stale dates are left out of the stored rows and summed from all their events; a
        date with newer files adds just those files' sums to its stored rows.
        """
        stale = list(state.stale)
        extra = list(state.extra_files)
        if self.engine == "spark" and extra:
            # Spark reads a date's directory, not a file list: such dates count as stale.
            stale = sorted({*stale, *dates_of_files(extra)})
            extra = []
        parts: list[ir.Table] = []
        stored = self._stored(spec, stale)
        if stored is not None:
            parts.append(stored)
        if self.engine == "spark":
            for day in stale:
                events = self.events(day)
                if events is not None:
                    parts.append(_rollup_expression(events, spec))
        else:
            files = [path for day in stale for path in self.event_files(day, day)]
            events = self.events_of(sorted({*files, *extra}))
            if events is not None:
                parts.append(_rollup_expression(events, spec))
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else ibis.union(*parts)

    def _stored(self, spec: RollupSpec, stale: list[date]) -> ir.Table | None:
        root = self.lake / "rollups" / spec.name
        pattern = str(root / "date=*" / _PART)
        if not glob.glob(pattern):
            return None
        view = f"perfmark_rollup_{spec.name}"
        if self.engine == "spark":
            table = self.backend.read_parquet(
                str(root), table_name=view, recursiveFileLookup="true", pathGlobFilter=_PART
            )
        else:
            table = self.backend.read_parquet(pattern, table_name=view, hive_partitioning=False)
        # A stale partition's rows are replaced by its raw events: leave its buckets out.
        for day in stale:
            first = _day_start_ms(day) // spec.bucket_ms
            after = (_day_start_ms(day) + _DAY_MS) // spec.bucket_ms
            table = table.filter((table.bucket < first) | (table.bucket >= after))
        return table

    def rollup_expression(
        self,
        spec: RollupSpec,
        rows: ir.Table,
        request: ReportRequest,
        measures: Collection[str],
        *,
        by_currency: bool = True,
    ) -> ir.Table:
        """A report over rollup rows: the same groups and sums as over raw events."""
        start_ms, end_ms = request.utc_range_ms()
        t = rows.filter(
            (rows.workspace_id == request.workspace_id)
            & (rows.bucket >= start_ms // spec.bucket_ms)
            & (rows.bucket < end_ms // spec.bucket_ms)
        )
        for name, values in request.filters.items():
            t = t.filter(t[DIMENSIONS[name].column].isin(list(values)))
        periods = [name for name in request.dimensions if name in TIME_DIMENSIONS]
        if periods:
            coarse = _coarse_calendar(request.start, request.end, request.timezone, spec.bucket_ms)
            assert coarse is not None  # rollup_for checked it
            calendar = ibis.memtable(coarse.select(["bucket", *periods]))
            t = t.join(calendar, t.bucket == calendar.bucket)
        keys = {name: t[DIMENSIONS[name].column] for name in request.dimensions}
        keys.update({name: t[name] for name in (CURRENCY_KEYS if by_currency else ())})
        wanted = [name for name in ADDITIVE_MEASURES if name in measures] or ["clicks"]
        sums = {name: t[name].sum() for name in wanted}
        if not keys:
            return t.aggregate(**sums)
        return t.group_by(**keys).aggregate(**sums)


class RollupKeeper:
    """Keeps the rollups of the dates the processor writes, for reports to read.

    The processor `touch`es the UTC dates of each committed batch; `build_due` rebuilds a
    touched date once `interval_seconds` have passed since its last build (meanwhile a
    report reads the partition plus the date's newer event files, so it is exact at any
    moment). At start every date whose partition is missing or stale is touched, so a lake
    written before rollups existed, or a crash between a batch and its rollup, heals.
    """

    def __init__(
        self,
        lake: Path,
        interval_seconds: float,
        *,
        specs: tuple[RollupSpec, ...] = DEFAULT_ROLLUPS,
        days_per_build: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # The processor builds with its own in-process DuckDB, whatever engine reports use:
        # a date's events are small, and the Parquet it writes reads the same on Spark.
        self.query = LakeQuery(lake, connect_engine("duckdb"))
        self.interval_seconds = interval_seconds
        self.specs = specs
        self.days_per_build = days_per_build
        self._clock = clock
        self._dirty: set[date] = set()
        self._built_at: dict[date, float] = {}

    def touch(self, days: Iterable[date]) -> None:
        """Mark dates that received events."""
        self._dirty.update(days)

    def touch_unbuilt(self) -> None:
        """Mark every date of the lake whose rollup is missing or no longer matches."""
        days = sorted(
            date.fromisoformat(name.removeprefix("date="))
            for name in _event_files_by_day(self.query.lake)
        )
        for spec in self.specs:
            state = freshness(self.query.lake, spec, days)
            self._dirty.update(state.stale)
            self._dirty.update(dates_of_files(state.extra_files))

    def build_due(self, *, force: bool = False) -> list[date]:
        """Rebuild the touched dates that are due (all of them with `force`); returns them."""
        now = self._clock()
        due = sorted(
            day
            for day in self._dirty
            if force or now - self._built_at.get(day, -math.inf) >= self.interval_seconds
        )
        if not force:
            due = due[: self.days_per_build]
        if not due:
            return []
        self._dirty.difference_update(due)
        try:
            build_rollups(self.query, due, self.specs)
        except BaseException:
            self._dirty.update(due)  # tried again on the next call
            raise
        for day in due:
            self._built_at[day] = now
        if len(self._built_at) > _REMEMBERED_BUILDS:
            for day in sorted(self._built_at)[:-_REMEMBERED_BUILDS]:
                del self._built_at[day]
        return due


def dates_of_files(files: Iterable[Path | str]) -> set[date]:
    """The UTC dates of lake event files (from their `date=` directory)."""
    return {
        date.fromisoformat(Path(path).parent.parent.name.removeprefix("date=")) for path in files
    }
