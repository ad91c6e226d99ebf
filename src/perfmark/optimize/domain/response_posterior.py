"""Conversion response curves from thin daily counts: a Poisson Hill posterior with pooled shape.

With 2 to 8 conversions a campaign a day, least squares on daily totals cannot tell a curve
that saturates from one that does not. Here each campaign's daily conversions are Poisson with
mean f(s) = ymax s^k / (ec50^k + s^k), and the posterior is computed exactly on a grid of
(shape k, half-saturation spend ec50), with ymax integrated out in closed form (its prior is
the scale-free Gamma(1/2, 0), conjugate to the Poisson). Weakly-informative priors keep the
curve sensible where the data is silent: ln(ec50 / typical spend) ~ N(0, 1.5^2), and each
campaign's ln k ~ N(mu, 0.2^2) around a shared mu ~ N(ln 1.1, 0.25^2), so the campaigns
pool what they show about the shape (partial pooling, computed exactly on the grid).

The posterior mean curve (what maximises expected conversions) is summarised by the Hill
curve closest to it over the spend range the allocator may use; the draws carry the
uncertainty.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares
from scipy.special import gammaln, logsumexp

from perfmark.errors import ValidationError
from perfmark.optimize.domain.response_curves import (
    DEFAULT_CURVE_DRAWS,
    MAX_EC50_SPEND_FACTOR,
    MIN_DAYS_FOR_HILL,
    CurveModel,
    OutcomeMetric,
    ResponseCurve,
    daily_totals,
    fit_response_curve,
    hill_value,
)

__all__ = [
    "EC50_PRIOR_SD",
    "SHAPE_POOL_SD",
    "SHAPE_PRIOR_MEAN",
    "SHAPE_PRIOR_SD",
    "CampaignHistory",
    "fit_conversion_curves",
]

# Prior sd of ln(ec50 / median daily spend): 95% of the prior mass within 1/20x to 20x.
EC50_PRIOR_SD = 1.5
# Shared mean of ln k: near 1 (a simple diminishing return), mildly S-shaped allowed.
SHAPE_PRIOR_MEAN = 1.1
SHAPE_PRIOR_SD = 0.25
# How far one campaign's ln k may sit from the shared mean (partial pooling).
SHAPE_POOL_SD = 0.2
# Gamma(shape, rate) prior of ymax: Jeffreys' scale-free prior of a Poisson mean.
_YMAX_PRIOR_SHAPE = 0.5
_SHAPE_GRID = np.exp(np.linspace(math.log(0.5), math.log(4.0), 25))
_EC50_GRID_RELATIVE = np.exp(np.linspace(math.log(0.05), math.log(20.0), 61))
_POOL_MEAN_POINTS = 31
# The summary Hill curve is matched to the posterior mean over 0 .. this x the top spend.
_SUMMARY_SPEND_FACTOR = 3.0
_SUMMARY_POINTS = 48

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class CampaignHistory:
    """One campaign's daily spend and conversions, oldest first (days with traffic)."""

    campaign_id: str
    spend: Sequence[float | int | Decimal]
    conversions: Sequence[float | int | Decimal]
    #: Each day's conversions per click relative to today's (`page_mix`): a day's mean is
    #: exposure x f(spend), so a curve is not credited with what a page change brought.
    #: None: 1 every day.
    exposure: Sequence[float] | None = None


@dataclass(frozen=True)
class _GridPosterior:
    """One campaign's log likelihood on the (shape, ec50) grid, ymax integrated out."""

    history: CampaignHistory
    spend: FloatArray
    conversions: FloatArray
    exposure: FloatArray
    ec50: FloatArray
    loglik: FloatArray  #: (shapes, ec50s), including the ec50 prior


def _saturation(spend: FloatArray, ec50: FloatArray, shape: FloatArray) -> FloatArray:
    """s^k / (ec50^k + s^k) broadcast over trailing spend."""
    ratio = np.power(spend / ec50, shape)
    return np.asarray(ratio / (1.0 + ratio), dtype=np.float64)


