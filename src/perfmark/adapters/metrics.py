"""Prometheus counters of accepted events and dropped ones by typed reason.

Uses prometheus_client; with several worker processes (and the processor) the counters
live in PROMETHEUS_MULTIPROC_DIR, which `perfmark serve` sets, and /metrics sums them.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["CONTENT_TYPE", "count_event", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_counters: tuple[Counter, Counter] | None = None
#: The labelled child of each (type, drop) seen: `labels()` validates and looks it up again
#: on every call, which measured about as much as the increment itself on the click path.
_children: dict[tuple[str, object | None], Counter] = {}


def _make_counters() -> tuple[Counter, Counter]:
    # prometheus_client picks in-memory or multiprocess storage when it is first imported;
    # `perfmark serve` may set PROMETHEUS_MULTIPROC_DIR after that (a single worker runs in
    # the CLI's own process), so the choice is made again when the counters are first made.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    events = Counter("perfmark_events", "Events accepted, by type", ["type"])
    drops = Counter(
        "perfmark_drops", "Events dropped or not counted, by type and reason", ["type", "reason"]
    )
    return events, drops


def count_event(event_type: str, drop: object | None) -> None:
    """Count one accepted event, or one drop with its reason."""
    child = _children.get((event_type, drop))
    if child is None:
        child = _child(event_type, drop)
    child.inc()


def _child(event_type: str, drop: object | None) -> Counter:
    global _counters
    if _counters is None:
        _counters = _make_counters()
    if drop is None:
        child = _counters[0].labels(event_type)
    else:
        child = _counters[1].labels(event_type, str(drop))
    _children[(event_type, drop)] = child
    return child


def render_metrics() -> bytes:
    """The Prometheus text exposition of every counter (summed over processes when shared)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()
