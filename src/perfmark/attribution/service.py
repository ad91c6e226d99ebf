"""Attribution over the workspace's journeys: one model, a model comparison, paths and shapes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from perfmark.attribution.domain.models import MODEL_NAMES, ModelOptions, compare_models, run_model
from perfmark.attribution.domain.paths import PathTable
from perfmark.attribution.domain.results import AttributionResult
from perfmark.attribution.journeys import JourneyOptions, JourneyTables, journey_paths
from perfmark.errors import ValidationError
from perfmark.reports.service import lake_query
from perfmark.services.container import Container

__all__ = ["AttributionReport", "assisted_conversions", "run_attribution", "top_paths"]

TOP_PATHS = 20


@dataclass(frozen=True)
class AttributionReport:
    """A model's credits, the comparison of every model, top paths and journey shapes."""

    model: AttributionResult
    comparison: tuple[AttributionResult, ...]
    top_paths: tuple[dict[str, Any], ...]
    assisted: tuple[dict[str, Any], ...]
    journeys: JourneyTables


def top_paths(table: PathTable, limit: int = TOP_PATHS) -> tuple[dict[str, Any], ...]:
    """The converting paths with the most conversions."""
    order = np.argsort(-table.conversions, kind="stable")[:limit]
    rows = []
    for row in order:
        if table.conversions[row] <= 0:
            break
        touches = table.channels[table.offsets[row] : table.offsets[row + 1]]
        rows.append(
            {
                "path": " > ".join(table.channel_names[i] for i in touches),
                "conversions": float(table.conversions[row]),
                "value": float(table.value[row]),
                "nulls": float(table.nulls[row]),
            }
        )
    return tuple(rows)


def assisted_conversions(table: PathTable) -> tuple[dict[str, Any], ...]:
    """Per channel: conversions where it was the last touch, and where it assisted earlier."""
    n = len(table.channel_names)
    last = np.zeros(n)
    assisted = np.zeros(n)
    for row in range(len(table.conversions)):
        weight = table.conversions[row]
        if weight <= 0:
            continue
        touches = table.channels[table.offsets[row] : table.offsets[row + 1]]
        if len(touches) == 0:
            continue
        last[touches[-1]] += weight
        for channel in set(touches[:-1].tolist()) - {int(touches[-1])}:
            assisted[channel] += weight
    return tuple(
        {
            "channel": table.channel_names[i],
            "last_touch_conversions": float(last[i]),
            "assisted_conversions": float(assisted[i]),
            "assist_ratio": None if last[i] == 0 else float(assisted[i] / last[i]),
        }
        for i in range(n)
    )


def run_attribution(
    container: Container,
    workspace_id: str,
    *,
    start: date,
    end: date,
    timezone: str = "UTC",
    model: str = "markov",
    options: ModelOptions | None = None,
    journey_options: JourneyOptions | None = None,
) -> AttributionReport:
    """Build journeys from the lake and run `model` (and the comparison of every model)."""
    if model not in MODEL_NAMES:
        raise ValidationError(
            f"model {model!r} is unknown; use one of {', '.join(MODEL_NAMES)}", field="model"
        )
    journeys = journey_paths(
        lake_query(container), workspace_id, start, end, timezone, journey_options,
        per_journey=model == "time_decay",
    )  # fmt: skip
    if journeys.paths.total_conversions <= 0:
        raise ValidationError(
            "no conversion in this range has a touchpoint in its lookback window; widen the "
            "date range or the windows",
            field="from",
        )
    table = journeys.per_journey if journeys.per_journey is not None else journeys.paths
    result = run_model(table, model, options)
    comparison = compare_models(
        journeys.paths, [m for m in MODEL_NAMES if m != "time_decay"], options
    )
    return AttributionReport(
        model=result,
        comparison=comparison.results,
        top_paths=top_paths(journeys.paths),
        assisted=assisted_conversions(journeys.paths),
        journeys=journeys,
    )
