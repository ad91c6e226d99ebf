"""Attribution over the workspace's journeys: one model, a model comparison, paths and shapes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from perfmark.attribution.domain.heuristics import HEURISTIC_MODELS, touch_weights
from perfmark.attribution.domain.models import MODEL_NAMES, ModelOptions, compare_models, run_model
from perfmark.attribution.domain.paths import PathTable
from perfmark.attribution.domain.results import AttributionResult
from perfmark.attribution.journeys import JourneyOptions, JourneyTables, journey_paths
from perfmark.errors import ValidationError
from perfmark.reports.service import lake_query
from perfmark.services.container import Container

__all__ = [
    "AttributionReport",
    "assisted_conversions",
    "conversion_credits",
    "run_attribution",
    "top_paths",
]

TOP_PATHS = 20


@dataclass(frozen=True)
class AttributionReport:
    """A model's credits, the comparison of every model, top paths and journey shapes."""

    model: AttributionResult
    comparison: tuple[AttributionResult, ...]
    top_paths: tuple[dict[str, Any], ...]
    assisted: tuple[dict[str, Any], ...]
    journeys: JourneyTables
    conversions: tuple[dict[str, Any], ...] = ()


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
    drilldown_limit: int = 0,
) -> AttributionReport:
    """Build journeys from the lake and run `model` (and the comparison of every model)."""
    if model not in MODEL_NAMES:
        raise ValidationError(
            f"model {model!r} is unknown; use one of {', '.join(MODEL_NAMES)}", field="model"
        )
    with lake_query(container) as query:
        journeys = journey_paths(
            query, workspace_id, start, end, timezone, journey_options,
            per_journey=model == "time_decay", drilldown_limit=drilldown_limit or None,
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
        conversions=conversion_credits(journeys, result, model, options),
    )


def conversion_credits(
    journeys: JourneyTables,
    result: AttributionResult,
    model: str,
    options: ModelOptions | None = None,
) -> tuple[dict[str, Any], ...]:
    """Per-conversion credit rows for drill-down (the latest conversions of the range).

    Heuristic models give each touch its own weight. Markov and Shapley credit channels, not
    touches, so a conversion's credit is split among the channels on its path in proportion
    to those channels' total credit under the model (documented in docs/attribution.md).
    """
    table = journeys.drilldown
    if table is None or table.num_rows == 0:
        return ()
    paths = table.column("path").to_pylist()
    lags = table.column("lags").to_pylist()
    values = table.column("value").to_pylist()
    ids = table.column("conv_id").to_pylist()
    names = tuple(sorted({label for path in paths for label in path}))
    index = {name: i for i, name in enumerate(names)}
    flat = [index[label] for path in paths for label in path]
    offsets = np.cumsum([0, *(len(path) for path in paths)])
    drill = PathTable(
        channel_names=names,
        channels=np.array(flat, dtype=np.int32),
        offsets=offsets.astype(np.int64),
        conversions=np.ones(len(paths)),
        value=np.array(values, dtype=np.float64),
        nulls=np.zeros(len(paths)),
        lag_days=np.array([lag for row in lags for lag in row], dtype=np.float64),
    )
    opts = options or ModelOptions()
    if model in HEURISTIC_MODELS:
        weights = touch_weights(
            drill, model, direct_channels=opts.direct_channels,
            half_life_days=opts.half_life_days, position_shares=opts.position_shares,
        )  # fmt: skip
    else:
        totals = result.conversions_by_channel()
        weights = np.zeros(len(flat))
        for row in range(len(paths)):
            start, end = int(offsets[row]), int(offsets[row + 1])
            labels = paths[row]
            shares = np.array([max(totals.get(label, 0.0), 0.0) for label in labels])
            shares = (
                shares / shares.sum() if shares.sum() > 0 else np.full(len(labels), 1 / len(labels))
            )
            weights[start:end] = shares
    rows = []
    for row in range(len(paths)):
        start, end = int(offsets[row]), int(offsets[row + 1])
        rows.append(
            {
                "conversion_event_id": ids[row],
                "value": float(values[row] or 0),
                "touches": [
                    {
                        "key": label,
                        "days_before": float(lag),
                        "credit": float(w),
                        "value": float(w * (values[row] or 0)),
                    }
                    for label, lag, w in zip(paths[row], lags[row], weights[start:end], strict=True)
                ],
            }
        )
    return tuple(rows)
