"""Rule-based models: hand-computed credits, sums to totals, and clear errors on bad options."""

from __future__ import annotations

import math

import numpy as np
import pytest
from attribution_oracles import SmallPaths, small_paths
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.attribution.domain import (
    HEURISTIC_MODELS,
    ModelOptions,
    PathTable,
    first_touch,
    last_non_direct,
    last_touch,
    linear,
    path_table_from_lists,
    position_based,
    run_model,
    time_decay,
    touch_weights,
)
from perfmark.errors import ValidationError


@pytest.fixture
def table() -> PathTable:
    return path_table_from_lists(
        [["a", "b", "c"], ["b"], ["c", "a"], ["direct", "a", "direct"]],
        conversions=[2, 1, 0, 1],
        value=[20, 5, 0, 10],
        nulls=[0, 0, 3, 0],
    )


def test_first_touch(table: PathTable) -> None:
    result = first_touch(table)
    assert result.conversions_by_channel() == {"a": 2, "b": 1, "c": 0, "direct": 1}
    assert result.value_by_channel() == {"a": 20, "b": 5, "c": 0, "direct": 10}
    assert result.channels == ("a", "b", "c", "direct")


def test_last_touch(table: PathTable) -> None:
    assert last_touch(table).conversions_by_channel() == {"a": 0, "b": 1, "c": 2, "direct": 1}


def test_last_non_direct_skips_direct_and_keeps_all_direct_paths(table: PathTable) -> None:
    result = last_non_direct(table)
    assert result.conversions_by_channel() == {"a": 1, "b": 1, "c": 2, "direct": 0}
    only_direct = path_table_from_lists([["Direct", "Direct"], ["x", "DIRECT"]], [3, 1])
    assert last_non_direct(only_direct).conversions_by_channel() == {
        "Direct": 3,
        "x": 1,
        "DIRECT": 0,
    }
    custom = last_non_direct(table, direct_channels=("a",))
    assert custom.conversions_by_channel() == {"a": 0, "b": 1, "c": 2, "direct": 1}


def test_last_non_direct_notes_when_no_direct_channel_exists() -> None:
    result = last_non_direct(path_table_from_lists([["x", "y"]], [1]))
    assert result.notes == ("no channel matched the direct channel names",)


def test_linear_gives_each_touch_an_equal_share(table: PathTable) -> None:
    credits = linear(table).conversions_by_channel()
    assert credits == pytest.approx({"a": 1.0, "b": 5 / 3, "c": 2 / 3, "direct": 2 / 3})


def test_position_based_default_shares(table: PathTable) -> None:
    credits = position_based(table).conversions_by_channel()
    assert credits == pytest.approx({"a": 1.0, "b": 1.4, "c": 0.8, "direct": 0.8})


@pytest.mark.parametrize(
    ("shares", "expected_first"),
    [((0.4, 0.2, 0.4), 0.5), ((0.3, 0.4, 0.3), 0.5), ((0.2, 0.2, 0.6), 0.25), ((0, 1, 0), 0.5)],
)
def test_position_based_two_touches_split_the_middle_share(
    shares: tuple[float, float, float], expected_first: float
) -> None:
    two = path_table_from_lists([["first", "last"]], [1])
    credits = position_based(two, *shares).conversions_by_channel()
    assert credits == pytest.approx({"first": expected_first, "last": 1 - expected_first})


def test_position_based_middle_touches_share_equally() -> None:
    five = path_table_from_lists([["a", "m", "n", "m", "z"]], [10], [100])
    result = position_based(five, 0.3, 0.3, 0.4)
    assert result.conversions_by_channel() == pytest.approx({"a": 3, "m": 2, "n": 1, "z": 4})
    assert result.value_by_channel() == pytest.approx({"a": 30, "m": 20, "n": 10, "z": 40})


def test_time_decay_halves_per_half_life() -> None:
    touches = path_table_from_lists(
        [["a", "b"], ["a"]], [1, 1], [50, 2], lag_days=[[14.0, 0.0], [100.0]]
    )
    result = time_decay(touches, half_life_days=7)
    # 2^(-14/7) = 1/4 against 1: a gets 1/5 of the first journey and all of the second.
    assert result.conversions_by_channel() == pytest.approx({"a": 1.2, "b": 0.8})
    assert result.value_by_channel() == pytest.approx({"a": 12.0, "b": 40.0})
    assert result.parameters == (("half_life_days", "7"),)


