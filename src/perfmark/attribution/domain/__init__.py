"""Pure attribution math on aggregated paths and touch tables (numpy/scipy, no I/O)."""

from __future__ import annotations

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
    touch_weights,
)
from perfmark.attribution.domain.markov import (
    MAX_MARKOV_ORDER,
    MarkovChain,
    RemovalEffects,
    build_markov_chain,
    exact_removal_effects,
    markov_model,
)
from perfmark.attribution.domain.models import (
    MODEL_NAMES,
    ModelComparison,
    ModelOptions,
    compare_models,
    run_model,
)
from perfmark.attribution.domain.paths import PathTable, path_table_from_lists
from perfmark.attribution.domain.results import AttributionResult, ChannelCredit
from perfmark.attribution.domain.shapley import (
    DEFAULT_SHAPLEY_PERMUTATIONS,
    SHAPLEY_EXACT_HARD_LIMIT_CHANNELS,
    SHAPLEY_EXACT_MAX_CHANNELS,
    SHAPLEY_GAMES,
    ShapleyEstimate,
    shapley_estimate,
    shapley_model,
    shapley_values_exact,
)

__all__ = [
    "DEFAULT_DIRECT_CHANNELS",
    "DEFAULT_HALF_LIFE_DAYS",
    "DEFAULT_POSITION_SHARES",
    "DEFAULT_SHAPLEY_PERMUTATIONS",
    "HEURISTIC_MODELS",
    "MAX_MARKOV_ORDER",
    "MODEL_NAMES",
    "SHAPLEY_EXACT_HARD_LIMIT_CHANNELS",
    "SHAPLEY_EXACT_MAX_CHANNELS",
    "SHAPLEY_GAMES",
    "AttributionResult",
    "ChannelCredit",
    "MarkovChain",
    "ModelComparison",
    "ModelOptions",
    "PathTable",
    "RemovalEffects",
    "ShapleyEstimate",
    "build_markov_chain",
    "compare_models",
    "exact_removal_effects",
    "first_touch",
    "last_non_direct",
    "last_touch",
    "linear",
    "markov_model",
    "path_table_from_lists",
    "position_based",
    "run_model",
    "shapley_estimate",
    "shapley_model",
    "shapley_values_exact",
    "time_decay",
    "touch_weights",
]
