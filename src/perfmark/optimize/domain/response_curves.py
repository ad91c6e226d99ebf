"""Spend-to-outcome response curves per campaign: a Hill fit with uncertainty, and its fallbacks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares

from perfmark.errors import ValidationError

__all__ = [
    "DEFAULT_CURVE_DRAWS",
    "MAX_EC50_SPEND_FACTOR",
    "MAX_HILL_SHAPE",
    "MIN_DAYS_FOR_HILL",
    "MIN_HILL_SHAPE",
    "CurveModel",
    "OutcomeMetric",
    "ResponseCurve",
    "UncertaintyMethod",
    "daily_totals",
    "fit_response_curve",
    "hill_value",
]

# Fewer days than this cannot pin down three Hill parameters; the fit falls back to a line.
MIN_DAYS_FOR_HILL = 7
# Distinct daily spend levels needed before a curvature can be told apart from noise.
MIN_DISTINCT_SPEND_LEVELS = 3
# (max - min) / max of daily spend below this: the history is one spend level, not a curve.
MIN_RELATIVE_SPEND_RANGE = 0.2
# The half-saturation spend may sit at most this far beyond the highest observed spend: it is the
# prior that returns do saturate somewhere near what has been tried, so a history that shows no
# bend yet does not extrapolate linearly forever.
MAX_EC50_SPEND_FACTOR = 10.0
# The curve's shape k: below 0.5 or above 5 the data can no longer tell shapes apart.
MIN_HILL_SHAPE = 0.5
MAX_HILL_SHAPE = 5.0
# Parameter draws kept per curve; they carry the fit's uncertainty to the allocator.
DEFAULT_CURVE_DRAWS = 400
# When a thin revenue history gives no residual spread, this is the relative error assumed.
THIN_REVENUE_RELATIVE_SE = 1.0
# Derivative of a Hill curve with shape < 1 is infinite at zero spend; evaluate just above it.
_SPEND_EPSILON = 1e-9


class CurveModel(StrEnum):
    """Which formula a fitted response curve uses."""

    HILL = "hill"
    LINEAR = "linear"
    CONSTANT = "constant"


class OutcomeMetric(StrEnum):
    """What the curve predicts from spend."""

    CONVERSIONS = "conversions"
    REVENUE = "revenue"


class UncertaintyMethod(StrEnum):
    """How parameter uncertainty of a Hill fit is sampled."""

    LAPLACE = "laplace"
    BOOTSTRAP = "bootstrap"


FloatArray = NDArray[np.float64]


def hill_value(spend: FloatArray | float, ymax: float, ec50: float, shape: float) -> FloatArray:
    """The Hill curve ymax * s^k / (ec50^k + s^k), written to stay finite for any spend >= 0."""
    s = np.maximum(np.asarray(spend, dtype=np.float64), 0.0)
    ratio = np.power(s / ec50, shape)
    return np.asarray(ymax * ratio / (1.0 + ratio), dtype=np.float64)


def _hill_marginal(
    spend: FloatArray, ymax: FloatArray, ec50: FloatArray, shape: FloatArray
) -> FloatArray:
    s = np.maximum(spend, _SPEND_EPSILON)
    ratio = np.power(s / ec50, shape)
    return np.asarray(ymax * shape * ratio / (s * (1.0 + ratio) ** 2), dtype=np.float64)


@dataclass(frozen=True)
class ResponseCurve:
    """A fitted spend-to-outcome curve of one campaign, with parameter draws for its uncertainty.

    `params` is (ymax, ec50, shape) for a Hill curve, (slope,) for a line through the origin and
    (level,) for a constant; `param_draws` holds plausible parameter sets of the same form.
    """

    campaign_id: str
    metric: OutcomeMetric
    model: CurveModel
    params: tuple[float, ...]
    param_draws: tuple[tuple[float, ...], ...]
    n_days: int
    max_observed_spend: float
    warnings: tuple[str, ...] = ()

    @classmethod
    def exact(
        cls,
        model: CurveModel,
        params: Sequence[float],
        *,
        metric: OutcomeMetric = OutcomeMetric.CONVERSIONS,
        campaign_id: str = "",
    ) -> ResponseCurve:
        """A curve known without uncertainty (a simulator's truth, an oracle, a test)."""
        values = tuple(float(p) for p in params)
        expected = 3 if model is CurveModel.HILL else 1
        if len(values) != expected or not all(math.isfinite(v) and v >= 0 for v in values):
            raise ValidationError(
                f"params {values!r} do not fit a {model.value} curve; give {expected} "
                "finite non-negative numbers",
                field="params",
            )
        if model is CurveModel.HILL and (values[1] <= 0 or values[2] <= 0):
            raise ValidationError(
                f"params {values!r}: a Hill curve needs ec50 > 0 and shape > 0", field="params"
            )
        return cls(campaign_id, metric, model, values, (values,), 0, 0.0)

    def _draw_matrix(self) -> FloatArray:
        return np.asarray(self.param_draws, dtype=np.float64).reshape(len(self.param_draws), -1)

    @staticmethod
    def _evaluate(model: CurveModel, params: FloatArray, spend: float) -> FloatArray:
        if model is CurveModel.HILL:
            ymax, ec50, shape = params[:, 0], params[:, 1], params[:, 2]
            s = max(spend, 0.0)
            ratio = np.power(s / ec50, shape)
            return np.asarray(ymax * ratio / (1.0 + ratio), dtype=np.float64)
        if model is CurveModel.LINEAR:
            return np.asarray(params[:, 0] * max(spend, 0.0), dtype=np.float64)
        return np.asarray(params[:, 0], dtype=np.float64)

    def predict(self, spend: float) -> float:
        """Expected outcome (per day) at this daily spend, from the point estimate."""
        point = np.asarray([self.params], dtype=np.float64)
        return float(self._evaluate(self.model, point, spend)[0])

    def marginal(self, spend: float) -> float:
        """Extra outcome per extra unit of spend at this spend (the curve's slope)."""
        if self.model is CurveModel.CONSTANT:
            return 0.0
        if self.model is CurveModel.LINEAR:
            return self.params[0]
        ymax, ec50, shape = (np.asarray([p]) for p in self.params)
        return float(_hill_marginal(np.asarray([spend], dtype=np.float64), ymax, ec50, shape)[0])

    def predict_draws(self, spend: float) -> FloatArray:
        """The outcome at this spend under every parameter draw (one value per draw)."""
        return self._evaluate(self.model, self._draw_matrix(), spend)

    def interval(self, spend: float, level: float = 0.9) -> tuple[float, float]:
        """A central credible interval of the expected outcome at this spend."""
        draws = self.predict_draws(spend)
        tail = (1.0 - level) / 2.0
        low, high = np.quantile(draws, [tail, 1.0 - tail])
        return float(low), float(high)


def daily_totals(field: str, values: Sequence[float | int | Decimal]) -> FloatArray:
    """Daily totals as floats; a ValidationError names the first that is not finite and >= 0."""
    try:
        array = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(
            f"{field} holds a value that is not a number; give daily totals as numbers",
            field=field,
        ) from None
    bad = np.flatnonzero(~np.isfinite(array) | (array < 0))
    if bad.size:
        raise ValidationError(
            f"{field}[{int(bad[0])}] is {values[int(bad[0])]!r}; daily totals must be finite "
            "and >= 0",
            field=field,
        )
    return array


def _lognormal_draws(
    center: float, relative_se: float, count: int, rng: np.random.Generator
) -> tuple[tuple[float, ...], ...]:
    # A log-normal keeps every draw positive and matches the delta-method spread near the center.
    sigma = math.sqrt(math.log1p(relative_se**2))
    samples = center * np.exp(rng.normal(-0.5 * sigma**2, sigma, size=count))
    return tuple((float(v),) for v in samples)


def _linear_fit(
    spend: FloatArray, outcome: FloatArray, metric: OutcomeMetric
) -> tuple[float, float]:
    """Least-squares slope through the origin and its relative standard error."""
    n = spend.size
    slope = float(spend @ outcome / (spend @ spend))
    if n > 1:
        residual_var = float(np.sum((outcome - slope * spend) ** 2)) / (n - 1)
        relative_se = math.sqrt(residual_var / float(spend @ spend)) / slope if slope > 0 else 1.0
    else:
        relative_se = 0.0
    total = float(outcome.sum())
    if metric is OutcomeMetric.CONVERSIONS:
        # Counts are at least Poisson-noisy, however well a few days happen to line up.
        relative_se = max(relative_se, 1.0 / math.sqrt(total))
    elif n < 2:
        relative_se = max(relative_se, THIN_REVENUE_RELATIVE_SE)
    return slope, relative_se


def _constant_fit(outcome: FloatArray, metric: OutcomeMetric) -> tuple[float, float]:
    n = outcome.size
    level = float(outcome.mean())
    if level <= 0:
        return 0.0, 0.0
    relative_se = float(outcome.std(ddof=1)) / math.sqrt(n) / level if n > 1 else 0.0
    if metric is OutcomeMetric.CONVERSIONS:
        relative_se = max(relative_se, 1.0 / math.sqrt(float(outcome.sum())))
    elif n < 2:
        relative_se = max(relative_se, THIN_REVENUE_RELATIVE_SE)
    return level, relative_se


def _hill_at_reference(
    theta: FloatArray, spend: FloatArray, reference: float
) -> tuple[FloatArray, FloatArray, float]:
    """Prediction, a = (s/ref)^k and b = (ec50/ref)^k for theta = ln(f(ref), ec50, k).

    Parametrising by the outcome at a reference spend inside the history (rather than by ymax)
    removes the long ymax-ec50 ridge of the Hill surface when the data has not saturated yet:
    f(ref) is then well determined and only ec50 is vague, which keeps Laplace draws sensible.
    """
    level, ec50, shape = np.exp(theta)
    a = np.power(np.maximum(spend, 0.0) / reference, shape)
    b = float((ec50 / reference) ** shape)
    return level * a * (1.0 + b) / (a + b), a, b


def _reference_to_hill(theta: FloatArray, reference: float) -> tuple[float, float, float]:
    level, ec50, shape = (float(v) for v in np.exp(theta))
    return level * (1.0 + (ec50 / reference) ** shape), ec50, shape


def _hill_residuals(
    theta: FloatArray, spend: FloatArray, outcome: FloatArray, reference: float
) -> FloatArray:
    return _hill_at_reference(theta, spend, reference)[0] - outcome


def _hill_jacobian(
    theta: FloatArray, spend: FloatArray, outcome: FloatArray, reference: float
) -> FloatArray:
    # d pred / d(ln level, ln ec50, ln k); ln pred = ln level + ln a + ln(1+b) - ln(a+b).
    pred, a, b = _hill_at_reference(theta, spend, reference)
    positive = spend > 0
    log_a = np.zeros_like(spend)
    log_a[positive] = np.log(a[positive])
    log_b = math.log(b)
    shape = float(np.exp(theta[2]))
    d_log_b = b / (1.0 + b) - b / (a + b)
    d_ec50 = pred * shape * d_log_b
    d_shape = pred * (log_a * b / (a + b) + log_b * d_log_b)
    return np.column_stack([pred, d_ec50, d_shape])


@dataclass(frozen=True)
class _HillFit:
    theta: FloatArray
    covariance: FloatArray
    sse: float


def _fit_hill(
    spend: FloatArray,
    outcome: FloatArray,
    bounds: tuple[FloatArray, FloatArray],
    reference: float,
) -> _HillFit | None:
    """Multi-start bounded least squares in log-parameter space; None when nothing converges."""
    lower, upper = bounds
    best: tuple[float, FloatArray, FloatArray] | None = None
    near = np.abs(spend - reference) <= 0.25 * reference
    level_guess = float(np.mean(outcome[near])) if near.any() else float(np.mean(outcome))
    # Several starts because the Hill surface has flat ridges where one start can stall.
    for ec50_guess in (reference, float(spend.max())):
        for shape_guess in (1.0, 2.0):
            start = np.log([max(level_guess, 1e-9), max(ec50_guess, 1e-9), shape_guess])
            start = np.clip(start, lower + 1e-9, upper - 1e-9)
            try:
                result = least_squares(
                    _hill_residuals,
                    start,
                    jac=_hill_jacobian,
                    bounds=(lower, upper),
                    args=(spend, outcome, reference),
                    method="trf",
                )
            except (ValueError, np.linalg.LinAlgError):
                continue
            if not result.success or not np.all(np.isfinite(result.x)):
                continue
            sse = float(np.sum(result.fun**2))
            if best is None or sse < best[0]:
                best = (sse, np.asarray(result.x, dtype=np.float64), np.asarray(result.jac))
    if best is None:
        return None
    sse, theta, jac = best
    dof = max(spend.size - 3, 1)
    covariance = np.asarray(np.linalg.pinv(jac.T @ jac) * (sse / dof), dtype=np.float64)
    if not np.all(np.isfinite(covariance)):
        return None
    return _HillFit(theta, covariance, sse)


def _hill_draws(
    fit: _HillFit,
    spend: FloatArray,
    outcome: FloatArray,
    bounds: tuple[FloatArray, FloatArray],
    reference: float,
    method: UncertaintyMethod,
    count: int,
    rng: np.random.Generator,
) -> tuple[tuple[float, ...], ...]:
    lower, upper = bounds
    if method is UncertaintyMethod.LAPLACE:
        # Gaussian around the optimum in log space (so every draw stays positive), with the
        # curvature-based covariance sigma^2 (J^T J)^-1.
        thetas = rng.multivariate_normal(fit.theta, fit.covariance, size=count, method="svd")
    else:
        rows: list[FloatArray] = []
        n = spend.size
        for _ in range(count):
            pick = rng.integers(0, n, size=n)
            try:
                result = least_squares(
                    _hill_residuals,
                    fit.theta,
                    jac=_hill_jacobian,
                    bounds=(lower, upper),
                    args=(spend[pick], outcome[pick], reference),
                    method="trf",
                )
            except (ValueError, np.linalg.LinAlgError):
                continue
            if result.success:
                rows.append(np.asarray(result.x, dtype=np.float64))
        thetas = np.asarray(rows if rows else [fit.theta], dtype=np.float64)
    thetas = np.clip(thetas, lower, upper)
    return tuple(_reference_to_hill(row, reference) for row in thetas)


def fit_response_curve(
    spend: Sequence[float | int | Decimal],
    outcome: Sequence[float | int | Decimal],
    *,
    rng: np.random.Generator,
    metric: OutcomeMetric | str = OutcomeMetric.CONVERSIONS,
    campaign_id: str = "",
    draws: int = DEFAULT_CURVE_DRAWS,
    uncertainty: UncertaintyMethod | str = UncertaintyMethod.LAPLACE,
) -> ResponseCurve:
    """Fit outcome = Hill(spend) from daily history, falling back to a line or a constant.

    Each fallback is named in `warnings`. Uncertainty comes from parameter draws: a Laplace
    (Gaussian) approximation around the least-squares optimum, or a bootstrap over days.
    """
    try:
        metric = OutcomeMetric(metric)
    except ValueError:
        allowed = ", ".join(m.value for m in OutcomeMetric)
        raise ValidationError(
            f"metric {metric!r} is unknown; use one of {allowed}", field="metric"
        ) from None
    try:
        method = UncertaintyMethod(uncertainty)
    except ValueError:
        allowed = ", ".join(m.value for m in UncertaintyMethod)
        raise ValidationError(
            f"uncertainty {uncertainty!r} is unknown; use one of {allowed}", field="uncertainty"
        ) from None
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValidationError(f"draws is {draws!r}; it must be an integer >= 1", field="draws")
    if len(spend) != len(outcome):
        raise ValidationError(
            f"spend has {len(spend)} days but outcome has {len(outcome)}; give one value per day "
            "in both",
            field="outcome",
        )
    s = daily_totals("spend", spend)
    y = daily_totals("outcome", outcome)
    n = int(s.size)
    top_spend = float(s.max()) if n else 0.0

    def constant(level: float, relative_se: float, warning: str) -> ResponseCurve:
        samples = _lognormal_draws(level, relative_se, draws, rng) if level > 0 else ((0.0,),)
        return ResponseCurve(
            campaign_id, metric, CurveModel.CONSTANT, (level,), samples, n, top_spend, (warning,)
        )

    def linear(warning: str) -> ResponseCurve:
        slope, relative_se = _linear_fit(s, y, metric)
        samples = _lognormal_draws(slope, relative_se, draws, rng)
        return ResponseCurve(
            campaign_id, metric, CurveModel.LINEAR, (slope,), samples, n, top_spend, (warning,)
        )

    if n == 0:
        return constant(0.0, 0.0, "no history: predicting zero outcome at any spend")
    if float(y.sum()) == 0.0:
        return constant(0.0, 0.0, f"no {metric.value} in {n} days: predicting zero at any spend")
    if top_spend == 0.0:
        level, relative_se = _constant_fit(y, metric)
        return constant(level, relative_se, "no spend in history: outcome modelled as constant")
    distinct = np.unique(s[s > 0]).size
    spread = (top_spend - float(s.min())) / top_spend
    if (
        n < MIN_DAYS_FOR_HILL
        or distinct < MIN_DISTINCT_SPEND_LEVELS
        or spread < MIN_RELATIVE_SPEND_RANGE
    ):
        return linear(
            f"thin history ({n} days, {distinct} spend levels, spend range {spread:.0%} of the "
            "maximum): fitted a line through the origin, no saturation"
        )
    if np.std(y) == 0.0 or float(np.corrcoef(s, y)[0, 1]) <= 0.0:
        level, relative_se = _constant_fit(y, metric)
        return constant(
            level,
            relative_se,
            f"{metric.value} do not rise with spend over {n} days: modelled as constant, so "
            "extra spend is predicted to add nothing",
        )
    positive = s[s > 0]
    top = float(y.max())
    reference = float(np.median(positive))
    lower = np.log([0.01 * top, 0.01 * float(positive.min()), MIN_HILL_SHAPE])
    upper = np.log([10.0 * top, MAX_EC50_SPEND_FACTOR * top_spend, MAX_HILL_SHAPE])
    fit = _fit_hill(s, y, (lower, upper), reference)
    if fit is None:
        return linear("the Hill fit did not converge: fitted a line through the origin")
    warnings: list[str] = []
    if fit.theta[1] >= upper[1] - 1e-6:
        warnings.append(
            "no saturation visible in history: the half-saturation spend is held at "
            f"{MAX_EC50_SPEND_FACTOR:g}x the highest observed spend, so predictions beyond the "
            "history are uncertain"
        )
    samples = _hill_draws(fit, s, y, (lower, upper), reference, method, draws, rng)
    return ResponseCurve(
        campaign_id,
        metric,
        CurveModel.HILL,
        _reference_to_hill(fit.theta, reference),
        samples,
        n,
        top_spend,
        tuple(warnings),
    )