def _grid_posterior(
    history: CampaignHistory, spend: FloatArray, y: FloatArray, exposure: FloatArray
) -> _GridPosterior:
    positive = spend[spend > 0]
    reference = float(np.median(positive))
    ec50 = reference * _EC50_GRID_RELATIVE
    ec50 = ec50[ec50 <= MAX_EC50_SPEND_FACTOR * float(positive.max())]
    g = _saturation(spend[None, None, :], ec50[None, :, None], _SHAPE_GRID[:, None, None])
    total = float(y.sum())
    # Poisson likelihood of y ~ ymax e g, with ymax ~ Gamma(a, 0) integrated out (terms
    # constant over the grid dropped): sum y log g + lgamma(a + Y) - (a + Y) log sum e g.
    with np.errstate(divide="ignore"):
        log_g = np.where(y > 0, np.log(np.maximum(g, 1e-300)), 0.0)
    weighted = (g * exposure).sum(axis=2)
    loglik = (y * log_g).sum(axis=2) - (_YMAX_PRIOR_SHAPE + total) * np.log(weighted)
    loglik += float(gammaln(_YMAX_PRIOR_SHAPE + total))
    log_prior = -0.5 * (np.log(ec50 / reference) / EC50_PRIOR_SD) ** 2
    return _GridPosterior(history, spend, y, exposure, ec50, loglik + log_prior[None, :])


def _shape_priors(parts: Sequence[_GridPosterior]) -> list[FloatArray]:
    """Each campaign's prior on the shape grid, given the other campaigns (leave-one-out)."""
    log_shape = np.log(_SHAPE_GRID)
    centre = math.log(SHAPE_PRIOR_MEAN)
    means = np.linspace(centre - 3 * SHAPE_PRIOR_SD, centre + 3 * SHAPE_PRIOR_SD, _POOL_MEAN_POINTS)
    given_mean = -0.5 * ((log_shape[None, :] - means[:, None]) / SHAPE_POOL_SD) ** 2
    given_mean -= logsumexp(given_mean, axis=1, keepdims=True)
    log_mean_prior = -0.5 * ((means - centre) / SHAPE_PRIOR_SD) ** 2
    # Evidence each campaign gives about the shared mean: sum over its own shapes.
    evidence = [
        logsumexp(given_mean + logsumexp(part.loglik, axis=1)[None, :], axis=1) for part in parts
    ]
    everything = np.sum(evidence, axis=0) if evidence else np.zeros_like(means)
    priors = []
    for own in evidence:
        mean_posterior = log_mean_prior + everything - own
        mean_posterior -= logsumexp(mean_posterior)
        priors.append(np.asarray(logsumexp(mean_posterior[:, None] + given_mean, axis=0)))
    return priors


def _draw(
    part: _GridPosterior, shape_prior: FloatArray, count: int, rng: np.random.Generator
) -> FloatArray:
    """(ymax, ec50, shape) draws: grid cells by posterior weight, jittered, then ymax | cell."""
    joint = part.loglik + shape_prior[:, None]
    weights = np.exp(joint - logsumexp(joint)).ravel()
    cells = rng.choice(weights.size, size=count, p=weights / weights.sum())
    shape_index, ec50_index = np.unravel_index(cells, joint.shape)
    # Spread each draw over its grid cell so that draws are not confined to grid points.
    shape_step = math.log(_SHAPE_GRID[1] / _SHAPE_GRID[0])
    ec50_step = math.log(float(part.ec50[1] / part.ec50[0])) if part.ec50.size > 1 else 0.0
    shape = _SHAPE_GRID[shape_index] * np.exp(rng.uniform(-0.5, 0.5, count) * shape_step)
    ec50 = part.ec50[ec50_index] * np.exp(rng.uniform(-0.5, 0.5, count) * ec50_step)
    saturation = _saturation(part.spend[None, :], ec50[:, None], shape[:, None])
    exposure = (saturation * part.exposure[None, :]).sum(axis=1)
    ymax = rng.gamma(_YMAX_PRIOR_SHAPE + float(part.conversions.sum()), 1.0 / exposure)
    return np.column_stack([ymax, ec50, shape])


