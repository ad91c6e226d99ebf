"""Report results kept until the lake changes, so pages and their polling stay fast.

A report over the lake's Parquet files costs a scan (seconds once the demo's hundreds of
hourly files are there, on a busy machine); the same page asked again, or polled, before
the processor commits anything new gets the kept result. The lake's version is read from
its hour partitions: their files and directory times change with every file written.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from perfmark.reports.domain.request import ReportRequest
from perfmark.reports.service import ReportResult, run_report
from perfmark.services.container import Container
from perfmark.settings import lake_directory

__all__ = [
    "MAX_CACHED_REPORTS",
    "cached_over_lake",
    "cached_report",
    "clear_report_cache",
    "kept_over_lake",
    "kept_report",
    "lake_version",
]

T = TypeVar("T")

#: Reports kept per process (least recently used dropped first): a few per page and period.
MAX_CACHED_REPORTS = 256

_lock = threading.Lock()
_results: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
#: The newest result per (lake, key), whatever the lake's version: (monotonic time it was
#: started, result, lake version it was computed at).
_latest: dict[tuple[str, str], tuple[float, Any, str]] = {}
_refreshing: set[tuple[str, str]] = set()
logger = logging.getLogger("perfmark.dashboard")


def lake_version(container: Container) -> str:
    """A token that changes whenever a file is added to (or removed from) the lake."""
    events = Path(lake_directory(container.settings)) / "events"
    newest = 0
    count = 0
    try:
        days = list(os.scandir(events))
    except FileNotFoundError:
        return "empty"
    for day in days:
        if not day.is_dir():
            continue
        for hour in os.scandir(day.path):
            if hour.is_dir():
                # Files and the directory's time: two writes in one clock tick still differ.
                count += len(os.listdir(hour.path))
                newest = max(newest, hour.stat().st_mtime_ns)
    return f"{count}.{newest}"


def cached_over_lake(
    container: Container, key: str, compute: Callable[[], T], *, stale_for_s: float = 0
) -> T:
    """`compute()`, or its result from before if the lake has not changed since.

    `key` must name everything the result depends on besides the lake (a request's repr).
    With `stale_for_s`, a result computed on an older lake less than that many seconds ago
    is returned at once while one background thread computes the fresh one.
    """
    return kept_over_lake(container, key, compute, stale_for_s=stale_for_s)[0]


def kept_over_lake(
    container: Container, key: str, compute: Callable[[], T], *, stale_for_s: float = 0
) -> tuple[T, str]:
    """As `cached_over_lake`, with the lake version the result was computed at.

    A page that polls for changes compares that version with the lake's: a result served
    from before the newest events must not make the page believe it is up to date.
    """
    lake = str(lake_directory(container.settings).resolve())
    version = lake_version(container)
    full_key = (lake, version, key)
    with _lock:
        if full_key in _results:
            _results.move_to_end(full_key)
            found: T = _results[full_key]
            return found, version
        latest = _latest.get((lake, key))
    if latest is not None and time.monotonic() - latest[0] < stale_for_s:
        _refresh_in_background((lake, key), full_key, compute)
        stale: T = latest[1]
        return stale, latest[2]
    return _compute_and_keep((lake, key), full_key, compute), version


def _compute_and_keep(
    latest_key: tuple[str, str], full_key: tuple[str, str, str], compute: Callable[[], T]
) -> T:
    started = time.monotonic()
    result = compute()
    with _lock:
        _results[full_key] = result
        while len(_results) > MAX_CACHED_REPORTS:
            _results.popitem(last=False)
        _latest[latest_key] = (started, result, full_key[1])
        while len(_latest) > MAX_CACHED_REPORTS:
            _latest.pop(next(iter(_latest)))
    return result


def _refresh_in_background(
    latest_key: tuple[str, str], full_key: tuple[str, str, str], compute: Callable[[], T]
) -> None:
    with _lock:
        if latest_key in _refreshing:
            return
        _refreshing.add(latest_key)

    def refresh() -> None:
        try:
            _compute_and_keep(latest_key, full_key, compute)
        except Exception:
            logger.exception("refreshing a kept dashboard result failed")
        finally:
            with _lock:
                _refreshing.discard(latest_key)

    threading.Thread(target=refresh, name="perfmark-dashboard-refresh", daemon=True).start()


def cached_report(
    container: Container, request: ReportRequest, *, stale_for_s: float = 0
) -> ReportResult:
    """`run_report`, or its result from before if the lake has not changed since."""
    return kept_report(container, request, stale_for_s=stale_for_s)[0]


def kept_report(
    container: Container, request: ReportRequest, *, stale_for_s: float = 0
) -> tuple[ReportResult, str]:
    """As `cached_report`, with the lake version the result was computed at."""
    return kept_over_lake(
        container, repr(request), lambda: run_report(container, request), stale_for_s=stale_for_s
    )


def clear_report_cache() -> None:
    """Forget every kept result (tests that rewrite a lake in place)."""
    with _lock:
        _results.clear()
        _latest.clear()
