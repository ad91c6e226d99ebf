"""Independent, slow reference computations and hypothesis strategies for the attribution tests.

Nothing here imports perfmark's attribution math: the Markov oracle rebuilds the chain with
Python dicts and solves it by repeated squaring of the full stochastic matrix; the Shapley
oracle enumerates every channel order.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st


@dataclass(frozen=True)
class SmallPaths:
    """A small aggregated-paths input as plain Python lists."""

    paths: list[list[str]]
    conversions: list[int]
    value: list[float]
    nulls: list[int]

    @property
    def strings(self) -> list[str]:
        return [" > ".join(path) for path in self.paths]

    @property
    def channels(self) -> list[str]:
        seen: dict[str, None] = {}
        for path in self.paths:
            for channel in path:
                seen.setdefault(channel, None)
        return list(seen)


@st.composite
def small_paths(
    draw: st.DrawFn, max_channels: int = 5, max_rows: int = 8, max_length: int = 6
) -> SmallPaths:
    """Random aggregated paths with integer conversions and nulls, at least one journey."""
    alphabet = "abcdefghij"[: draw(st.integers(1, max_channels))]
    rows = draw(st.integers(1, max_rows))
    paths = [
        draw(st.lists(st.sampled_from(alphabet), min_size=1, max_size=max_length))
        for _ in range(rows)
    ]
    conversions = draw(st.lists(st.integers(0, 6), min_size=rows, max_size=rows))
    nulls = draw(st.lists(st.integers(0, 6), min_size=rows, max_size=rows))
    if sum(conversions) + sum(nulls) == 0:
        conversions[0] = 1
    value = [float(draw(st.integers(0, 500))) / 4 if conv > 0 else 0.0 for conv in conversions]
    return SmallPaths(paths, conversions, value, nulls)


def _windows(path: list[str], order: int) -> list[tuple[str, ...]]:
    if len(path) <= order:
        windows = [tuple(path)]
    else:
        windows = [tuple(path[i : i + order]) for i in range(len(path) - order + 1)]
    collapsed = [windows[0]]
    for window in windows[1:]:
        if window != collapsed[-1]:
            collapsed.append(window)
    return collapsed


@dataclass(frozen=True)
class BruteMarkov:
    """Conversion probability, expected value per journey and removal effects per channel."""

    conversion_probability: float
    value_per_journey: float
    removal_conversions: dict[str, float]
    removal_value: dict[str, float]


def _absorb(data: SmallPaths, order: int, removed: str | None) -> tuple[float, float]:
    """P(conversion) and E[value] from the start, by squaring the full matrix to convergence."""
    counts: dict[tuple[object, object], float] = defaultdict(float)
    value_at: dict[object, float] = defaultdict(float)
    conv_at: dict[object, float] = defaultdict(float)
    for path, conv, val, null in zip(
        data.paths, data.conversions, data.value, data.nulls, strict=True
    ):
        weight = conv + null
        previous: object = "(start)"
        for window in _windows(path, order):
            counts[(previous, window)] += weight
            previous = window
        counts[(previous, "(conversion)")] += conv
        counts[(previous, "(null)")] += null
        conv_at[previous] += conv
        if conv > 0:
            value_at[previous] += val
    transient = sorted(
        {a for a, _ in counts} | {b for _, b in counts if isinstance(b, tuple)}, key=str
    )
    # One absorbing conversion state per origin state, to weight each by its mean value.
    states = list(transient) + [("conv", s) for s in transient] + ["(null)"]
    index = {state: i for i, state in enumerate(states)}
    size = len(states)
    matrix = np.zeros((size, size))
    out: dict[object, float] = defaultdict(float)
    for (a, _b), weight in counts.items():
        out[a] += weight
    for (a, b), weight in counts.items():
        if out[a] == 0:
            continue
        p = weight / out[a]
        if b == "(conversion)":
            matrix[index[a], index[("conv", a)]] += p
        elif b == "(null)" or (removed is not None and removed in b):
            matrix[index[a], index["(null)"]] += p
        else:
            matrix[index[a], index[b]] += p
    for state in states:
        row = index[state]
        if matrix[row].sum() == 0:
            matrix[row, row if state not in transient else index["(null)"]] = 1.0
    for _ in range(64):
        matrix = matrix @ matrix
    start = index["(start)"]
    assert matrix[start, : len(transient)].sum() < 1e-12, "chain did not converge"
    probability = sum(matrix[start, index[("conv", s)]] for s in transient)
    value = sum(
        matrix[start, index[("conv", s)]] * (value_at[s] / conv_at[s])
        for s in transient
        if conv_at[s] > 0
    )
    return float(probability), float(value)


def brute_force_markov(data: SmallPaths, order: int) -> BruteMarkov:
    """Removal effects by rebuilding the chain with each channel sent to (null)."""
    probability, value = _absorb(data, order, None)
    removal_conversions = {}
    removal_value = {}
    for channel in data.channels:
        removed_probability, removed_value = _absorb(data, order, channel)
        removal_conversions[channel] = (
            1 - removed_probability / probability if probability > 0 else 0.0
        )
        removal_value[channel] = 1 - removed_value / value if value > 0 else 0.0
    return BruteMarkov(probability, value, removal_conversions, removal_value)


def coalition_value(data: SmallPaths, coalition: frozenset[str], game: str, of: str) -> float:
    """v(S) from the journeys whose channel set lies inside S (see perfmark's shapley module)."""
    gained = 0.0
    journeys = 0.0
    for path, conv, val, null in zip(
        data.paths, data.conversions, data.value, data.nulls, strict=True
    ):
        if set(path) <= coalition:
            gained += conv if of == "conversions" else val
            journeys += conv + null
    if game == "conversions":
        return gained
    return gained / journeys if journeys > 0 else 0.0


def brute_force_shapley(data: SmallPaths, game: str, of: str) -> dict[str, float]:
    """Shapley values by averaging marginal gains over every order of the channels."""
    channels = data.channels
    totals = dict.fromkeys(channels, 0.0)
    orders = list(itertools.permutations(channels))
    for order in orders:
        members: set[str] = set()
        before = 0.0
        for channel in order:
            members.add(channel)
            after = coalition_value(data, frozenset(members), game, of)
            totals[channel] += after - before
            before = after
    return {channel: total / math.factorial(len(channels)) for channel, total in totals.items()}
