"""One entry point per model name, and a model-comparison table over the same paths."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from perfmark.attribution.domain.heuristics import (
    DEFAULT_DIRECT_CHANNELS,
    DEFAULT_HALF_LIFE_DAYS,
    DEFAULT_POSITION_SHARES,
    HEURISTIC_MODELS,
    first_touch,
    last_non_direct,
    last_touch,
    linear,
    position_based,
    time_decay,
)
from perfmark.attribution.domain.markov import markov_model
from perfmark.attribution.domain.paths import PathTable
from perfmark.attribution.domain.results import AttributionResult
from perfmark.attribution.domain.shapley import (
    DEFAULT_SHAPLEY_PERMUTATIONS,
    SHAPLEY_EXACT_MAX_CHANNELS,
    shapley_model,
)
from perfmark.errors import ValidationError

__all__ = ["MODEL_NAMES", "ModelComparison", "ModelOptions", "compare_models", "run_model"]

MODEL_NAMES: tuple[str, ...] = (*HEURISTIC_MODELS, "markov", "shapley")


@dataclass(frozen=True)
class ModelOptions:
    """Parameters of the models; each model reads only its own."""

    order: int = 1
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS
    position_shares: tuple[float, float, float] = DEFAULT_POSITION_SHARES
    direct_channels: tuple[str, ...] = DEFAULT_DIRECT_CHANNELS
    shapley_game: str | None = None
    max_exact_channels: int = SHAPLEY_EXACT_MAX_CHANNELS
    n_permutations: int = DEFAULT_SHAPLEY_PERMUTATIONS
    seed: int = 0


def run_model(
    table: PathTable, model: str, options: ModelOptions | None = None
) -> AttributionResult:
    """Run the model called `model` (one of `MODEL_NAMES`) on the paths."""
    opts = options or ModelOptions()
    if model == "first_touch":
        return first_touch(table)
    if model == "last_touch":
        return last_touch(table)
    if model == "last_non_direct":
        return last_non_direct(table, opts.direct_channels)
    if model == "linear":
        return linear(table)
    if model == "time_decay":
        return time_decay(table, opts.half_life_days)
    if model == "position_based":
        return position_based(table, *opts.position_shares)
    if model == "markov":
        return markov_model(table, opts.order)
    if model == "shapley":
        return shapley_model(
            table,
            game=opts.shapley_game,
            max_exact_channels=opts.max_exact_channels,
            n_permutations=opts.n_permutations,
            seed=opts.seed,
        )
    raise ValidationError(f"model is {model!r}; use one of {', '.join(MODEL_NAMES)}", field="model")


@dataclass(frozen=True)
class ModelComparison:
    """Credits of several models side by side: `conversions[i][j]` is channel i under model j."""

    channels: tuple[str, ...]
    models: tuple[str, ...]
    conversions: tuple[tuple[float, ...], ...]
    value: tuple[tuple[float, ...], ...]
    results: tuple[AttributionResult, ...]


def compare_models(
    table: PathTable,
    models: Sequence[str] | None = None,
    options: ModelOptions | None = None,
) -> ModelComparison:
    """Run several models on the same paths; by default every model the input supports.

    Time decay is left out of the default list when the input has no touch lags.
    """
    chosen: Collection[str] = (
        models
        if models is not None
        else [m for m in MODEL_NAMES if m != "time_decay" or table.lag_days is not None]
    )
    results = tuple(run_model(table, model, options) for model in chosen)
    by_model = [result.conversions_by_channel() for result in results]
    value_by_model = [result.value_by_channel() for result in results]
    channels = table.channel_names
    return ModelComparison(
        channels=channels,
        models=tuple(result.model for result in results),
        conversions=tuple(tuple(row[c] for row in by_model) for c in channels),
        value=tuple(tuple(row[c] for row in value_by_model) for c in channels),
        results=results,
    )
