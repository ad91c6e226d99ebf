"""Bid recommendations: target CPA and ROAS arithmetic, and empirical-Bayes shrinkage."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from scipy import stats

from perfmark.errors import ValidationError
from perfmark.money import Money
from perfmark.optimize.domain.bids import (
    BidBasis,
    SegmentPerformance,
    TargetCpa,
    TargetRoas,
    recommend_bids,
)
from perfmark.optimize.domain.bids_prior import PriorFit, fit_beta_prior
from perfmark.optimize.domain.experiments import BetaPrior


def rng() -> np.random.Generator:
    return np.random.default_rng(2024)


def test_cpa_bid_is_target_times_posterior_rate() -> None:
    segments = [
        SegmentPerformance("pub-1", clicks=1000, conversions=30),
        SegmentPerformance("pub-2", clicks=50, conversions=0),
    ]
    result = recommend_bids(
        segments, TargetCpa(Money.of("40", "USD")), rng=rng(), prior=BetaPrior(1, 99)
    )
    first, second = result.segments
    assert first.rate == pytest.approx(31 / 1100)
    assert first.bid == Money.of("1.1273", "USD")  # 40 * 31 / 1100 = 1.127272...
    assert second.bid == Money.of("0.2667", "USD")  # 40 * 1 / 150
    posterior = stats.beta(31, 1069)
    assert float(first.bid_low.amount) == pytest.approx(40 * posterior.ppf(0.05), abs=5e-5)
    assert float(first.bid_high.amount) == pytest.approx(40 * posterior.ppf(0.95), abs=5e-5)
    assert first.rate_shrinkage == pytest.approx(100 / 1100)
    assert first.observed_rate == pytest.approx(0.03)
    assert result.prior.method == "given"


def test_cpm_bid_is_per_thousand_impressions() -> None:
    segments = [
        SegmentPerformance("pub-1", clicks=900, conversions=12, impressions=100_000),
        SegmentPerformance("pub-2", clicks=10, conversions=0, impressions=2_000),
    ]
    result = recommend_bids(
        segments,
        TargetCpa(Money.of("25", "EUR")),
        rng=rng(),
        basis=BidBasis.CPM,
        prior=BetaPrior(1, 9999),
    )
    # 1000 impressions * 25 EUR * (1 + 12) / (10000 + 100000)
    assert result.segments[0].bid == Money.of("2.9545", "EUR")
    assert result.segments[0].trials == 100_000


def test_a_downstream_goal_uses_its_own_counts() -> None:
    # The same clicks bid on qualified leads (8 of the 30 leads) at a qualified-lead CPA.
    qualified = [
        SegmentPerformance("pub-1", clicks=1000, conversions=8),
        SegmentPerformance("pub-2", clicks=1000, conversions=2),
    ]
    result = recommend_bids(
        qualified, TargetCpa(Money.of("150", "USD")), rng=rng(), prior=BetaPrior(1, 199)
    )
    assert float(result.segments[0].bid.amount) == pytest.approx(150 * 9 / 1200, abs=5e-5)


def buhlmann_by_hand(orders: dict[str, list[float]]) -> tuple[float, dict[str, float]]:
    """Bühlmann-Straub from raw order values: pooled mean and each segment's credibility Z."""
    counts = {k: len(v) for k, v in orders.items() if v}
    total = sum(counts.values())
    means = {k: float(np.mean(v)) for k, v in orders.items() if v}
    pooled = sum(sum(v) for v in orders.values()) / total
    within = sum(float(np.sum((np.array(v) - np.mean(v)) ** 2)) for v in orders.values() if v) / (
        total - len(counts)
    )
    between = (
        sum(counts[k] * (means[k] - pooled) ** 2 for k in counts) - (len(counts) - 1) * within
    ) / (total - sum(c * c for c in counts.values()) / total)
    k0 = within / between
    return pooled, {k: counts.get(k, 0) / (counts.get(k, 0) + k0) for k in orders}


