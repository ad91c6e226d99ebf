"""Rule-based attribution: first touch, last touch, last non-direct, linear, time decay, position.

Each model gives every touch of a row a weight, the weights of a row sum to 1, and a channel's
credit is the sum over its touches of weight x the row's conversions (or value). So every
model's credits add up to the total conversions and value exactly (up to float rounding).
First, last and linear follow ChannelAttribution's `heuristic_models`: linear gives each touch
1/length, so a channel touched twice in a path gets 2/length.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from perfmark.attribution.domain.paths import LAG_DAYS_FIELD, PathTable, sum_by_index
from perfmark.attribution.domain.results import AttributionResult, build_result
from perfmark.errors import ValidationError

__all__ = [
    "DEFAULT_DIRECT_CHANNELS",
    "DEFAULT_HALF_LIFE_DAYS",
    "DEFAULT_POSITION_SHARES",
    "HEURISTIC_MODELS",
    "first_touch",
    "last_non_direct",
    "last_touch",
    "linear",
    "position_based",
    "position_weights",
    "time_decay",
    "touch_weights",
]

DEFAULT_HALF_LIFE_DAYS = 7.0
DEFAULT_POSITION_SHARES = (0.4, 0.2, 0.4)
DEFAULT_DIRECT_CHANNELS: tuple[str, ...] = ("direct", "(direct)")
_SHARE_SUM_TOLERANCE = 1e-9
HEURISTIC_MODELS = (
    "first_touch",
    "last_touch",
    "last_non_direct",
    "linear",
    "time_decay",
    "position_based",
)


def _credit(
    table: PathTable,
    weights: NDArray[np.float64],
    model: str,
    parameters: Sequence[tuple[str, object]] = (),
    notes: Sequence[str] = (),
) -> AttributionResult:
    rows = table.row_of_touch
    n = table.n_channels
    conversions = sum_by_index(table.channels, weights * table.conversions[rows], n)
    value = sum_by_index(table.channels, weights * table.value[rows], n)
    return build_result(
        model,
        table.channel_names,
        conversions,
        value,
        total_conversions=table.total_conversions,
        total_value=table.total_value,
        parameters=parameters,
        notes=notes,
    )


def _one_per_row(table: PathTable, touch_index: NDArray[np.int64]) -> NDArray[np.float64]:
    weights = np.zeros(table.n_touches, dtype=np.float64)
    weights[touch_index] = 1.0
    return weights


def _credit_one_per_row(
    table: PathTable,
    touch_index: NDArray[np.int64],
    model: str,
    parameters: Sequence[tuple[str, object]] = (),
    notes: Sequence[str] = (),
) -> AttributionResult:
    """Credit when each row gives everything to one touch: sums over rows, not touches."""
    chosen = table.channels[touch_index]
    n = table.n_channels
    return build_result(
        model,
        table.channel_names,
        sum_by_index(chosen, table.conversions, n),
        sum_by_index(chosen, table.value, n),
        total_conversions=table.total_conversions,
        total_value=table.total_value,
        parameters=parameters,
        notes=notes,
    )


def first_touch(table: PathTable) -> AttributionResult:
    """All credit to the first touch of each path."""
    return _credit_one_per_row(table, table.offsets[:-1], "first_touch")


def last_touch(table: PathTable) -> AttributionResult:
    """All credit to the last touch of each path."""
    return _credit_one_per_row(table, table.offsets[1:] - 1, "last_touch")


def _direct_names(direct_channels: Collection[str]) -> set[str]:
    return {name.casefold() for name in direct_channels}


def _last_non_direct_touch(table: PathTable, direct_channels: Collection[str]) -> NDArray[np.int64]:
    direct = _direct_names(direct_channels)
    is_direct_channel = np.array(
        [name.casefold() in direct for name in table.channel_names], dtype=bool
    )
    positions = np.arange(table.n_touches, dtype=np.int64)
    candidate = np.where(is_direct_channel[table.channels], -1, positions)
    last_candidate = np.maximum.reduceat(candidate, table.offsets[:-1])
    return np.where(last_candidate >= 0, last_candidate, table.offsets[1:] - 1)


def last_non_direct(
    table: PathTable, direct_channels: Collection[str] = DEFAULT_DIRECT_CHANNELS
) -> AttributionResult:
    """All credit to the last touch that is not direct; a path of only direct touches keeps it.

    Channel names match `direct_channels` case-insensitively.
    """
    direct = _direct_names(direct_channels)
    present = [name for name in table.channel_names if name.casefold() in direct]
    return _credit_one_per_row(
        table,
        _last_non_direct_touch(table, direct_channels),
        "last_non_direct",
        parameters=(("direct_channels", ",".join(sorted(direct))),),
        notes=() if present else ("no channel matched the direct channel names",),
    )


def _linear_weights(table: PathTable) -> NDArray[np.float64]:
    return (1.0 / table.lengths.astype(np.float64))[table.row_of_touch]


def linear(table: PathTable) -> AttributionResult:
    """Equal credit to every touch of a path (1/length each)."""
    # Channel credit = sum over rows of (touches of the channel in the row) x share x amount:
    # the transposed row x channel incidence matrix times the per-row amounts. It adds the
    # same products in the same touch order as `_credit` with `_linear_weights` (so the same
    # floats), without materialising a weight per touch.
    share = 1.0 / table.lengths.astype(np.float64)
    per_row = np.column_stack([share * table.conversions, share * table.value])
    incidence = sp.csr_matrix(
        (np.ones(table.n_touches), table.channels, table.offsets),
        shape=(table.n_paths, table.n_channels),
    )
    credits = np.asarray(incidence.T @ per_row, dtype=np.float64)
    return build_result(
        "linear",
        table.channel_names,
        credits[:, 0],
        credits[:, 1],
        total_conversions=table.total_conversions,
        total_value=table.total_value,
    )


def _check_half_life(half_life_days: float) -> float:
    if not isinstance(half_life_days, int | float) or not math.isfinite(half_life_days):
        raise ValidationError(
            f"half_life_days is {half_life_days!r}; give a finite number of days > 0",
            field="half_life_days",
        )
    if half_life_days <= 0:
        raise ValidationError(
            f"half_life_days is {half_life_days!r}; a half-life must be > 0 days (a zero window "
            "gives no touch any weight)",
            field="half_life_days",
        )
    return float(half_life_days)


def _time_decay_weights(table: PathTable, half_life_days: float) -> NDArray[np.float64]:
    half_life = _check_half_life(half_life_days)
    if table.lag_days is None:
        raise ValidationError(
            f"time decay needs {LAG_DAYS_FIELD} (the days from each touch to the conversion); "
            "aggregated paths have no touch times, so build the input from a touch table",
            field=LAG_DAYS_FIELD,
        )
    starts = table.offsets[:-1]
    rows = table.row_of_touch
    # Measure lags from each row's most recent touch so the largest weight is 1 and a long
    # journey cannot underflow every weight to 0; the row normalisation cancels the shift.
    nearest = np.minimum.reduceat(table.lag_days, starts)
    raw = np.exp2(-(table.lag_days - nearest[rows]) / half_life)
    weights: NDArray[np.float64] = raw / np.add.reduceat(raw, starts)[rows]
    return weights


def time_decay(
    table: PathTable, half_life_days: float = DEFAULT_HALF_LIFE_DAYS
) -> AttributionResult:
    """Credit halving every `half_life_days` before the conversion: weight 2^(-lag/half-life).

    Needs `lag_days` (a touch table); weights are normalised within each journey.
    """
    weights = _time_decay_weights(table, half_life_days)
    return _credit(table, weights, "time_decay", parameters=(("half_life_days", half_life_days),))


def _check_shares(shares: tuple[float, float, float]) -> tuple[float, float, float]:
    names = ("first_share", "middle_share", "last_share")
    for name, share in zip(names, shares, strict=True):
        if not isinstance(share, int | float) or not math.isfinite(share) or share < 0:
            raise ValidationError(
                f"{name} is {share!r}; a share must be a finite number between 0 and 1",
                field=name,
            )
    total = sum(shares)
    if abs(total - 1.0) > _SHARE_SUM_TOLERANCE:
        raise ValidationError(
            f"first, middle and last shares add up to {total!r}; they must add up to 1 "
            f"(e.g. 0.4, 0.2, 0.4)",
            field="position_shares",
        )
    first, middle, last = (float(share) for share in shares)
    return first, middle, last


def position_weights(
    table: PathTable, first_share: float, middle_share: float, last_share: float
) -> NDArray[np.float64]:
    """Per-touch weights of the position-based model (see `position_based`)."""
    first, middle, last = _check_shares((first_share, middle_share, last_share))
    lengths = table.lengths
    starts = table.offsets[:-1]
    ends = table.offsets[1:] - 1
    rows = table.row_of_touch
    weights = np.zeros(table.n_touches, dtype=np.float64)
    long_rows = lengths >= 3
    middle_per_touch = np.where(long_rows, middle / np.maximum(lengths - 2, 1), 0.0)
    weights[:] = middle_per_touch[rows]
    ends_share = first + last
    # With two touches there is no middle: its share goes to both ends in proportion to theirs.
    first_of_two = first + middle * (first / ends_share) if ends_share > 0 else 0.5
    last_of_two = 1.0 - first_of_two
    weights[starts] = np.where(lengths == 1, 1.0, np.where(lengths == 2, first_of_two, first))
    two_or_more = lengths >= 2
    weights[ends[two_or_more]] = np.where(lengths[two_or_more] == 2, last_of_two, last)
    return weights


def position_based(
    table: PathTable,
    first_share: float = DEFAULT_POSITION_SHARES[0],
    middle_share: float = DEFAULT_POSITION_SHARES[1],
    last_share: float = DEFAULT_POSITION_SHARES[2],
) -> AttributionResult:
    """First and last touches get their shares, the middle share is split over middle touches.

    One touch gets everything; two touches share the middle share in proportion to the first
    and last shares (50/50 at the default 40/20/40).
    """
    weights = position_weights(table, first_share, middle_share, last_share)
    return _credit(
        table,
        weights,
        "position_based",
        parameters=(
            ("first_share", first_share),
            ("middle_share", middle_share),
            ("last_share", last_share),
        ),
    )


def touch_weights(
    table: PathTable,
    model: str,
    *,
    direct_channels: Collection[str] = DEFAULT_DIRECT_CHANNELS,
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS,
    position_shares: tuple[float, float, float] = DEFAULT_POSITION_SHARES,
) -> NDArray[np.float64]:
    """Per-touch weights of one heuristic model (each row sums to 1), for drill-down rows."""
    if model == "first_touch":
        return _one_per_row(table, table.offsets[:-1])
    if model == "last_touch":
        return _one_per_row(table, table.offsets[1:] - 1)
    if model == "last_non_direct":
        return _one_per_row(table, _last_non_direct_touch(table, direct_channels))
    if model == "linear":
        return _linear_weights(table)
    if model == "time_decay":
        return _time_decay_weights(table, half_life_days)
    if model == "position_based":
        return position_weights(table, *position_shares)
    raise ValidationError(
        f"model {model!r} is not a heuristic model; use one of {', '.join(HEURISTIC_MODELS)}",
        field="model",
    )