def test_time_decay_long_lags_do_not_underflow() -> None:
    touches = path_table_from_lists([["a", "b"]], [3], lag_days=[[5001.0, 5000.0]])
    credits = time_decay(touches, half_life_days=1).conversions_by_channel()
    assert credits == pytest.approx({"a": 1.0, "b": 2.0})


@pytest.mark.parametrize("half_life", [0, -1.0, float("nan"), float("inf")])
def test_time_decay_rejects_a_zero_or_bad_half_life(half_life: float) -> None:
    touches = path_table_from_lists([["a"]], [1], lag_days=[[1.0]])
    with pytest.raises(ValidationError) as caught:
        time_decay(touches, half_life_days=half_life)
    assert caught.value.field == "half_life_days"
    assert repr(half_life) in caught.value.message


def test_time_decay_needs_lags(table: PathTable) -> None:
    with pytest.raises(ValidationError) as caught:
        time_decay(table)
    assert caught.value.field == "lag_days"


@pytest.mark.parametrize(
    ("shares", "field"),
    [((0.5, 0.2, 0.4), "position_shares"), ((-0.1, 0.7, 0.4), "first_share")],
)
def test_position_shares_must_be_valid(
    table: PathTable, shares: tuple[float, float, float], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        position_based(table, *shares)
    assert caught.value.field == field


@st.composite
def paths_with_lags(draw: st.DrawFn) -> tuple[SmallPaths, list[list[float]]]:
    data = draw(small_paths(max_channels=6, max_rows=10, max_length=8))
    lags = [
        draw(st.lists(st.floats(0, 400), min_size=len(path), max_size=len(path)))
        for path in data.paths
    ]
    return data, lags


@settings(max_examples=80, deadline=None)
@given(
    case=paths_with_lags(),
    half_life=st.floats(0.01, 60),
    shares=st.tuples(st.integers(0, 10), st.integers(0, 10), st.integers(0, 10)).filter(
        lambda s: sum(s) > 0
    ),
)
def test_every_heuristic_adds_up_to_total_conversions_and_value(
    case: tuple[SmallPaths, list[list[float]]],
    half_life: float,
    shares: tuple[int, int, int],
) -> None:
    data, lags = case
    table = path_table_from_lists(data.paths, data.conversions, data.value, data.nulls, lags)
    total = sum(shares)
    options = ModelOptions(
        half_life_days=half_life,
        position_shares=(shares[0] / total, shares[1] / total, 1 - (shares[0] + shares[1]) / total),
        direct_channels=("a",),
    )
    for model in HEURISTIC_MODELS:
        result = run_model(table, model, options)
        assert math.fsum(result.conversions_by_channel().values()) == pytest.approx(
            sum(data.conversions), rel=1e-12, abs=1e-12
        ), model
        assert math.fsum(result.value_by_channel().values()) == pytest.approx(
            sum(data.value), rel=1e-12, abs=1e-12
        ), model
        assert all(c.conversions >= 0 for c in result.credits), model
        weights = touch_weights(
            table,
            model,
            direct_channels=options.direct_channels,
            half_life_days=half_life,
            position_shares=options.position_shares,
        )
        per_row = np.add.reduceat(weights, table.offsets[:-1])
        assert per_row == pytest.approx(np.ones(table.n_paths)), model


def test_unknown_model_name_is_a_validation_error(table: PathTable) -> None:
    with pytest.raises(ValidationError) as caught:
        run_model(table, "u_shaped")
    assert caught.value.field == "model"
    assert "'u_shaped'" in caught.value.message


@settings(max_examples=150, deadline=None)
@given(data=small_paths(max_channels=6, max_rows=10, max_length=8))
def test_linear_is_float_for_float_the_per_touch_sum(data: SmallPaths) -> None:
    """Linear credit is computed per row, not per touch; it must still add the same products
    (1/length x row amount) in the same touch order as a plain loop over touches."""
    table = path_table_from_lists(data.paths, data.conversions, data.value, data.nulls)
    weights = touch_weights(table, "linear")
    conversions = [0.0] * table.n_channels
    value = [0.0] * table.n_channels
    for row in range(table.n_paths):
        for touch in range(int(table.offsets[row]), int(table.offsets[row + 1])):
            channel = int(table.channels[touch])
            conversions[channel] += float(weights[touch]) * float(table.conversions[row])
            value[channel] += float(weights[touch]) * float(table.value[row])
    result = linear(table)
    assert [credit.conversions for credit in result.credits] == conversions
    assert [credit.value for credit in result.credits] == value