def test_roas_bid_is_rate_times_shrunk_order_value_over_target() -> None:
    orders = {
        "pub-1": [10.0, 20.0, 30.0],
        "pub-2": [50.0, 70.0],
        "pub-3": [100.0, 80.0, 90.0, 110.0],
    }
    clicks = {"pub-1": 200, "pub-2": 150, "pub-3": 400}
    segments = [
        SegmentPerformance(
            key,
            clicks=clicks[key],
            conversions=len(values),
            value=Decimal(str(sum(values))),
            value_squares=Decimal(str(sum(v * v for v in values))),
        )
        for key, values in orders.items()
    ]
    prior = BetaPrior(2, 98)
    result = recommend_bids(
        segments, TargetRoas(Decimal("2.5"), "USD"), rng=rng(), prior=prior, draws=50_000
    )
    pooled, credibility = buhlmann_by_hand(orders)
    assert result.value_credibility is not None
    assert result.value_credibility.pooled_mean == pytest.approx(pooled)
    for bid in result.segments:
        values = orders[bid.segment]
        value = credibility[bid.segment] * np.mean(values) + (1 - credibility[bid.segment]) * pooled
        rate = (2 + len(values)) / (100 + clicks[bid.segment])
        assert bid.value_shrinkage == pytest.approx(1 - credibility[bid.segment])
        assert float(bid.value_per_conversion or 0) == pytest.approx(value, abs=1e-4)
        assert float(bid.bid.amount) == pytest.approx(rate * value / 2.5, abs=5e-5)
        assert bid.bid_low < bid.bid < bid.bid_high


def test_roas_without_squares_assumes_exponential_values() -> None:
    segments = [
        SegmentPerformance("a", clicks=500, conversions=10, value=Decimal("500")),
        SegmentPerformance("b", clicks=500, conversions=10, value=Decimal("500")),
    ]
    result = recommend_bids(
        segments, TargetRoas(Decimal("1"), "USD"), rng=rng(), prior=BetaPrior(1, 49)
    )
    assert result.value_credibility is not None
    assert result.value_credibility.assumed_exponential is True
    # Identical segments: no spread between them, complete pooling at the mean of 50.
    assert result.segments[0].value_per_conversion == Decimal("50.0000")
    assert float(result.segments[0].bid.amount) == pytest.approx(11 / 550 * 50, abs=5e-5)


def test_empirical_bayes_shrinks_thin_segments_more_than_thick_ones() -> None:
    segments = [
        SegmentPerformance("big-a", clicks=20_000, conversions=400),
        SegmentPerformance("big-b", clicks=20_000, conversions=700),
        SegmentPerformance("big-c", clicks=20_000, conversions=1000),
        SegmentPerformance("thin", clicks=40, conversions=4),
        SegmentPerformance("thick", clicks=4_000, conversions=400),
    ]
    result = recommend_bids(segments, TargetCpa(Money.of("10", "USD")), rng=rng())
    bids = {bid.segment: bid for bid in result.segments}
    prior_mean = result.prior.mean
    assert result.prior.heterogeneity_detected is True
    thin, thick = bids["thin"], bids["thick"]
    assert thin.observed_rate == thick.observed_rate == pytest.approx(0.1)
    assert thin.rate_shrinkage > thick.rate_shrinkage
    # The share of the gap to the campaign average that each segment keeps.
    kept_thin = (thin.rate - prior_mean) / (0.1 - prior_mean)
    kept_thick = (thick.rate - prior_mean) / (0.1 - prior_mean)
    assert kept_thin == pytest.approx(1 - thin.rate_shrinkage)
    assert kept_thin < kept_thick
    assert thin.bid < thick.bid
    assert (thin.rate_high - thin.rate_low) > (thick.rate_high - thick.rate_low)


@pytest.mark.parametrize("method", [PriorFit.MOMENTS, PriorFit.MARGINAL_LIKELIHOOD])
def test_prior_fit_recovers_a_known_beta_population(method: PriorFit) -> None:
    generator = np.random.default_rng(31)
    true_alpha, true_beta = 10.0, 190.0  # mean 0.05, strength 200
    trials = generator.integers(200, 3000, size=1500)
    successes = generator.binomial(trials, generator.beta(true_alpha, true_beta, size=1500))
    fitted = fit_beta_prior(trials.tolist(), successes.tolist(), method=method)
    assert fitted.mean == pytest.approx(0.05, rel=0.03)
    assert fitted.strength == pytest.approx(200, rel=0.2)
    assert fitted.heterogeneity_detected is True


