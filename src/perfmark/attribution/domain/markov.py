"""Markov-chain attribution of order 1 to 3 with exact removal effects (absorbing-chain algebra).

The chain follows ChannelAttribution's conventions: a state is a window of `order` consecutive
channels of a path (the whole path when it is shorter), a path repeating the same state
consecutively counts it once, every path starts in `(start)` and ends in `(conversion)` with
its conversions and in `(null)` with its nulls, and transitions are weighted by conversions +
nulls. Removing a channel sends every transition into a state that contains it to `(null)`.

Where ChannelAttribution estimates the removed chains by simulating journeys (and, at its
defaults, cuts each simulated journey at the longest observed path length), this module solves
(I - Q) x = r with a sparse LU factorisation for the full chain and once per removed channel,
so the removal effects are exact up to float rounding. The removal effect of a channel is
1 - P(conversion without it) / P(conversion); the value removal effect uses the expected
conversion value, where a conversion reached from state s is worth the mean value per
conversion of the paths ending in s (ChannelAttribution draws it from that distribution).
Credits are removal effects normalised to sum to the total conversions (and value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.sparse.linalg import splu

from perfmark.attribution.domain.paths import PathTable, sum_by_index
from perfmark.attribution.domain.results import AttributionResult, build_result
from perfmark.errors import ValidationError

__all__ = [
    "MAX_MARKOV_ORDER",
    "MarkovChain",
    "RemovalEffects",
    "build_markov_chain",
    "exact_removal_effects",
    "markov_model",
]

MAX_MARKOV_ORDER = 3
START_STATE = 0
# State codes pack `order` channel digits (channel index + 1, 0 = past the path's end) in one
# int64; this bound keeps base ** order below 2**62.
_MAX_CODE = 2**62
# Code spaces up to this size (8 bytes each: 32 MiB) are indexed by a table instead of a sort.
_DENSE_CODE_SPACE = 1 << 22


@dataclass(frozen=True, eq=False)
class MarkovChain:
    """The estimated chain: transient states (0 = start), their transition and exit probabilities.

    `state_channels[s]` lists the channel indices in state s (-1 pads windows shorter than the
    order; row 0, the start state, is all -1). `to_conversion[s]` and `to_null[s]` are exit
    probabilities; `conversion_value[s]` is P(s -> conversion) x mean value per conversion there.
    """

    order: int
    channel_names: tuple[str, ...]
    state_channels: NDArray[np.int32]
    transitions: sp.csr_matrix
    to_conversion: NDArray[np.float64]
    to_null: NDArray[np.float64]
    conversion_value: NDArray[np.float64]

    @property
    def n_states(self) -> int:
        """Transient states, including the start state."""
        return int(self.state_channels.shape[0])

    def state_label(self, state: int) -> str:
        """A readable name: "(start)" or the channels of the window joined by " > "."""
        if state == START_STATE:
            return "(start)"
        return " > ".join(self.channel_names[c] for c in self.state_channels[state] if c >= 0)


@dataclass(frozen=True, eq=False)
class RemovalEffects:
    """Exact removal effects per channel for conversions and for value, with the base chain's
    conversion probability and expected value per journey."""

    channel_names: tuple[str, ...]
    conversion_probability: float
    value_per_journey: float
    conversions: NDArray[np.float64]
    value: NDArray[np.float64]


def _check_order(order: int) -> int:
    if isinstance(order, bool) or not isinstance(order, int | np.integer):
        raise ValidationError(f"order is {order!r}; give an integer from 1 to 3", field="order")
    if not 1 <= order <= MAX_MARKOV_ORDER:
        raise ValidationError(
            f"order is {order}; Markov attribution supports orders 1 to {MAX_MARKOV_ORDER}",
            field="order",
        )
    return int(order)


def _state_codes(table: PathTable, order: int) -> tuple[NDArray[np.int64], NDArray[np.int64], int]:
    """Per row, the codes of its windows with consecutive repeats collapsed; their rows; base."""
    base = table.n_channels + 1
    if base**order >= _MAX_CODE:
        raise ValidationError(
            f"{table.n_channels} channels at order {order} are too many states to encode; "
            "use a lower order or fewer channels",
            field="order",
        )
    rows = table.row_of_touch
    if order == 1:
        # Every touch is a window of its own: the code is the channel digit.
        codes = table.channels.astype(np.int64) + 1
        window_rows = rows
    else:
        codes, window_rows = _window_codes(table, order, base)
    repeat = np.zeros(codes.size, dtype=bool)
    repeat[1:] = (codes[1:] == codes[:-1]) & (window_rows[1:] == window_rows[:-1])
    return codes[~repeat], window_rows[~repeat], base


def _window_codes(
    table: PathTable, order: int, base: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Codes of every window of `order` touches (the whole path when shorter), and their rows."""
    rows = table.row_of_touch
    n_touches = table.n_touches
    row_end = table.offsets[1:][rows]
    digits = table.channels.astype(np.int64) + 1
    touch = np.arange(n_touches, dtype=np.int64)
    codes = np.zeros(n_touches, dtype=np.int64)
    for shift in range(order):
        ahead = touch + shift
        inside = ahead < row_end
        codes = codes * base + np.where(inside, digits[np.minimum(ahead, n_touches - 1)], 0)
    position = touch - table.offsets[:-1][rows]
    last_start = np.maximum(table.lengths - order, 0)
    is_window = position <= last_start[rows]
    return codes[is_window], rows[is_window]


