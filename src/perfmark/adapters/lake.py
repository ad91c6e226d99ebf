"""The event lake: append-only Parquet files partitioned by UTC date and hour.

Files are written to a temporary name and renamed into place, so a reader never sees a
partial file; each processor batch writes one file per hour it touches, named after the
batch, so a batch that is redone after a crash replaces its own files instead of adding
duplicates (see workers/processor.py).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from perfmark.domain.events import EVENT_FIELDS, TrackedEvent

__all__ = ["EVENT_SCHEMA", "LakeWriter", "event_ids_since", "events_glob", "partition_of"]

_TYPED_FIELDS = {"ts_ms": pa.int64(), "click_ts_ms": pa.int64(), "is_bot": pa.bool_()}

#: One column per event field; maps (external ids, properties) are JSON text.
EVENT_SCHEMA = pa.schema(
    [pa.field(name, _TYPED_FIELDS.get(name, pa.string())) for name in EVENT_FIELDS]
)


def partition_of(ts_ms: int) -> tuple[str, str]:
    """The (date, hour) partition of an event time, in UTC."""
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%H")


def events_glob(lake: Path) -> str:
    """The glob that matches every event file of the lake."""
    return str(lake / "events" / "date=*" / "hour=*" / "*.parquet")


def event_ids_since(lake: Path, since_ms: int, prefix: str) -> list[tuple[str, int]]:
    """(event id, time) of the events with ids starting with `prefix` from `since_ms` on.

    Only the partitions from the hour of `since_ms` on are opened, and only two columns
    of them, so this stays cheap however large the lake grows.
    """
    first = partition_of(since_ms)
    paths = [
        path
        for day in (lake / "events").glob("date=*")
        if day.name[5:] >= first[0]
        for hour in day.glob("hour=*")
        if (day.name[5:], hour.name[5:]) >= first
        for path in hour.glob("*.parquet")
    ]
    found: list[tuple[str, int]] = []
    for path in paths:
        table = pq.read_table(path, columns=["event_id", "ts_ms"])
        for event_id, ts_ms in zip(
            table.column("event_id").to_pylist(), table.column("ts_ms").to_pylist(), strict=True
        ):
            if event_id.startswith(prefix) and ts_ms >= since_ms:
                found.append((event_id, ts_ms))
    found.sort(key=lambda item: item[1])
    return found


def _columns(events: Sequence[TrackedEvent]) -> dict[str, list[object]]:
    columns: dict[str, list[object]] = {name: [] for name in EVENT_FIELDS}
    for event in events:
        for name in EVENT_FIELDS:
            value = getattr(event, name)
            if name in ("external_ids", "properties"):
                value = json.dumps(value, separators=(",", ":")) if value else None
            columns[name].append(value)
    return columns


class LakeWriter:
    """Writes batches of events as Parquet partitions under `root/events/`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "events").mkdir(parents=True, exist_ok=True)

    def planned_files(self, batch_id: str, events: Iterable[TrackedEvent]) -> list[Path]:
        """The files a batch will write, one per (date, hour) it touches."""
        partitions = sorted({partition_of(event.ts_ms) for event in events})
        return [self._path(date, hour, batch_id) for date, hour in partitions]

    def _path(self, date: str, hour: str, batch_id: str) -> Path:
        return self.root / "events" / f"date={date}" / f"hour={hour}" / f"{batch_id}.parquet"

    def write(self, batch_id: str, events: Sequence[TrackedEvent]) -> list[Path]:
        """Write the batch's events; returns the files written."""
        by_partition: dict[tuple[str, str], list[TrackedEvent]] = defaultdict(list)
        for event in events:
            by_partition[partition_of(event.ts_ms)].append(event)
        written = []
        for (date, hour), group in sorted(by_partition.items()):
            group.sort(key=lambda event: (event.ts_ms, event.event_id))
            path = self._path(date, hour, batch_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            table = pa.table(_columns(group), schema=EVENT_SCHEMA)
            temporary = path.with_suffix(".parquet.tmp")
            pq.write_table(table, temporary, compression="zstd")
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, path)
            written.append(path)
        return written
