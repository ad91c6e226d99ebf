"""The pooled Poisson Hill posterior: recovery on known curves, zero counts, pooling, errors."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.errors import ValidationError
from perfmark.optimize.domain.allocation import AllocationCandidate, allocate_budget
from perfmark.optimize.domain.response_curves import CurveModel, hill_value
from perfmark.optimize.domain.response_posterior import CampaignHistory, fit_conversion_curves


def _counts(
    rng: np.random.Generator, spend: np.ndarray, ymax: float, ec50: float, shape: float
) -> list[int]:
    return [int(v) for v in rng.poisson(hill_value(spend, ymax, ec50, shape))]


@pytest.mark.parametrize(
    ("ymax", "ec50", "shape"), [(40.0, 100.0, 1.0), (30.0, 150.0, 1.5), (60.0, 80.0, 0.8)]
)
@pytest.mark.parametrize("seed", [1, 2])
def test_recovers_a_known_curve_from_poisson_counts(
    ymax: float, ec50: float, shape: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    spend = rng.uniform(0.2 * ec50, 4 * ec50, 365)
    history = CampaignHistory("c", spend.tolist(), _counts(rng, spend, ymax, ec50, shape))

    curve = fit_conversion_curves([history], rng=rng)["c"]

    assert curve.model is CurveModel.HILL
    assert curve.n_days == 365
    for probe in (0.5 * ec50, ec50, 3 * ec50):
        truth = float(hill_value(probe, ymax, ec50, shape))
        assert curve.predict(probe) == pytest.approx(truth, rel=0.08)
        low, high = curve.interval(probe, level=0.99)
        assert low <= truth <= high
    fitted_ymax, fitted_ec50, fitted_shape = curve.params
    assert fitted_ymax == pytest.approx(ymax, rel=0.3)
    # ec50 and ymax trade off along a ridge when the shape is below 1; a factor of 2 is the
    # honest precision of ec50 from a year of counts, while the curve itself is within 8%.
    assert 0.5 * ec50 <= fitted_ec50 <= 2 * ec50
    assert fitted_shape == pytest.approx(shape, rel=0.3)


def test_the_interval_covers_the_truth_on_thin_counts() -> None:
    # The bench's situation: 2 to 8 conversions a day over a few weeks.
    covered = trials = 0
    for seed in range(12):
        rng = np.random.default_rng(500 + seed)
        spend = rng.uniform(10, 120, 21)
        counts = _counts(rng, spend, 12.0, 60.0, 1.0)
        curve = fit_conversion_curves([CampaignHistory("c", spend.tolist(), counts)], rng=rng)["c"]
        for probe in (30.0, 60.0, 100.0):
            low, high = curve.interval(probe, level=0.9)
            covered += low <= float(hill_value(probe, 12.0, 60.0, 1.0)) <= high
            trials += 1
    assert covered / trials >= 0.75


def test_zero_conversions_give_a_low_finite_curve_and_an_allocation() -> None:
    rng = np.random.default_rng(3)
    quiet = CampaignHistory("quiet", [10.0, 20.0, 30.0, 40.0, 50.0] * 3, [0] * 15)
    busy_spend = np.linspace(10, 50, 15)
    busy = CampaignHistory("busy", busy_spend.tolist(), _counts(rng, busy_spend, 20.0, 40.0, 1.0))

    curves = fit_conversion_curves([quiet, busy], rng=rng)

    zero = curves["quiet"]
    assert zero.model is CurveModel.HILL
    assert all(np.isfinite(zero.params)) and all(v > 0 for v in zero.params)
    # 15 days without one conversion: well under one a day where it has been tried.
    assert 0.0 <= zero.predict(50.0) < 0.3
    low, high = zero.interval(50.0)
    assert 0.0 <= low <= high < 1.0
    assert any("no conversions in 15 days" in w for w in zero.warnings)
    split = allocate_budget(
        [AllocationCandidate(cid, curve) for cid, curve in curves.items()], Decimal(60)
    )
    spends = {row.campaign_id: row.spend for row in split.campaigns}
    assert spends["busy"] > spends["quiet"]
    assert sum(spends.values()) == Decimal("60.00")


def test_a_thin_campaign_borrows_its_shape_from_the_others() -> None:
    rng = np.random.default_rng(11)
    thin = CampaignHistory("thin", [40.0, 40.0, 60.0], [2, 1, 3])
    alone = fit_conversion_curves([thin], rng=np.random.default_rng(1))["thin"]
    rich = []
    for name in ("a", "b", "c"):
        spend = rng.uniform(20, 400, 90)
        rich.append(CampaignHistory(name, spend.tolist(), _counts(rng, spend, 40, 120, 2.5)))

    pooled = fit_conversion_curves([thin, *rich], rng=np.random.default_rng(1))

    assert pooled["a"].params[2] == pytest.approx(2.5, rel=0.3)
    # Alone the thin campaign keeps the prior's shape near 1; beside S-shaped campaigns its
    # posterior moves toward theirs.
    assert alone.params[2] < 1.5
    assert pooled["thin"].params[2] > alone.params[2] + 0.3
    assert any("thin history" in w for w in pooled["thin"].warnings)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.01, 1e4), st.integers(0, 3)), min_size=1, max_size=10),
    st.integers(0, 2**32 - 1),
)
def test_any_small_history_gives_a_finite_non_negative_curve(
    days: list[tuple[float, int]], seed: int
) -> None:
    spend = [s for s, _ in days]
    counts = [y for _, y in days]
    curve = fit_conversion_curves(
        [CampaignHistory("c", spend, counts)], rng=np.random.default_rng(seed), draws=50
    )["c"]
    assert all(np.isfinite(curve.params)) and all(v > 0 for v in curve.params)
    for probe in (0.0, min(spend), max(spend), 3 * max(spend)):
        assert 0.0 <= curve.predict(probe) < np.inf
        assert curve.marginal(probe) >= 0.0
        low, high = curve.interval(probe)
        assert 0.0 <= low <= high < np.inf


def test_same_seed_same_curves_and_order_of_input_kept() -> None:
    spend = [10.0 * i for i in range(1, 15)]
    counts = [1, 2, 2, 3, 4, 3, 5, 4, 6, 5, 5, 6, 7, 6]
    histories = [CampaignHistory("z", spend, counts), CampaignHistory("a", spend[::-1], counts)]
    first = fit_conversion_curves(histories, rng=np.random.default_rng(4), draws=50)
    second = fit_conversion_curves(histories, rng=np.random.default_rng(4), draws=50)
    assert first == second
    assert list(first) == ["z", "a"]
    assert len(first["z"].param_draws) == 50


def test_no_spend_falls_back_to_the_constant_model() -> None:
    curves = fit_conversion_curves(
        [CampaignHistory("idle", [0.0, 0.0], [1, 0]), CampaignHistory("none", [], [])],
        rng=np.random.default_rng(0),
    )
    assert curves["idle"].model is CurveModel.CONSTANT
    assert curves["idle"].marginal(100.0) == 0.0
    assert curves["none"].predict(100.0) == 0.0


@pytest.mark.parametrize(
    ("history", "draws", "field"),
    [
        (CampaignHistory("c", [1.0, 2.0], [1]), 10, "conversions"),
        (CampaignHistory("c", [1.0, -2.0], [1, 1]), 10, "spend"),
        (CampaignHistory("c", [1.0, 2.0], [1, float("nan")]), 10, "conversions"),
        (CampaignHistory("c", [1.0, 2.0], [1, 1]), 0, "draws"),
    ],
)
def test_bad_input_names_the_field(history: CampaignHistory, draws: int, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        fit_conversion_curves([history], rng=np.random.default_rng(0), draws=draws)
    assert caught.value.field == field