def _decode(codes: NDArray[np.int64], base: int, order: int) -> NDArray[np.int32]:
    channels = np.empty((codes.size, order), dtype=np.int32)
    rest = codes.copy()
    for shift in range(order - 1, -1, -1):
        channels[:, shift] = (rest % base) - 1
        rest //= base
    return channels


def _dense_ids(
    codes: NDArray[np.int64], code_space: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Sorted distinct codes and each code's rank among them (np.unique with return_inverse)."""
    if code_space > _DENSE_CODE_SPACE:
        unique, inverse = np.unique(codes, return_inverse=True)
        return unique, inverse.astype(np.int64)
    # A lookup table over the whole code space avoids sorting millions of codes.
    seen = np.zeros(code_space, dtype=bool)
    seen[codes] = True
    unique = np.flatnonzero(seen).astype(np.int64)
    rank = np.zeros(code_space, dtype=np.int64)
    rank[unique] = np.arange(unique.size, dtype=np.int64)
    return unique, rank[codes]


def _transition_counts(
    origin: NDArray[np.int64], target: NDArray[np.int64], weight: NDArray[np.float64], size: int
) -> sp.csr_matrix:
    """Summed weights per (origin, target) pair as a sparse matrix."""
    pair = origin * size + target
    if size * size <= _DENSE_CODE_SPACE:
        sums = sum_by_index(pair, weight, size * size)
        cells = np.flatnonzero(sums)
        values = sums[cells]
    else:
        cells, inverse = np.unique(pair, return_inverse=True)
        values = sum_by_index(inverse, weight, cells.size)
    return sp.csr_matrix((values, (cells // size, cells % size)), shape=(size, size))


def build_markov_chain(table: PathTable, order: int = 1) -> MarkovChain:
    """Estimate the order-`order` chain from aggregated paths (transition counts, normalised)."""
    order = _check_order(order)
    codes, rows, base = _state_codes(table, order)
    unique_codes, inverse = _dense_ids(codes, base**order)
    states = inverse + 1
    n_states = unique_codes.size + 1
    weight = table.conversions + table.nulls
    first = np.ones(states.size, dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    last = np.ones(states.size, dtype=bool)
    last[:-1] = rows[1:] != rows[:-1]
    previous = np.empty_like(states)
    previous[0] = START_STATE
    previous[1:] = states[:-1]
    previous[first] = START_STATE
    counts = _transition_counts(previous, states, weight[rows], n_states)
    last_states = states[last]
    last_rows = rows[last]
    converted = sum_by_index(last_states, table.conversions[last_rows], n_states)
    not_converted = sum_by_index(last_states, table.nulls[last_rows], n_states)
    # ChannelAttribution ignores the value of paths without conversions (no value per conversion).
    path_value = np.where(table.conversions > 0, table.value, 0.0)
    value_at_exit = sum_by_index(last_states, path_value[last_rows], n_states)
    out_weight = np.asarray(counts.sum(axis=1)).ravel() + converted + not_converted
    # A state seen only on paths with 0 conversions and 0 nulls has no outgoing weight; its row
    # stays empty, which makes it a dead end with x = 0 and keeps I - Q invertible.
    scale = np.divide(1.0, out_weight, out=np.zeros(n_states), where=out_weight > 0)
    transitions = sp.csr_matrix(sp.diags(scale) @ counts)
    state_channels = np.full((n_states, order), -1, dtype=np.int32)
    state_channels[1:] = _decode(unique_codes, base, order)
    return MarkovChain(
        order=order,
        channel_names=table.channel_names,
        state_channels=state_channels,
        transitions=transitions,
        to_conversion=converted * scale,
        to_null=not_converted * scale,
        conversion_value=value_at_exit * scale,
    )


def _absorb_from_start(
    transitions: sp.csr_matrix, rewards: NDArray[np.float64], keep: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Expected reward collected at absorption from the start state, on the kept states only."""
    kept = np.flatnonzero(keep)
    q = transitions[kept][:, kept]
    system = (sp.identity(kept.size, format="csc") - q).tocsc()
    solution = splu(system).solve(np.ascontiguousarray(rewards[kept]))
    start_row = int(np.searchsorted(kept, START_STATE))
    result: NDArray[np.float64] = solution[start_row]
    return result


def exact_removal_effects(chain: MarkovChain) -> RemovalEffects:
    """Removal effect of every channel, for conversions and value, by one sparse solve each."""
    rewards = np.column_stack([chain.to_conversion, chain.conversion_value])
    everything = np.ones(chain.n_states, dtype=bool)
    base = _absorb_from_start(chain.transitions, rewards, everything)
    n_channels = len(chain.channel_names)
    effects = np.zeros((n_channels, 2), dtype=np.float64)
    present = np.zeros(n_channels, dtype=bool)
    touched = chain.state_channels[chain.state_channels >= 0]
    present[np.unique(touched)] = True
    for channel in np.flatnonzero(present):
        contains = (chain.state_channels == channel).any(axis=1)
        removed = _absorb_from_start(chain.transitions, rewards, ~contains)
        ratio = np.divide(removed, base, out=np.ones(2), where=base > 0)
        # Removing states can only lose absorbed mass, so a tiny negative is float rounding.
        effects[channel] = np.maximum(1.0 - ratio, 0.0)
    return RemovalEffects(
        channel_names=chain.channel_names,
        conversion_probability=float(base[0]),
        value_per_journey=float(base[1]),
        conversions=effects[:, 0].copy(),
        value=effects[:, 1].copy(),
    )


def _normalise(effects: NDArray[np.float64], total: float) -> NDArray[np.float64]:
    mass = effects.sum()
    if mass <= 0:
        return np.zeros_like(effects)
    shares: NDArray[np.float64] = effects / mass * total
    return shares


def markov_model(table: PathTable, order: int = 1) -> AttributionResult:
    """Markov attribution: exact removal effects normalised to total conversions and value."""
    chain = build_markov_chain(table, order)
    effects = exact_removal_effects(chain)
    notes = [
        f"{chain.n_states - 1} states; conversion probability per journey "
        f"{effects.conversion_probability:.6g}"
    ]
    if table.total_nulls == 0:
        notes.append(
            "no total_null given: every observed journey converts, so removal effects only "
            "measure how often a channel lies on converting paths"
        )
    return build_result(
        "markov",
        table.channel_names,
        _normalise(effects.conversions, table.total_conversions),
        _normalise(effects.value, table.total_value),
        total_conversions=table.total_conversions,
        total_value=table.total_value,
        parameters=(("order", order),),
        notes=notes,
        removal_effects_conversions=effects.conversions,
        removal_effects_value=effects.value,
    )
