"""A/B/n experiments on conversion rate: Beta-Binomial posteriors, probability to be best, loss."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray
from scipy import integrate, special

from perfmark.errors import ValidationError

__all__ = [
    "DEFAULT_CREDIBLE_LEVEL",
    "ArmObservation",
    "ArmResult",
    "BetaPrior",
    "ExperimentAnalysis",
    "Metric",
    "analyze_conversions",
    "check_arms",
    "check_credible_level",
    "sample_conversion_rates",
]

DEFAULT_CREDIBLE_LEVEL = 0.95
MIN_ARMS = 2
# Posterior mass left outside the integration range of each arm; it bounds the truncation
# error of every quadrature below (added to the error that the quadrature itself reports).
_TAIL_MASS = 1e-14
_QUAD_ABS_TOLERANCE = 1e-13
_QUAD_REL_TOLERANCE = 1e-10
_QUAD_MAX_SUBINTERVALS = 400
_MARK_QUANTILES = (1e-9, 1e-4, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1 - 1e-4, 1 - 1e-9)
# Break points closer than this to an end add subintervals that cannot change the result.
_MIN_BREAK = 1e-12


class Metric(StrEnum):
    """What an experiment compares between arms."""

    CONVERSION_RATE = "conversion_rate"
    VALUE_PER_VISITOR = "value_per_visitor"


@dataclass(frozen=True, slots=True)
class BetaPrior:
    """A Beta(alpha, beta) prior on a rate; Beta(1, 1) is uniform, Beta(0.5, 0.5) is Jeffreys."""

    alpha: float = 1.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValidationError(
                    f"prior.{name} is {value!r}; a Beta prior needs a finite number above 0 "
                    "(1 and 1 give the uniform prior)",
                    field=f"prior.{name}",
                )
            object.__setattr__(self, name, float(value))

    @property
    def mean(self) -> float:
        """The prior mean rate, alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def strength(self) -> float:
        """alpha + beta: how many observations the prior is worth."""
        return self.alpha + self.beta


def _count(field: str, arm: str, value: object) -> int:
    """A non-negative integer count, or a ValidationError naming the field and the value."""
    if isinstance(value, bool):
        raise ValidationError(
            f"arm {arm!r}: {field} is {value!r}; give a whole number", field=field
        )
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValidationError(
            f"arm {arm!r}: {field} is {value!r}; give a whole number of at least 0", field=field
        ) from None
    if number < 0:
        raise ValidationError(
            f"arm {arm!r}: {field} is {number}; counts cannot be negative", field=field
        )
    return int(number)


