"""Thompson rotation weights, the exploration floor, integer weights and the regret simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.errors import ValidationError
from perfmark.optimize.domain.bandit import (
    apply_exploration_floor,
    best_arm_shares,
    decayed_floor,
    integer_rotation_weights,
    sharpen_shares,
    simulate_bandit,
    thompson_weights,
)
from perfmark.optimize.domain.experiments import ArmObservation, Metric, analyze_conversions


@st.composite
def arms_and_floor(draw: st.DrawFn) -> tuple[list[ArmObservation], float]:
    count = draw(st.integers(min_value=2, max_value=6))
    arms = []
    for k in range(count):
        visitors = draw(st.integers(min_value=0, max_value=100_000))
        conversions = draw(st.integers(min_value=0, max_value=visitors))
        arms.append(ArmObservation(f"arm{k}", visitors, conversions))
    floor = draw(st.floats(min_value=0.0, max_value=1.0 / count))
    return arms, floor


@settings(max_examples=60, deadline=None)
@given(arms_and_floor(), st.integers(min_value=0, max_value=2**32 - 1))
def test_thompson_weights_respect_the_floor_and_sum_to_one(
    case: tuple[list[ArmObservation], float], seed: int
) -> None:
    arms, floor = case
    rotation = thompson_weights(arms, np.random.default_rng(seed), min_share=floor, draws=500)
    assert math.fsum(rotation.weights) == pytest.approx(1.0, abs=1e-12)
    assert all(w >= floor - 1e-12 for w in rotation.weights)
    assert math.fsum(rotation.best_shares) == pytest.approx(1.0, abs=1e-12)
    assert sum(rotation.integer_weights) == rotation.integer_total
    assert all(w >= 1 for w in rotation.integer_weights)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=1e6), min_size=1, max_size=12).filter(
        lambda xs: sum(xs) > 0
    ),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_exploration_floor_keeps_order_floor_and_sum(shares: list[float], fraction: float) -> None:
    floor = fraction / len(shares)
    weights = apply_exploration_floor(shares, floor)
    assert math.fsum(weights) == pytest.approx(1.0, abs=1e-12)
    assert all(w >= floor - 1e-12 for w in weights)
    for i in range(len(shares)):
        for j in range(len(shares)):
            if shares[i] > shares[j]:
                assert weights[i] >= weights[j] - 1e-12


def test_exploration_floor_by_hand() -> None:
    # w = 0.1 + (1 - 3 * 0.1) * s
    assert apply_exploration_floor([0.7, 0.3, 0.0], 0.1) == pytest.approx((0.59, 0.31, 0.1))


def test_floor_above_one_over_n_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        apply_exploration_floor([0.5, 0.5, 0.0], 0.4)
    assert caught.value.field == "min_share"
    assert "0.4" in caught.value.message


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=10).filter(
        lambda xs: sum(xs) > 0
    ),
    st.integers(min_value=10, max_value=1000),
)
def test_integer_weights_sum_to_total_and_stay_close(weights: list[float], total: int) -> None:
    integers = integer_rotation_weights(weights, total=total)
    assert sum(integers) == total
    assert all(w >= 1 for w in integers)
    targets = [w * total / math.fsum(weights) for w in weights]
    if all(t >= 1 for t in targets):
        assert all(abs(i - t) < 1 for i, t in zip(integers, targets, strict=True))


def test_integer_weights_by_hand() -> None:
    assert integer_rotation_weights([0.5, 0.3, 0.2]) == (50, 30, 20)
    assert integer_rotation_weights([1 / 3] * 3) == (34, 33, 33)
    assert integer_rotation_weights([0.996, 0.002, 0.002], total=100) == (98, 1, 1)
    assert integer_rotation_weights([1, 1, 2], total=8) == (2, 2, 4)


def test_best_arm_shares_by_hand() -> None:
    samples = np.array([[0.1, 0.3], [0.5, 0.2], [0.0, 0.9], [0.4, 0.41]])
    assert best_arm_shares(samples) == (0.25, 0.75)


def test_thompson_shares_match_quadrature_probability_best() -> None:
    arms = [
        ArmObservation("A", 800, 40),
        ArmObservation("B", 800, 52),
        ArmObservation("C", 700, 40),
    ]
    draws = 200_000
    rotation = thompson_weights(arms, np.random.default_rng(42), min_share=0.0, draws=draws)
    exact = analyze_conversions(arms)
    for share, arm in zip(rotation.best_shares, exact.arms, strict=True):
        se = math.sqrt(arm.probability_best * (1 - arm.probability_best) / draws)
        assert share == pytest.approx(arm.probability_best, abs=4 * se)
    assert rotation.weights == pytest.approx(rotation.best_shares, abs=1e-12)


def test_thompson_on_value_per_visitor() -> None:
    arms = [
        ArmObservation("A", 2000, 100, value_sum=100 * 30.0),
        ArmObservation("B", 2000, 100, value_sum=100 * 60.0),
    ]
    rotation = thompson_weights(
        arms, np.random.default_rng(0), metric=Metric.VALUE_PER_VISITOR, min_share=0.1, draws=4000
    )
    assert rotation.weights[1] == pytest.approx(0.9, abs=1e-3)
    assert rotation.weights[0] == pytest.approx(0.1, abs=1e-3)
    assert rotation.integer_weights == (10, 90)


def test_simulation_is_reproducible_and_regret_is_consistent() -> None:
    rates = [0.02, 0.05, 0.03, 0.04]
    kwargs = {"rounds": 30, "visitors_per_round": 400, "min_share": 0.02, "draws": 2000}
    first = simulate_bandit(rates, np.random.default_rng(8), **kwargs)  # type: ignore[arg-type]
    second = simulate_bandit(rates, np.random.default_rng(8), **kwargs)  # type: ignore[arg-type]
    assert first == second
    for outcome in (first.thompson, first.even_split):
        assert sum(outcome.visitors) == 30 * 400
        expected = sum(v * r for v, r in zip(outcome.visitors, rates, strict=True))
        assert outcome.expected_conversions == pytest.approx(expected)
        assert outcome.regret == pytest.approx(0.05 * 30 * 400 - expected)
    assert first.best_arm_expected_conversions == pytest.approx(0.05 * 12_000)
    # The even split loses (0.05 - 0.035) per visitor on average: 180 conversions.
    assert first.even_split.regret == pytest.approx(180, rel=0.15)
    assert first.thompson.regret < 0.5 * first.even_split.regret
    assert first.thompson.visitors[1] == max(first.thompson.visitors)


def test_simulation_rejects_bad_rates() -> None:
    with pytest.raises(ValidationError) as caught:
        simulate_bandit([0.1], np.random.default_rng(0), rounds=1, visitors_per_round=1)
    assert caught.value.field == "true_rates"


@settings(max_examples=200, deadline=None)
@given(
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(min_value=1.0, max_value=8.0),
)
def test_sharpened_two_arm_shares_match_the_closed_form(p: float, power: float) -> None:
    sharpened = sharpen_shares([p, 1 - p], power)
    expected = p**power / (p**power + (1 - p) ** power)
    assert sharpened[0] == pytest.approx(expected, abs=1e-12)
    assert math.fsum(sharpened) == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=1e6), min_size=1, max_size=12).filter(
        lambda xs: sum(xs) > 0
    ),
    st.floats(min_value=1.0, max_value=8.0),
)
def test_sharpening_keeps_ranking_and_moves_share_to_the_leader(
    shares: list[float], power: float
) -> None:
    total = math.fsum(shares)
    plain = [s / total for s in shares]
    sharpened = sharpen_shares(shares, power)
    assert math.fsum(sharpened) == pytest.approx(1.0, abs=1e-12)
    for i in range(len(shares)):
        for j in range(len(shares)):
            if shares[i] > shares[j]:
                assert sharpened[i] >= sharpened[j]
    leader = max(range(len(shares)), key=shares.__getitem__)
    assert sharpened[leader] >= plain[leader] - 1e-12
    assert sharpen_shares(shares, 1.0) == pytest.approx(plain, abs=1e-12)


def test_sharpening_does_not_underflow_and_refuses_powers_below_one() -> None:
    assert sharpen_shares([1e-300, 2e-300], 8.0) == pytest.approx((1 / 257, 256 / 257))
    for bad in (0.5, float("nan"), True):
        with pytest.raises(ValidationError):
            sharpen_shares([0.5, 0.5], bad)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    st.floats(min_value=0.0, max_value=0.5),
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=1, max_value=10**4),
)
def test_decayed_floor_is_min_share_until_the_evidence_then_shrinks_as_one_over_n(
    min_share: float, conversions: int, evidence: int
) -> None:
    floor = decayed_floor(min_share, conversions, evidence)
    if conversions <= evidence:
        assert floor == min_share
    else:
        assert floor == pytest.approx(min_share * evidence / conversions)
    assert decayed_floor(min_share, conversions + 1, evidence) <= floor
    assert decayed_floor(min_share, conversions, None) == min_share


def test_decayed_floor_refuses_a_bad_evidence_count() -> None:
    for bad in (0, -3, True, 2.5):
        with pytest.raises(ValidationError):
            decayed_floor(0.05, 10, bad)  # type: ignore[arg-type]


def test_thompson_weights_use_the_decayed_floor_and_the_sharpened_shares() -> None:
    arms = [ArmObservation("a", 4000, 160), ArmObservation("b", 4000, 190)]
    rotation = thompson_weights(
        arms, np.random.default_rng(3), min_share=0.05, floor_evidence=50, sharpness=2.0
    )
    assert rotation.min_share == pytest.approx(0.05 * 50 / 350)
    p = rotation.best_shares[1]
    sharpened = p**2 / (p**2 + (1 - p) ** 2)
    floor = rotation.min_share
    assert rotation.weights[1] == pytest.approx(floor + (1 - 2 * floor) * sharpened, abs=1e-12)


def test_sharpened_bandit_with_a_shrinking_floor_loses_less_over_a_short_horizon() -> None:
    # Three pages 0.8x, 1.2x and 1.0x at ~12 conversions a day for 30 days (the simulated
    # market's test): plain probability matching with a fixed 5% floor explores too long.
    rates = [0.032, 0.048, 0.04]
    plain, tuned = [], []
    for seed in range(30):
        kwargs = {"rounds": 30, "visitors_per_round": 300, "min_share": 0.05, "draws": 2000}
        plain.append(
            simulate_bandit(rates, np.random.default_rng(seed), **kwargs).thompson.regret  # type: ignore[arg-type]
        )
        tuned.append(
            simulate_bandit(
                rates,
                np.random.default_rng(seed),
                sharpness=2.0,
                floor_evidence=50,
                **kwargs,  # type: ignore[arg-type]
            ).thompson.regret
        )
    assert np.mean(tuned) < 0.85 * np.mean(plain)
