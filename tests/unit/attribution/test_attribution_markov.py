"""Markov attribution: exact removal effects against hand computation and a brute-force solve."""

from __future__ import annotations

import math

import numpy as np
import pytest
from attribution_oracles import SmallPaths, brute_force_markov, small_paths
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.attribution.domain import (
    PathTable,
    build_markov_chain,
    exact_removal_effects,
    markov_model,
    path_table_from_lists,
)
from perfmark.errors import ValidationError

EXACT = 1e-9


def _table(data: SmallPaths) -> PathTable:
    return path_table_from_lists(data.paths, data.conversions, data.value, data.nulls)


def test_hand_computed_order_one() -> None:
    # start -> a, b (1/2 each); a -> b 1/2, null 1/2; b -> conversion 2/3, null 1/3.
    # P(conv) = 1/2 * 1/2 * 2/3 + 1/2 * 2/3 = 1/2; without a: 1/3; without b: 0.
    table = path_table_from_lists([["a", "b"], ["a"], ["b"]], [1, 0, 1], [10, 0, 4], [0, 1, 1])
    effects = exact_removal_effects(build_markov_chain(table, 1))
    assert effects.conversion_probability == pytest.approx(0.5, abs=EXACT)
    assert effects.conversions == pytest.approx([1 / 3, 1.0], abs=EXACT)
    # The value at b is 7 per conversion: E[value] = 3/4 * 2/3 * 7 = 3.5, without a 7/3.
    assert effects.value_per_journey == pytest.approx(3.5, abs=EXACT)
    assert effects.value == pytest.approx([1 / 3, 1.0], abs=EXACT)
    result = markov_model(table)
    assert result.conversions_by_channel() == pytest.approx({"a": 0.5, "b": 1.5}, abs=EXACT)
    assert result.value_by_channel() == pytest.approx({"a": 3.5, "b": 10.5}, abs=EXACT)
    assert result.credit_for("a").removal_effect_conversions == pytest.approx(1 / 3, abs=EXACT)
    assert result.parameters == (("order", "1"),)


def test_order_two_states_are_windows_with_repeats_collapsed() -> None:
    # ChannelAttribution's convention: "d > a > a > a" at order 2 visits (d a) then (a a) once.
    table = path_table_from_lists(
        [["d", "a", "a", "a"], ["b"], ["a", "b", "a"]], [1, 1, 2], None, [3, 4, 1]
    )
    chain = build_markov_chain(table, 2)
    labels = {chain.state_label(s) for s in range(chain.n_states)}
    assert labels == {"(start)", "d > a", "a > a", "b", "a > b", "b > a"}
    index = {chain.state_label(s): s for s in range(chain.n_states)}
    dense = chain.transitions.toarray()
    assert dense[index["d > a"], index["a > a"]] == pytest.approx(1.0)
    assert dense[index["a > a"]].sum() == 0.0
    assert chain.to_conversion[index["a > a"]] == pytest.approx(0.25)
    assert chain.to_null[index["a > a"]] == pytest.approx(0.75)
    assert dense[index["(start)"], index["b"]] == pytest.approx(5 / 12)


@settings(max_examples=60, deadline=None)
@given(data=small_paths())
def test_exact_removal_effects_equal_brute_force_order_one(data: SmallPaths) -> None:
    _check_against_brute_force(data, 1)


@settings(max_examples=40, deadline=None)
@given(data=small_paths(max_channels=4))
def test_exact_removal_effects_equal_brute_force_order_two(data: SmallPaths) -> None:
    _check_against_brute_force(data, 2)


@settings(max_examples=30, deadline=None)
@given(data=small_paths(max_channels=3))
def test_exact_removal_effects_equal_brute_force_order_three(data: SmallPaths) -> None:
    _check_against_brute_force(data, 3)


def _check_against_brute_force(data: SmallPaths, order: int) -> None:
    table = _table(data)
    effects = exact_removal_effects(build_markov_chain(table, order))
    brute = brute_force_markov(data, order)
    assert effects.conversion_probability == pytest.approx(brute.conversion_probability, abs=EXACT)
    assert effects.value_per_journey == pytest.approx(brute.value_per_journey, rel=EXACT, abs=EXACT)
    for i, channel in enumerate(table.channel_names):
        assert effects.conversions[i] == pytest.approx(
            brute.removal_conversions[channel], abs=EXACT
        ), channel
        assert effects.value[i] == pytest.approx(brute.removal_value[channel], abs=EXACT), channel


@settings(max_examples=60, deadline=None)
@given(data=small_paths(), order=st.integers(1, 3))
def test_markov_credits_add_up_to_totals(data: SmallPaths, order: int) -> None:
    table = _table(data)
    result = markov_model(table, order)
    if table.total_conversions > 0:
        conversions = math.fsum(result.conversions_by_channel().values())
        assert conversions == pytest.approx(table.total_conversions, rel=1e-12)
        assert all(credit.conversions >= 0 for credit in result.credits)
    if table.total_value > 0:
        value = math.fsum(result.value_by_channel().values())
        assert value == pytest.approx(table.total_value, rel=1e-12)


def test_channel_only_on_empty_paths_gets_no_credit() -> None:
    table = path_table_from_lists([["a"], ["z", "a"]], [2, 0], [8, 0], [1, 0])
    result = markov_model(table)
    assert result.credit_for("z").conversions == 0.0
    assert result.credit_for("a").conversions == pytest.approx(2.0)


def test_no_nulls_leaves_a_note_and_still_adds_up() -> None:
    table = path_table_from_lists([["a", "b"], ["b"]], [3, 1])
    result = markov_model(table)
    assert any("no total_null" in note for note in result.notes)
    assert math.fsum(result.conversions_by_channel().values()) == pytest.approx(4.0)
    # Every journey converts: removing a keeps 1 - P(visit a) = 1 - 3/4 of the conversions.
    assert result.credit_for("a").removal_effect_conversions == pytest.approx(0.75, abs=EXACT)
    assert result.credit_for("b").removal_effect_conversions == pytest.approx(1.0, abs=EXACT)


@pytest.mark.parametrize("order", [0, 4, -1, 1.5, True])
def test_order_out_of_range_is_a_validation_error(order: object) -> None:
    table = path_table_from_lists([["a"]], [1])
    with pytest.raises(ValidationError) as caught:
        markov_model(table, order)  # type: ignore[arg-type]
    assert caught.value.field == "order"
    assert repr(order) in caught.value.message or str(order) in caught.value.message


def test_many_channels_at_order_three_still_solve() -> None:
    rng = np.random.default_rng(7)
    names = [f"c{i}" for i in range(40)]
    paths = [list(rng.choice(names, size=int(rng.integers(1, 7)))) for _ in range(400)]
    conversions = rng.integers(0, 3, size=400)
    nulls = rng.integers(0, 5, size=400)
    table = path_table_from_lists(paths, conversions, conversions * 5.0, nulls)
    result = markov_model(table, 3)
    assert math.fsum(result.conversions_by_channel().values()) == pytest.approx(
        table.total_conversions
    )