def _finite(field: str, arm: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(
            f"arm {arm!r}: {field} is {value!r}; give a finite number", field=field
        )
    return float(value)


@dataclass(frozen=True, slots=True)
class ArmObservation:
    """What one arm (landing page, creative, offer) has seen so far.

    `conversions` counts converting visitors (at most one per visitor). `value_sum` is the
    total value of those conversions, in the currency's units; visitors who did not convert
    are worth 0, so it is both the sum over visitors and over converters (a zero-inflated
    summary). `value_sum_squares` is the sum of each converter's value squared, when known.
    The conversion may be any goal: a raw lead, a qualified lead, a first purchase.
    """

    name: str
    visitors: int
    conversions: int
    value_sum: float | None = None
    value_sum_squares: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValidationError(
                f"arm name is {self.name!r}; give each arm a non-blank name", field="name"
            )
        visitors = _count("visitors", self.name, self.visitors)
        conversions = _count("conversions", self.name, self.conversions)
        if conversions > visitors:
            raise ValidationError(
                f"arm {self.name!r}: conversions is {conversions} but visitors is {visitors}; "
                "count converting visitors, at most one per visitor",
                field="conversions",
            )
        object.__setattr__(self, "visitors", visitors)
        object.__setattr__(self, "conversions", conversions)
        self._check_value()

    def _check_value(self) -> None:
        if self.value_sum is None:
            if self.value_sum_squares is not None:
                raise ValidationError(
                    f"arm {self.name!r}: value_sum_squares is given without value_sum; "
                    "send both or neither",
                    field="value_sum",
                )
            return
        total = _finite("value_sum", self.name, self.value_sum)
        object.__setattr__(self, "value_sum", total)
        if self.conversions == 0 and total != 0:
            raise ValidationError(
                f"arm {self.name!r}: value_sum is {total} with 0 conversions; "
                "value comes only from converting visitors",
                field="value_sum",
            )
        if self.value_sum_squares is None:
            return
        squares = _finite("value_sum_squares", self.name, self.value_sum_squares)
        object.__setattr__(self, "value_sum_squares", squares)
        # Cauchy-Schwarz: n * sum(x^2) >= (sum x)^2; the slack absorbs float rounding.
        least = total * total / self.conversions if self.conversions else 0.0
        if squares < 0 or squares < least * (1 - 1e-9) - 1e-9:
            raise ValidationError(
                f"arm {self.name!r}: value_sum_squares is {squares} but must be at least "
                f"value_sum^2 / conversions = {least:.6g}; send the sum of each value squared",
                field="value_sum_squares",
            )

    @property
    def has_value(self) -> bool:
        """Whether this arm carries value data."""
        return self.value_sum is not None


def check_arms(arms: Sequence[ArmObservation]) -> tuple[ArmObservation, ...]:
    """At least two arms with distinct names, or a ValidationError on field `arms`."""
    arms = tuple(arms)
    if len(arms) < MIN_ARMS:
        raise ValidationError(
            f"an experiment has {len(arms)} arm(s); it needs at least {MIN_ARMS} to compare "
            "(add a control or a variant)",
            field="arms",
        )
    for arm in arms:
        if not isinstance(arm, ArmObservation):
            raise ValidationError(
                f"arms holds {arm!r}; each arm is an ArmObservation", field="arms"
            )
    names = [arm.name for arm in arms]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValidationError(
            f"arm names {duplicates} appear more than once; give each arm its own name",
            field="arms",
        )
    return arms


def check_credible_level(level: float) -> float:
    """A credible level strictly between 0 and 1."""
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise ValidationError(
            f"credible_level is {level!r}; give a probability between 0 and 1, such as 0.95",
            field="credible_level",
        )
    return float(level)


@dataclass(frozen=True, slots=True)
class ArmResult:
    """The posterior summary of one arm for one metric."""

    name: str
    visitors: int
    conversions: int
    mean: float  #: posterior mean of the metric (conversion rate, or value per visitor)
    interval_low: float  #: lower end of the equal-tailed credible interval
    interval_high: float  #: upper end of the equal-tailed credible interval
    probability_best: float  #: posterior probability that this arm has the highest metric
    expected_loss: float  #: E[max over arms - this arm], in the metric's units, if chosen now


@dataclass(frozen=True, slots=True)
class ExperimentAnalysis:
    """Posterior summaries of every arm for one metric, and the arm to choose now."""

    metric: Metric
    arms: tuple[ArmResult, ...]
    credible_level: float
    leader: str  #: the arm with the smallest expected loss (the Bayes choice)
    #: estimated bound on the absolute error of every probability_best (quadrature's own
    #: estimate and the sum's departure from 1, or 3 Monte-Carlo standard errors)
    probability_error: float
    #: estimated bound on the absolute error of every expected_loss
    loss_error: float
    method: str  #: "quadrature" or "monte_carlo:<draws>"

    def arm(self, name: str) -> ArmResult:
        """The result of the arm called `name`."""
        for result in self.arms:
            if result.name == name:
                return result
        raise KeyError(name)


def _posterior_parameters(
    arms: Sequence[ArmObservation], prior: BetaPrior
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    alphas = np.array([prior.alpha + arm.conversions for arm in arms], dtype=np.float64)
    betas = np.array([prior.beta + arm.visitors - arm.conversions for arm in arms], np.float64)
    return alphas, betas


def _quad(
    func: Callable[[float], float], low: float, high: float, points: list[float]
) -> tuple[float, float]:
    """Adaptive quadrature on [low, high] with break points where the integrand changes fast."""
    if high <= low:
        return 0.0, 0.0
    inner = sorted({p for p in points if low < p < high})
    # full_output turns quad's convergence warnings into its returned error estimate, which
    # is what callers report; a warning would only repeat it on stderr.
    found = integrate.quad(
        func,
        low,
        high,
        points=inner or None,
        epsabs=_QUAD_ABS_TOLERANCE,
        epsrel=_QUAD_REL_TOLERANCE,
        limit=_QUAD_MAX_SUBINTERVALS,
        full_output=1,
    )
    return float(found[0]), float(found[1])


class _BetaFamily:
    """Vectorised CDFs of independent Beta posteriors, for the quadratures."""

    def __init__(self, alphas: NDArray[np.float64], betas: NDArray[np.float64]) -> None:
        self.alphas = alphas
        self.betas = betas
        self.low = special.betaincinv(alphas, betas, _TAIL_MASS)
        self.high = special.betaincinv(alphas, betas, 1 - _TAIL_MASS)
        # Quantiles from far tail to far tail: every stretch where some CDF rises starts a
        # subinterval, so quad cannot step over a narrow posterior it never sampled.
        self.marks = sorted(
            {
                float(x)
                for q in _MARK_QUANTILES
                for x in special.betaincinv(alphas, betas, q)
                if 0 < x < 1
            }
        )

    def log_cdf_others(self, x: float, skip: int) -> float:
        """log of the product of every other arm's CDF at x."""
        cdfs = special.betainc(self.alphas, self.betas, x)
        cdfs[skip] = 1.0
        with np.errstate(divide="ignore"):
            return float(np.sum(np.log(cdfs)))

    def log_cdf_others_below_one(self, y: float, skip: int) -> float:
        """log of the product of every other arm's CDF at 1 - y, accurate for tiny y."""
        upper = special.betainc(self.betas, self.alphas, y)
        upper[skip] = 0.0
        with np.errstate(divide="ignore"):
            return float(np.sum(np.log1p(-upper)))

    def cdf(self, x: float, index: int) -> float:
        return float(special.betainc(self.alphas[index], self.betas[index], x))


def _probability_best(family: _BetaFamily, index: int) -> tuple[float, float]:
    """P(arm k is best) = integral of f_k(x) prod_{j != k} F_j(x) dx.

    When f_k is bounded (alpha, beta >= 1) the integral runs over x, across arm k's posterior
    bulk (outside it f_k holds 2 x the tail mass). Otherwise f_k has a pole at 0 or 1, and
    the substitution x = Q_k(u) (arm k's quantile) gives integral_0^1 prod F_j(Q_k(u)) du,
    a bounded integrand.
    """
    a, b = float(family.alphas[index]), float(family.betas[index])
    if a >= 1 and b >= 1:
        log_norm = float(special.betaln(a, b))

        def density_integrand(x: float) -> float:
            # xlogy/xlog1py: 0 * log 0 = 0 where a or b is exactly 1 and x reaches an end.
            log_pdf = float(special.xlogy(a - 1, x) + special.xlog1py(b - 1, -x)) - log_norm
            return math.exp(log_pdf + family.log_cdf_others(x, index))

        low, high = float(family.low[index]), float(family.high[index])
        value, error = _quad(density_integrand, low, high, family.marks)
        return value, error + 2 * _TAIL_MASS

    def quantile_integrand(u: float) -> float:
        x = float(special.betaincinv(a, b, u))
        if x <= 0.5:
            # betaincinv gives up within ~1e-270 of 0; the quantile is 0 there.
            return math.exp(family.log_cdf_others(0.0 if math.isnan(x) else x, index))
        # Above 1/2, x = 1 - y is computed through y, Beta(b, a)'s quantile at 1 - u:
        # x itself rounds to 1.0 once 1 - x drops under 1e-16.
        y = float(special.betaincinv(b, a, 1 - u))
        return math.exp(family.log_cdf_others_below_one(0.0 if math.isnan(y) else y, index))

    breaks = [family.cdf(mark, index) for mark in family.marks]
    breaks = [u for u in breaks if _MIN_BREAK <= u <= 1 - _MIN_BREAK]
    return _quad(quantile_integrand, 0.0, 1.0, breaks)


def _expected_loss(family: _BetaFamily, index: int) -> tuple[float, float]:
    """E[max_j p_j - p_k] = integral of F_k(x) * (1 - prod_{j != k} F_j(x)) dx over [0, 1]."""

    def integrand(x: float) -> float:
        return family.cdf(x, index) * -math.expm1(family.log_cdf_others(x, index))

    others = [j for j in range(len(family.alphas)) if j != index]
    low = float(family.low[index])
    high = float(max(family.high[j] for j in others))
    value, error = _quad(integrand, low, high, family.marks)
    # Below `low` F_k < tail mass, above `high` 1 - prod F_j < (n - 1) * tail mass.
    return value, error + len(family.alphas) * _TAIL_MASS


def analyze_conversions(
    arms: Sequence[ArmObservation],
    *,
    prior: BetaPrior | None = None,
    credible_level: float = DEFAULT_CREDIBLE_LEVEL,
) -> ExperimentAnalysis:
    """Beta-Binomial posterior of each arm's conversion rate, with P(best) and expected loss.

    P(best) and expected loss are one-dimensional integrals of the Beta densities and CDFs,
    computed by adaptive quadrature for any number of arms; `probability_error` and
    `loss_error` bound their absolute error.
    """
    arms = check_arms(arms)
    prior = prior if prior is not None else BetaPrior()
    level = check_credible_level(credible_level)
    alphas, betas = _posterior_parameters(arms, prior)
    family = _BetaFamily(alphas, betas)
    tail = (1 - level) / 2
    lows = special.betaincinv(alphas, betas, tail)
    highs = special.betaincinv(alphas, betas, 1 - tail)
    best = [_probability_best(family, k) for k in range(len(arms))]
    losses = [_expected_loss(family, k) for k in range(len(arms))]
    results = tuple(
        ArmResult(
            name=arm.name,
            visitors=arm.visitors,
            conversions=arm.conversions,
            mean=float(alphas[k] / (alphas[k] + betas[k])),
            interval_low=float(lows[k]),
            interval_high=float(highs[k]),
            probability_best=min(1.0, max(0.0, best[k][0])),
            expected_loss=max(0.0, losses[k][0]),
        )
        for k, arm in enumerate(arms)
    )
    leader = min(results, key=lambda r: (r.expected_loss, -r.mean)).name
    return ExperimentAnalysis(
        metric=Metric.CONVERSION_RATE,
        arms=results,
        credible_level=level,
        leader=leader,
        # Quadrature estimates its own error; near-degenerate priors (a parameter far below 1
        # on an arm with little data) can beat that estimate in double precision, and the
        # probabilities' departure from summing to 1 shows it, so the larger one is reported.
        probability_error=max(
            max(error for _, error in best), abs(math.fsum(p for p, _ in best) - 1)
        ),
        loss_error=max(error for _, error in losses),
        method="quadrature",
    )


def sample_conversion_rates(
    arms: Sequence[ArmObservation],
    rng: np.random.Generator,
    *,
    draws: int,
    prior: BetaPrior | None = None,
) -> NDArray[np.float64]:
    """Posterior draws of each arm's conversion rate, shaped (draws, arms)."""
    arms = check_arms(arms)
    alphas, betas = _posterior_parameters(arms, prior if prior is not None else BetaPrior())
    return rng.beta(alphas, betas, size=(draws, len(arms)))
