"""Response-curve fits: parameter recovery, intervals, fallbacks on thin or flat data, errors."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.errors import ValidationError
from perfmark.optimize.domain.response_curves import (
    MAX_EC50_SPEND_FACTOR,
    CurveModel,
    OutcomeMetric,
    ResponseCurve,
    UncertaintyMethod,
    fit_response_curve,
    hill_value,
)


def _hill(spend: float, ymax: float, ec50: float, shape: float) -> float:
    return float(ymax * spend**shape / (ec50**shape + spend**shape))


@pytest.mark.parametrize(
    ("ymax", "ec50", "shape"), [(100.0, 500.0, 1.0), (50.0, 300.0, 2.0), (200.0, 1000.0, 0.8)]
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hill_fit_recovers_known_parameters_from_noisy_data(
    ymax: float, ec50: float, shape: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    spend = rng.uniform(0.1 * ec50, 5 * ec50, 90)
    truth = np.array([_hill(s, ymax, ec50, shape) for s in spend])
    outcome = truth * (1 + 0.02 * rng.standard_normal(90))

    curve = fit_response_curve(spend.tolist(), outcome.tolist(), rng=rng)

    assert curve.model is CurveModel.HILL
    assert curve.warnings == ()
    fitted_ymax, fitted_ec50, fitted_shape = curve.params
    assert fitted_ymax == pytest.approx(ymax, rel=0.10)
    assert fitted_ec50 == pytest.approx(ec50, rel=0.20)
    assert fitted_shape == pytest.approx(shape, rel=0.10)
    # Inside the history the curve itself is pinned down much tighter than its parameters.
    assert curve.predict(ec50) == pytest.approx(ymax / 2, rel=0.02)


def test_laplace_interval_covers_the_truth_on_count_data() -> None:
    ymax, ec50, shape = 60.0, 400.0, 1.5
    covered = 0
    trials = 0
    for seed in range(20):
        rng = np.random.default_rng(1000 + seed)
        spend = rng.uniform(0.2 * ec50, 3 * ec50, 60)
        conversions = rng.poisson([_hill(s, ymax, ec50, shape) for s in spend])
        curve = fit_response_curve(spend.tolist(), conversions.tolist(), rng=rng, draws=300)
        for probe in (200.0, 400.0, 800.0):
            low, high = curve.interval(probe, level=0.9)
            assert low <= curve.predict(probe) <= high
            covered += low <= _hill(probe, ymax, ec50, shape) <= high
            trials += 1
    # A 90% interval: allow sampling slack, but a broken interval (too narrow) lands far lower.
    assert covered / trials >= 0.75


def test_bootstrap_interval_brackets_the_truth() -> None:
    rng = np.random.default_rng(7)
    spend = rng.uniform(100, 1500, 60)
    outcome = np.array([_hill(s, 80, 500, 1.2) for s in spend]) * (
        1 + 0.05 * rng.standard_normal(60)
    )
    curve = fit_response_curve(
        spend.tolist(), outcome.tolist(), rng=rng, uncertainty="bootstrap", draws=60
    )
    assert curve.model is CurveModel.HILL
    assert len(curve.param_draws) == 60
    low, high = curve.interval(500)
    assert low < _hill(500, 80, 500, 1.2) < high
    assert high - low < 0.1 * _hill(500, 80, 500, 1.2)


def test_same_seed_gives_the_same_draws() -> None:
    spend = [100.0 * i for i in range(1, 21)]
    outcome = [_hill(s, 40, 800, 1.0) * (1 + 0.03 * math.sin(i)) for i, s in enumerate(spend)]
    first = fit_response_curve(spend, outcome, rng=np.random.default_rng(5))
    second = fit_response_curve(spend, outcome, rng=np.random.default_rng(5))
    assert first == second


def test_thin_history_falls_back_to_a_line_through_the_origin() -> None:
    spend = [Decimal("100"), Decimal("200"), Decimal("300")]
    conversions = [2, 5, 5]
    curve = fit_response_curve(spend, conversions, rng=np.random.default_rng(0))
    assert curve.model is CurveModel.LINEAR
    # Least squares through the origin: sum(s*y) / sum(s^2) = 2700 / 140000.
    assert curve.params[0] == pytest.approx(2700 / 140000)
    assert curve.marginal(1234.0) == pytest.approx(2700 / 140000)
    assert curve.predict(500.0) == pytest.approx(500 * 2700 / 140000)
    assert any("thin history" in w for w in curve.warnings)
    low, high = curve.interval(500.0)
    assert low < curve.predict(500.0) < high


def test_one_spend_level_is_not_enough_for_a_curve() -> None:
    spend = [500.0] * 30
    outcome = [10.0, 12.0, 11.0] * 10
    curve = fit_response_curve(spend, outcome, rng=np.random.default_rng(0))
    assert curve.model is CurveModel.LINEAR
    assert curve.params[0] == pytest.approx(11.0 / 500.0)
    assert "1 spend levels" in curve.warnings[0]


def test_flat_outcome_is_modelled_as_constant_with_no_marginal_return() -> None:
    rng = np.random.default_rng(3)
    spend = np.linspace(100, 1000, 30)
    outcome = 20 - 0.001 * spend  # falls slightly as spend rises
    curve = fit_response_curve(spend.tolist(), outcome.tolist(), rng=rng)
    assert curve.model is CurveModel.CONSTANT
    assert curve.params[0] == pytest.approx(float(outcome.mean()))
    assert curve.marginal(500.0) == 0.0
    assert curve.predict(5000.0) == pytest.approx(float(outcome.mean()))
    assert "do not rise with spend" in curve.warnings[0]


def test_no_conversions_and_no_history_predict_zero() -> None:
    zero = fit_response_curve([10.0] * 9, [0] * 9, rng=np.random.default_rng(0))
    assert zero.model is CurveModel.CONSTANT
    assert zero.predict(100.0) == 0.0
    assert zero.interval(100.0) == (0.0, 0.0)
    assert "no conversions in 9 days" in zero.warnings[0]
    empty = fit_response_curve([], [], rng=np.random.default_rng(0))
    assert empty.predict(100.0) == 0.0
    assert empty.n_days == 0
    assert "no history" in empty.warnings[0]


def test_history_without_saturation_holds_ec50_at_its_bound_and_says_so() -> None:
    rng = np.random.default_rng(11)
    spend = rng.uniform(10, 100, 60)
    revenue = 3.0 * spend * (1 + 0.02 * rng.standard_normal(60))  # a straight line
    curve = fit_response_curve(spend.tolist(), revenue.tolist(), rng=rng, metric="revenue")
    assert curve.model is CurveModel.HILL
    assert curve.metric is OutcomeMetric.REVENUE
    assert curve.params[1] == pytest.approx(MAX_EC50_SPEND_FACTOR * float(spend.max()), rel=1e-3)
    assert any("no saturation visible" in w for w in curve.warnings)
    assert curve.predict(50.0) == pytest.approx(150.0, rel=0.03)


@pytest.mark.parametrize(
    ("spend", "outcome", "kwargs", "field"),
    [
        ([1.0, -2.0], [1.0, 1.0], {}, "spend"),
        ([1.0, 2.0], [1.0, float("nan")], {}, "outcome"),
        ([1.0, 2.0], [1.0], {}, "outcome"),
        ([1.0, 2.0], [1.0, 2.0], {"metric": "leads"}, "metric"),
        ([1.0, 2.0], [1.0, 2.0], {"uncertainty": "jackknife"}, "uncertainty"),
        ([1.0, 2.0], [1.0, 2.0], {"draws": 0}, "draws"),
    ],
)
def test_bad_history_is_refused_with_the_field_named(
    spend: list[float], outcome: list[float], kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        fit_response_curve(spend, outcome, rng=np.random.default_rng(0), **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_exact_curve_rejects_bad_parameters() -> None:
    with pytest.raises(ValidationError):
        ResponseCurve.exact(CurveModel.HILL, (10.0, 0.0, 1.0))
    with pytest.raises(ValidationError):
        ResponseCurve.exact(CurveModel.LINEAR, (1.0, 2.0))


@settings(max_examples=60, deadline=None)
@given(
    ymax=st.floats(1, 1000),
    ec50=st.floats(10, 10_000),
    shape=st.floats(0.5, 5),
    spend=st.floats(1, 50_000),
)
def test_hill_value_and_marginal_match_the_formula(
    ymax: float, ec50: float, shape: float, spend: float
) -> None:
    curve = ResponseCurve.exact(CurveModel.HILL, (ymax, ec50, shape))
    assert curve.predict(spend) == pytest.approx(_hill(spend, ymax, ec50, shape), rel=1e-9)
    assert float(hill_value(spend, ymax, ec50, shape)) == pytest.approx(curve.predict(spend))
    # The textbook derivative, written independently of the module's ratio form.
    derivative = (
        ymax * shape * ec50**shape * spend ** (shape - 1) / (ec50**shape + spend**shape) ** 2
    )
    assert curve.marginal(spend) == pytest.approx(derivative, rel=1e-7)


def test_uncertainty_methods_are_named() -> None:
    assert {m.value for m in UncertaintyMethod} == {"laplace", "bootstrap"}
