"""Shapley-value attribution over channel coalitions: exact up to a bound, sampled beyond it.

A coalition S of channels is worth v(S), computed from the journeys whose channel set lies
inside S. Two games are offered: "rate" (default when non-converting journeys are known),
v(S) = conversions / journeys among those journeys, i.e. the conversion rate reachable with
S alone; and "conversions", v(S) = their conversions. The value games use conversion value in
place of conversions. Shapley values add up to v(all channels) - v(nobody); credits are Shapley
values scaled by total / v(all channels), so they add up to the total conversions (and value)
and keep symmetry and the null-player property. Under the rate game a channel whose journeys
convert worse than the rest lowers the rate and can get a negative credit.

Exact values need all 2^n coalitions: up to `SHAPLEY_EXACT_MAX_CHANNELS` channels they are
computed by a subset-sum (zeta) transform in O(n 2^n) time and a few 2^n float64 tables of
memory (8 MiB each at 20 channels). Beyond that, Shapley values are estimated from random
channel orders (permutation sampling) in batches of bounded memory, with a 95% error bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from perfmark.attribution.domain.paths import PathTable, sum_by_index
from perfmark.attribution.domain.results import AttributionResult, build_result
from perfmark.errors import ValidationError

__all__ = [
    "DEFAULT_SHAPLEY_PERMUTATIONS",
    "SHAPLEY_EXACT_MAX_CHANNELS",
    "SHAPLEY_EXACT_HARD_LIMIT_CHANNELS",
    "SHAPLEY_GAMES",
    "ShapleyEstimate",
    "shapley_estimate",
    "shapley_model",
    "shapley_values_exact",
]

SHAPLEY_EXACT_MAX_CHANNELS = 20
# 2^22 coalitions x 8 bytes = 32 MiB per table; a handful of tables stays well under 1 GiB.
SHAPLEY_EXACT_HARD_LIMIT_CHANNELS = 22
DEFAULT_SHAPLEY_PERMUTATIONS = 2000
SHAPLEY_GAMES = ("rate", "conversions")
_Z_95 = 1.959963984540054
# Elements per sampling batch (permutations x touched channels): bounds memory near 100 MiB.
_SAMPLING_BATCH_ELEMENTS = 1 << 22


@dataclass(frozen=True, eq=False)
class ShapleyEstimate:
    """Shapley values of the conversion and value games, exact or sampled with 95% errors.

    `errors_*` are zero when exact. `grand_*` is v(all channels) of each game.
    """

    game: str
    exact: bool
    n_permutations: int
    conversions: NDArray[np.float64]
    value: NDArray[np.float64]
    errors_conversions: NDArray[np.float64]
    errors_value: NDArray[np.float64]
    grand_conversions: float
    grand_value: float


def _popcount(n_channels: int) -> NDArray[np.int64]:
    return np.bitwise_count(np.arange(1 << n_channels, dtype=np.int64)).astype(np.int64)


def shapley_values_exact(game: NDArray[np.float64]) -> NDArray[np.float64]:
    """Exact Shapley values of a game given as v(S) for every coalition S (bit i = player i)."""
    size = int(game.size)
    n_players = size.bit_length() - 1
    if game.ndim != 1 or size != 1 << n_players:
        raise ValidationError(
            f"a game needs one value per coalition (2^n entries); got {size}", field="game"
        )
    if n_players > SHAPLEY_EXACT_HARD_LIMIT_CHANNELS:
        raise ValidationError(
            f"{n_players} players exceed the exact limit of {SHAPLEY_EXACT_HARD_LIMIT_CHANNELS}",
            field="game",
        )
    values = np.zeros(n_players, dtype=np.float64)
    if n_players == 0:
        return values
    factorial = math.factorial
    weight_by_size = np.array(
        [
            factorial(s) * factorial(n_players - s - 1) / factorial(n_players)
            for s in range(n_players)
        ],
        dtype=np.float64,
    )
    sizes = _popcount(n_players)
    game = np.ascontiguousarray(game, dtype=np.float64)
    for player in range(n_players):
        block = 1 << player
        pairs = game.reshape(-1, 2, block)
        without = sizes.reshape(-1, 2, block)[:, 0, :]
        gains = pairs[:, 1, :] - pairs[:, 0, :]
        values[player] = float(np.dot(weight_by_size[without].ravel(), gains.ravel()))
    return values


def _subset_sums(per_set: NDArray[np.float64], n_channels: int) -> NDArray[np.float64]:
    """f(S) = sum over T within S of per_set(T), in place (zeta transform)."""
    for bit in range(n_channels):
        pairs = per_set.reshape(-1, 2, 1 << bit)
        pairs[:, 1, :] += pairs[:, 0, :]
    return per_set


def _coalition_game(
    gains: NDArray[np.float64], journeys: NDArray[np.float64], game: str
) -> NDArray[np.float64]:
    if game == "conversions":
        return gains
    rate: NDArray[np.float64] = np.divide(
        gains, journeys, out=np.zeros_like(gains), where=journeys > 0
    )
    return rate


def _row_masks(table: PathTable) -> NDArray[np.int64]:
    bits = np.left_shift(np.int64(1), table.channels.astype(np.int64))
    masks: NDArray[np.int64] = np.bitwise_or.reduceat(bits, table.offsets[:-1])
    return masks


def _exact(table: PathTable, game: str) -> ShapleyEstimate:
    n = table.n_channels
    masks = _row_masks(table)
    size = 1 << n
    journeys = _subset_sums(sum_by_index(masks, table.conversions + table.nulls, size), n)
    conversions = _subset_sums(sum_by_index(masks, table.conversions, size), n)
    value = _subset_sums(sum_by_index(masks, table.value, size), n)
    conversion_game = _coalition_game(conversions, journeys, game)
    value_game = _coalition_game(value, journeys, game)
    zeros = np.zeros(n, dtype=np.float64)
    return ShapleyEstimate(
        game=game,
        exact=True,
        n_permutations=0,
        conversions=shapley_values_exact(conversion_game),
        value=shapley_values_exact(value_game),
        errors_conversions=zeros,
        errors_value=zeros.copy(),
        grand_conversions=float(conversion_game[-1]),
        grand_value=float(value_game[-1]),
    )


@dataclass(frozen=True)
class _ChannelSets:
    offsets: NDArray[np.int64]
    channels: NDArray[np.int64]
    conversions: NDArray[np.float64]
    journeys: NDArray[np.float64]
    value: NDArray[np.float64]


def _distinct_channel_sets(table: PathTable) -> _ChannelSets:
    """Distinct channel sets of the rows (sorted channel lists) with their summed outcomes."""
    n = table.n_channels
    pairs = np.unique(table.row_of_touch * n + table.channels.astype(np.int64))
    pair_rows = pairs // n
    pair_channels = pairs % n
    pair_offsets = np.searchsorted(pair_rows, np.arange(table.n_paths + 1))
    words = (n + 62) // 63
    masks = np.zeros((table.n_paths, words), dtype=np.int64)
    for word in range(words):
        in_word = (pair_channels // 63) == word
        bits = np.where(in_word, np.left_shift(np.int64(1), pair_channels % 63), 0)
        masks[:, word] = np.bitwise_or.reduceat(bits, pair_offsets[:-1])
    _, first_row, inverse = np.unique(masks, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    n_sets = first_row.size
    lengths = pair_offsets[first_row + 1] - pair_offsets[first_row]
    set_offsets = np.zeros(n_sets + 1, dtype=np.int64)
    np.cumsum(lengths, out=set_offsets[1:])
    gather = np.repeat(pair_offsets[first_row] - set_offsets[:-1], lengths) + np.arange(
        set_offsets[-1]
    )
    return _ChannelSets(
        offsets=set_offsets,
        channels=pair_channels[gather],
        conversions=sum_by_index(inverse, table.conversions, n_sets),
        journeys=sum_by_index(inverse, table.conversions + table.nulls, n_sets),
        value=sum_by_index(inverse, table.value, n_sets),
    )


def _prefix_games(
    sets: _ChannelSets, ranks: NDArray[np.int64], n: int, game: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """v(first k+1 channels of each order) for the conversion and value games, shape (B, n)."""
    batch = ranks.shape[0]
    # A set joins the coalition when its latest channel in the order arrives.
    joins_at = np.maximum.reduceat(ranks[:, sets.channels], sets.offsets[:-1], axis=1)
    slot = (joins_at + (np.arange(batch, dtype=np.int64) * n)[:, None]).ravel()

    def prefix(weights: NDArray[np.float64]) -> NDArray[np.float64]:
        per_slot = sum_by_index(slot, np.tile(weights, batch), batch * n)
        cumulative: NDArray[np.float64] = np.cumsum(per_slot.reshape(batch, n), axis=1)
        return cumulative

    journeys = prefix(sets.journeys)
    conversions = _coalition_game(prefix(sets.conversions), journeys, game)
    value = _coalition_game(prefix(sets.value), journeys, game)
    return conversions, value


def _sampled(table: PathTable, game: str, n_permutations: int, seed: int) -> ShapleyEstimate:
    n = table.n_channels
    sets = _distinct_channel_sets(table)
    rng = np.random.default_rng(seed)
    batch_size = max(1, min(n_permutations, _SAMPLING_BATCH_ELEMENTS // max(sets.channels.size, n)))
    sums = np.zeros((2, n), dtype=np.float64)
    squares = np.zeros((2, n), dtype=np.float64)
    order_positions = np.arange(n, dtype=np.int64)
    done = 0
    while done < n_permutations:
        batch = min(batch_size, n_permutations - done)
        orders = rng.permuted(np.tile(order_positions, (batch, 1)), axis=1)
        ranks = np.empty_like(orders)
        np.put_along_axis(ranks, orders, np.broadcast_to(order_positions, orders.shape), axis=1)
        for index, prefix in enumerate(_prefix_games(sets, ranks, n, game)):
            gains = np.diff(prefix, axis=1, prepend=0.0)
            sums[index] += sum_by_index(orders.ravel(), gains.ravel(), n)
            squares[index] += sum_by_index(orders.ravel(), (gains**2).ravel(), n)
        done += batch
    means = sums / n_permutations
    if n_permutations > 1:
        variance = np.maximum(squares / n_permutations - means**2, 0.0) * (
            n_permutations / (n_permutations - 1)
        )
        errors = _Z_95 * np.sqrt(variance / n_permutations)
    else:
        errors = np.full((2, n), np.inf)
    everyone = np.array([float(sets.journeys.sum())])
    grand_conversions = _coalition_game(np.array([float(sets.conversions.sum())]), everyone, game)
    grand_value = _coalition_game(np.array([float(sets.value.sum())]), everyone, game)
    return ShapleyEstimate(
        game=game,
        exact=False,
        n_permutations=n_permutations,
        conversions=means[0],
        value=means[1],
        errors_conversions=errors[0],
        errors_value=errors[1],
        grand_conversions=float(grand_conversions[0]),
        grand_value=float(grand_value[0]),
    )


def _check_int(field: str, value: int, low: int, high: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or not low <= value <= high
    ):
        raise ValidationError(
            f"{field} is {value!r}; give an integer from {low} to {high}", field=field
        )
    return int(value)


def _resolve_game(table: PathTable, game: str | None) -> str:
    if game is None:
        return "rate" if table.total_nulls > 0 else "conversions"
    if game not in SHAPLEY_GAMES:
        raise ValidationError(
            f"game is {game!r}; use one of {', '.join(SHAPLEY_GAMES)}", field="game"
        )
    return game


def shapley_estimate(
    table: PathTable,
    *,
    game: str | None = None,
    max_exact_channels: int = SHAPLEY_EXACT_MAX_CHANNELS,
    n_permutations: int = DEFAULT_SHAPLEY_PERMUTATIONS,
    seed: int = 0,
) -> ShapleyEstimate:
    """Raw Shapley values of the chosen game: exact up to `max_exact_channels`, else sampled."""
    resolved = _resolve_game(table, game)
    limit = _check_int(
        "max_exact_channels", max_exact_channels, 0, SHAPLEY_EXACT_HARD_LIMIT_CHANNELS
    )
    permutations = _check_int("n_permutations", n_permutations, 1, 10_000_000)
    if table.n_channels <= limit:
        return _exact(table, resolved)
    return _sampled(table, resolved, permutations, seed)


def _scale(values: NDArray[np.float64], grand: float, total: float) -> NDArray[np.float64]:
    if grand == 0:
        return np.zeros_like(values)
    scaled: NDArray[np.float64] = values * (total / grand)
    return scaled


def shapley_model(
    table: PathTable,
    *,
    game: str | None = None,
    max_exact_channels: int = SHAPLEY_EXACT_MAX_CHANNELS,
    n_permutations: int = DEFAULT_SHAPLEY_PERMUTATIONS,
    seed: int = 0,
) -> AttributionResult:
    """Shapley attribution: credits add up to the total conversions and value.

    With more than `max_exact_channels` channels it samples `n_permutations` channel orders
    (reproducible with `seed`) and reports each credit's 95% error bound and a note.
    """
    estimate = shapley_estimate(
        table,
        game=game,
        max_exact_channels=max_exact_channels,
        n_permutations=n_permutations,
        seed=seed,
    )
    total_conversions = table.total_conversions
    total_value = table.total_value
    notes = []
    if game is None and estimate.game == "conversions":
        notes.append("no total_null given: using the conversions game instead of the rate game")
    if not estimate.exact:
        worst = float(
            _scale(estimate.errors_conversions, estimate.grand_conversions, total_conversions).max()
        )
        notes.append(
            f"{table.n_channels} channels exceed the exact limit of {max_exact_channels} "
            f"(2^{table.n_channels} coalitions): sampled {estimate.n_permutations} channel "
            f"orders; 95% error bound up to {worst:.6g} conversions per channel"
        )
    return build_result(
        "shapley",
        table.channel_names,
        _scale(estimate.conversions, estimate.grand_conversions, total_conversions),
        _scale(estimate.value, estimate.grand_value, total_value),
        total_conversions=total_conversions,
        total_value=total_value,
        parameters=(
            ("game", estimate.game),
            ("exact", estimate.exact),
            ("n_permutations", estimate.n_permutations),
        ),
        notes=notes,
        errors_conversions=_scale(
            estimate.errors_conversions, estimate.grand_conversions, total_conversions
        ),
        errors_value=_scale(estimate.errors_value, estimate.grand_value, total_value),
    )