def test_moments_fit_reproduces_the_observed_spread_in_simulation() -> None:
    # Method of moments: under the fitted Beta, the expected weighted spread of the segment
    # rates around their pooled rate equals the observed one. Checked by simulating it.
    trials = np.array([100, 200, 300])
    successes = np.array([5, 30, 15])
    fitted = fit_beta_prior(trials.tolist(), successes.tolist())

    def spread(c: np.ndarray) -> np.ndarray:
        pooled = c.sum(axis=-1, keepdims=True) / trials.sum()
        return np.asarray(np.sum(trials * (c / trials - pooled) ** 2, axis=-1))

    generator = np.random.default_rng(5)
    rates = generator.beta(fitted.alpha, fitted.beta, size=(400_000, 3))
    simulated = spread(generator.binomial(trials, rates).astype(float))
    observed = float(spread(successes.astype(float)))
    assert fitted.mean == pytest.approx(50 / 600)
    assert simulated.mean() == pytest.approx(observed, rel=0.015)


def test_marginal_likelihood_fit_is_the_likelihood_maximum() -> None:
    trials = np.array([120, 300, 45, 800, 60, 220])
    successes = np.array([9, 12, 6, 30, 1, 20])
    fitted = fit_beta_prior(
        trials.tolist(), successes.tolist(), method=PriorFit.MARGINAL_LIKELIHOOD
    )
    means, strengths = np.meshgrid(np.linspace(0.02, 0.12, 81), np.geomspace(5, 1500, 120))
    a, b = (means * strengths)[..., None], ((1 - means) * strengths)[..., None]
    grid = np.asarray(stats.betabinom.logpmf(successes, trials, a, b)).sum(axis=-1)
    at_fit = np.asarray(stats.betabinom.logpmf(successes, trials, fitted.alpha, fitted.beta)).sum()
    assert at_fit >= grid.max() - 1e-6
    # The grid's best point is near the fit (the likelihood is flat, so loosely).
    best = np.unravel_index(np.argmax(grid), grid.shape)
    assert fitted.mean == pytest.approx(means[best], abs=0.01)


def test_homogeneous_segments_pool_completely() -> None:
    fitted = fit_beta_prior([1000, 1000, 1000], [50, 50, 50])
    assert fitted.heterogeneity_detected is False
    assert fitted.mean == pytest.approx(0.05)
    assert fitted.strength == pytest.approx(3000)


def test_bid_validation_names_the_field() -> None:
    target = TargetCpa(Money.of("10", "USD"))
    cases = [
        ([SegmentPerformance("a", 10, 11), SegmentPerformance("b", 10, 1)], {}, "conversions"),
        (
            [SegmentPerformance("a", 10, 1), SegmentPerformance("b", 10, 1)],
            {"basis": BidBasis.CPM},
            "impressions",
        ),
        ([SegmentPerformance("a", 10, 0), SegmentPerformance("b", 10, 0)], {}, "conversions"),
        ([SegmentPerformance("a", 10, 1)], {}, "segments"),
        ([SegmentPerformance("a", 10, 1), SegmentPerformance("a", 5, 1)], {}, "segments"),
    ]
    for segments, kwargs, field in cases:
        with pytest.raises(ValidationError) as caught:
            recommend_bids(segments, target, rng=rng(), **kwargs)  # type: ignore[arg-type]
        assert caught.value.field == field, (segments, caught.value.message)
    with pytest.raises(ValidationError) as caught:
        SegmentPerformance("a", clicks=-1, conversions=0)
    assert caught.value.field == "clicks" and "-1" in caught.value.message
    with pytest.raises(ValidationError) as caught:
        TargetCpa(Money.of("0", "USD"))
    assert caught.value.field == "target_cpa"
    with pytest.raises(ValidationError) as caught:
        TargetRoas(Decimal("-1"), "USD")
    assert caught.value.field == "target_roas"


def test_one_segment_bids_against_a_given_prior() -> None:
    result = recommend_bids(
        [SegmentPerformance("solo", clicks=100, conversions=5)],
        TargetCpa(Money.of("20", "USD")),
        rng=rng(),
        prior=BetaPrior(5, 95),
    )
    assert float(result.segments[0].bid.amount) == pytest.approx(20 * 10 / 200, abs=5e-5)
    assert math.isclose(result.segments[0].rate_shrinkage, 0.5)