def _summary_curve(draws: FloatArray, top_spend: float) -> tuple[float, float, float]:
    """The Hill curve closest (relative least squares) to the mean of the draws' curves."""
    grid = np.linspace(0.0, _SUMMARY_SPEND_FACTOR * top_spend, _SUMMARY_POINTS + 1)[1:]
    mean = _saturation(grid[None, :], draws[:, 1:2], draws[:, 2:3]) * draws[:, 0:1]
    target = mean.mean(axis=0)
    scale = max(float(target.max()), 1e-12)
    start = np.log(np.median(draws, axis=0))

    def residuals(theta: FloatArray) -> FloatArray:
        ymax, ec50, shape = np.exp(theta)
        return np.asarray((hill_value(grid, ymax, ec50, shape) - target) / scale)

    result = least_squares(residuals, start, method="trf", x_scale=1.0)
    ymax, ec50, shape = (float(v) for v in np.exp(result.x))
    return ymax, ec50, shape


def _exposure(history: CampaignHistory, days: int) -> FloatArray:
    if history.exposure is None:
        return np.ones(days)
    exposure = np.asarray([float(v) for v in history.exposure], dtype=np.float64)
    if exposure.size != days:
        raise ValidationError(
            f"campaign {history.campaign_id!r}: exposure has {exposure.size} days but spend "
            f"has {days}; give one value per day in both",
            field="exposure",
        )
    if not np.all(np.isfinite(exposure) & (exposure > 0)):
        raise ValidationError(
            f"campaign {history.campaign_id!r}: exposure is {exposure.tolist()}; every day's "
            "must be a finite number > 0",
            field="exposure",
        )
    return exposure


def fit_conversion_curves(
    histories: Sequence[CampaignHistory],
    *,
    rng: np.random.Generator,
    draws: int = DEFAULT_CURVE_DRAWS,
) -> dict[str, ResponseCurve]:
    """Fit every campaign's spend-to-conversions Hill curve together, pooling their shapes.

    A campaign with no spend in its history gets the constant fallback of
    `fit_response_curve` (its warning says so); every other one gets a Hill curve whose
    `param_draws` are posterior draws, even with zero conversions (the curve then stays low,
    with an interval that says how low is known).
    """
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValidationError(f"draws is {draws!r}; it must be an integer >= 1", field="draws")
    curves: dict[str, ResponseCurve] = {}
    parts: list[_GridPosterior] = []
    for history in histories:
        if len(history.spend) != len(history.conversions):
            raise ValidationError(
                f"campaign {history.campaign_id!r}: spend has {len(history.spend)} days but "
                f"conversions has {len(history.conversions)}; give one value per day in both",
                field="conversions",
            )
        spend = daily_totals("spend", history.spend)
        conversions = daily_totals("conversions", history.conversions)
        if spend.size == 0 or float(spend.max()) == 0.0:
            curves[history.campaign_id] = fit_response_curve(
                spend.tolist(),
                conversions.tolist(),
                rng=rng,
                metric=OutcomeMetric.CONVERSIONS,
                campaign_id=history.campaign_id,
                draws=draws,
            )
            continue
        parts.append(_grid_posterior(history, spend, conversions, _exposure(history, spend.size)))
    for part, shape_prior in zip(parts, _shape_priors(parts), strict=True):
        samples = _draw(part, shape_prior, draws, rng)
        top = float(part.spend.max())
        days = int(part.spend.size)
        levels = int(np.unique(part.spend[part.spend > 0]).size)
        warnings: list[str] = []
        if days < MIN_DAYS_FOR_HILL or levels < 3:
            warnings.append(
                f"thin history ({days} days, {levels} spend levels): the curve's bend comes "
                "mostly from the prior and the other campaigns' shapes"
            )
        if float(part.conversions.sum()) == 0.0:
            warnings.append(
                f"no conversions in {days} days: the curve is an upper estimate of a low rate"
            )
        curves[part.history.campaign_id] = ResponseCurve(
            part.history.campaign_id,
            OutcomeMetric.CONVERSIONS,
            CurveModel.HILL,
            _summary_curve(samples, top),
            tuple(tuple(float(v) for v in row) for row in samples),
            days,
            top,
            tuple(warnings),
        )
    return {history.campaign_id: curves[history.campaign_id] for history in histories}
