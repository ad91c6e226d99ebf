"""Shapley attribution: the axioms, brute-force enumeration, sampling bounds and the fallback."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
from attribution_oracles import SmallPaths, brute_force_shapley, small_paths
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.attribution.domain import (
    SHAPLEY_EXACT_HARD_LIMIT_CHANNELS,
    path_table_from_lists,
    shapley_estimate,
    shapley_model,
    shapley_values_exact,
)
from perfmark.errors import ValidationError

EXACT = 1e-9


@st.composite
def games(draw: st.DrawFn) -> np.ndarray:
    players = draw(st.integers(1, 7))
    values = draw(
        st.lists(
            st.floats(-100, 100, allow_nan=False), min_size=1 << players, max_size=1 << players
        )
    )
    return np.array(values, dtype=np.float64)


def _swap_bits(mask: int, i: int, j: int) -> int:
    bit_i = (mask >> i) & 1
    bit_j = (mask >> j) & 1
    if bit_i != bit_j:
        mask ^= (1 << i) | (1 << j)
    return mask


@settings(max_examples=80, deadline=None)
@given(game=games())
def test_efficiency(game: np.ndarray) -> None:
    values = shapley_values_exact(game)
    assert math.fsum(values) == pytest.approx(game[-1] - game[0], abs=1e-9)


@settings(max_examples=80, deadline=None)
@given(game=games(), data=st.data())
def test_symmetry(game: np.ndarray, data: st.DataObject) -> None:
    players = game.size.bit_length() - 1
    if players < 2:
        return
    i, j = data.draw(st.lists(st.integers(0, players - 1), min_size=2, max_size=2, unique=True))
    symmetric = np.array([game[m] + game[_swap_bits(m, i, j)] for m in range(game.size)])
    values = shapley_values_exact(symmetric)
    assert values[i] == pytest.approx(values[j], abs=1e-9)


@settings(max_examples=80, deadline=None)
@given(game=games(), data=st.data())
def test_null_player(game: np.ndarray, data: st.DataObject) -> None:
    players = game.size.bit_length() - 1
    null = data.draw(st.integers(0, players - 1))
    ignoring_null = np.array([game[m & ~(1 << null)] for m in range(game.size)])
    values = shapley_values_exact(ignoring_null)
    assert values[null] == pytest.approx(0.0, abs=1e-9)


def test_hand_computed_three_player_game() -> None:
    # v(a)=1, v(b)=2, v(ab)=4, c is worth 3 alone and adds 3 everywhere.
    game = np.array([0, 1, 2, 4, 3, 4, 5, 7], dtype=np.float64)
    assert shapley_values_exact(game) == pytest.approx([1.5, 2.5, 3.0])


@settings(max_examples=40, deadline=None)
@given(data=small_paths(max_channels=5), game=st.sampled_from(["rate", "conversions"]))
def test_exact_equals_enumeration_of_every_order(data: SmallPaths, game: str) -> None:
    table = path_table_from_lists(data.paths, data.conversions, data.value, data.nulls)
    estimate = shapley_estimate(table, game=game)
    brute_conversions = brute_force_shapley(data, game, "conversions")
    brute_value = brute_force_shapley(data, game, "value")
    for i, channel in enumerate(table.channel_names):
        assert estimate.conversions[i] == pytest.approx(brute_conversions[channel], abs=EXACT)
        assert estimate.value[i] == pytest.approx(brute_value[channel], abs=EXACT)


@settings(max_examples=60, deadline=None)
@given(
    data=small_paths(max_channels=6),
    game=st.sampled_from(["rate", "conversions"]),
    exact=st.booleans(),
)
def test_credits_add_up_to_totals(data: SmallPaths, game: str, exact: bool) -> None:
    table = path_table_from_lists(data.paths, data.conversions, data.value, data.nulls)
    result = shapley_model(
        table, game=game, max_exact_channels=20 if exact else 0, n_permutations=50
    )
    if table.total_conversions > 0:
        assert math.fsum(result.conversions_by_channel().values()) == pytest.approx(
            table.total_conversions, rel=1e-9
        )
    if table.total_value > 0:
        assert math.fsum(result.value_by_channel().values()) == pytest.approx(
            table.total_value, rel=1e-9
        )


def test_conversions_game_is_linear_over_distinct_channels() -> None:
    # v(S) = conversions of journeys inside S is a sum of unanimity games: each journey's
    # conversions split equally over its distinct channels.
    paths = [["a", "b", "a"], ["b"], ["c", "a", "d"], ["d"]]
    conversions = [6, 1, 3, 2]
    table = path_table_from_lists(paths, conversions)
    result = shapley_model(table, game="conversions")
    assert result.conversions_by_channel() == pytest.approx({"a": 4, "b": 4, "c": 1, "d": 3})


def test_channels_that_always_appear_together_share_equally() -> None:
    table = path_table_from_lists(
        [["x", "y"], ["y", "z", "x"], ["z"], ["w"]], [3, 2, 1, 0], [30, 10, 4, 0], [1, 5, 2, 7]
    )
    result = shapley_model(table)
    assert result.credit_for("x").conversions == pytest.approx(result.credit_for("y").conversions)
    assert result.credit_for("x").value == pytest.approx(result.credit_for("y").value)


def test_channel_only_on_journeys_without_conversions_is_a_null_player() -> None:
    table = path_table_from_lists(
        [["a", "z"], ["a"], ["b", "z"], ["b"]], [0, 4, 0, 1], None, [3, 1, 2, 2]
    )
    result = shapley_model(table, game="conversions")
    assert result.credit_for("z").conversions == pytest.approx(0.0, abs=EXACT)


def test_sampling_lands_within_its_error_bound_of_the_exact_values() -> None:
    rng = np.random.default_rng(3)
    names = [f"ch{i}" for i in range(8)]
    paths = [list(rng.choice(names, size=int(rng.integers(1, 5)))) for _ in range(300)]
    table = path_table_from_lists(
        paths,
        rng.integers(0, 4, 300),
        rng.integers(0, 200, 300).astype(float),
        rng.integers(0, 9, 300),
    )
    exact = shapley_model(table)
    sampled = shapley_model(table, max_exact_channels=4, n_permutations=3000, seed=11)
    assert exact.parameters[1] == ("exact", "True")
    assert sampled.parameters[1] == ("exact", "False")
    for credit in sampled.credits:
        truth = exact.credit_for(credit.channel)
        assert credit.error_conversions is not None and credit.error_conversions > 0
        assert credit.error_value is not None and credit.error_value > 0
        # Four standard errors: the seed is fixed, so this is deterministic, not flaky.
        assert abs(credit.conversions - truth.conversions) <= 2 * credit.error_conversions
        assert abs(credit.value - truth.value) <= 2 * credit.error_value
    assert any("exceed the exact limit of 4" in note for note in sampled.notes)


def test_too_many_channels_fall_back_to_sampling_without_running_out_of_memory() -> None:
    # 90 channels: 2^90 coalitions could never be enumerated; channel sets span two 63-bit words.
    rng = np.random.default_rng(5)
    names = [f"c{i:02d}" for i in range(90)]
    paths = [list(rng.choice(names, size=int(rng.integers(1, 6)))) for _ in range(2000)]
    conversions = rng.integers(0, 3, 2000)
    table = path_table_from_lists(paths, conversions, conversions * 10.0, rng.integers(0, 5, 2000))
    result = shapley_model(table, game="conversions", n_permutations=400, seed=1)
    assert any("90 channels exceed the exact limit of 20" in note for note in result.notes)
    assert math.fsum(result.conversions_by_channel().values()) == pytest.approx(
        table.total_conversions
    )
    # The conversions game has a closed form; the sample must land within its error bound.
    closed_form: dict[str, float] = defaultdict(float)
    for path, conv in zip(paths, conversions, strict=True):
        for channel in set(path):
            closed_form[str(channel)] += conv / len(set(path))
    worst = max(
        abs(credit.conversions - closed_form[credit.channel]) / credit.error_conversions
        for credit in result.credits
        if credit.error_conversions
    )
    assert worst <= 2.5


def test_no_nulls_uses_the_conversions_game_and_says_so() -> None:
    table = path_table_from_lists([["a", "b"], ["b"]], [2, 1])
    result = shapley_model(table)
    assert ("game", "conversions") in result.parameters
    assert any("conversions game" in note for note in result.notes)
    assert result.conversions_by_channel() == pytest.approx({"a": 1.0, "b": 2.0})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_exact_channels": SHAPLEY_EXACT_HARD_LIMIT_CHANNELS + 1}, "max_exact_channels"),
        ({"n_permutations": 0}, "n_permutations"),
        ({"game": "revenue"}, "game"),
    ],
)
def test_bad_options_are_validation_errors(kwargs: dict[str, object], field: str) -> None:
    table = path_table_from_lists([["a"]], [1])
    with pytest.raises(ValidationError) as caught:
        shapley_model(table, **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert repr(next(iter(kwargs.values()))) in caught.value.message
