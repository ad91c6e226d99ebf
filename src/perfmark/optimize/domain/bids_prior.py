"""Empirical-Bayes priors for bids: a Beta prior on segment rates, credibility for order values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import optimize, special

from perfmark.errors import ValidationError

__all__ = [
    "FittedBetaPrior",
    "PriorFit",
    "ValueCredibility",
    "fit_beta_prior",
    "fit_value_credibility",
]

# Lower bound on alpha + beta in the marginal-likelihood search: below it the prior is a
# near-degenerate U shape that no campaign's segments resemble.
_MIN_PRIOR_STRENGTH = 1e-2
_LOGIT_BOUND = 30.0  # rates within about 1e-13 of 0 or 1


class PriorFit(StrEnum):
    """How the Beta prior of segment rates is fitted to the segments."""

    MOMENTS = "moments"  #: method of moments on the between-segment variance
    MARGINAL_LIKELIHOOD = "marginal_likelihood"  #: maximise the beta-binomial likelihood


@dataclass(frozen=True, slots=True)
class FittedBetaPrior:
    """A Beta prior fitted to the rates of many segments (the campaign average and spread)."""

    alpha: float
    beta: float
    method: str  #: "moments", "marginal_likelihood" or "given"
    pooled_rate: float  #: total conversions / total trials
    #: False when the segments vary no more than sampling noise explains: the prior is then
    #: as strong as all the data together (complete pooling)
    heterogeneity_detected: bool

    @property
    def mean(self) -> float:
        """The prior mean: the campaign average rate."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def strength(self) -> float:
        """alpha + beta: how many trials of evidence the prior is worth."""
        return self.alpha + self.beta


def _moments(trials: np.ndarray, successes: np.ndarray) -> tuple[float, float, bool]:
    """Mean and strength from the weighted between-segment variance.

    With rate p and intra-class correlation rho = 1 / (alpha + beta + 1),
    E[sum n_i (r_i - p_hat)^2] = p (1 - p) [(k - 1) + rho (N - sum n_i^2 / N - k + 1)],
    solved for rho with the pooled p_hat.
    """
    total = float(trials.sum())
    pooled = float(successes.sum()) / total
    rates = successes / trials
    spread = float(np.sum(trials * (rates - pooled) ** 2))
    k = trials.size
    denominator = total - float(np.sum(trials**2)) / total - k + 1
    noise = pooled * (1 - pooled)
    if denominator <= 0 or noise <= 0:
        return pooled, total, False
    rho = (spread / noise - (k - 1)) / denominator
    if rho <= 0:
        return pooled, total, False
    strength = min(total, 1 / min(rho, 1.0) - 1) if rho < 1 else _MIN_PRIOR_STRENGTH
    return pooled, max(strength, _MIN_PRIOR_STRENGTH), strength < total


def _marginal_likelihood(
    trials: np.ndarray, successes: np.ndarray, start_mean: float, start_strength: float
) -> tuple[float, float, bool]:
    """Maximise sum_i log B(c_i + a, n_i - c_i + b) - log B(a, b) over (logit mean, log a+b)."""
    total = float(trials.sum())
    failures = trials - successes

    def negative_log_likelihood(point: np.ndarray) -> float:
        mean = special.expit(point[0])
        strength = math.exp(point[1])
        a, b = mean * strength, (1 - mean) * strength
        return -float(np.sum(special.betaln(successes + a, failures + b) - special.betaln(a, b)))

    clipped = min(max(start_mean, 1e-12), 1 - 1e-12)
    start = np.array([special.logit(clipped), math.log(min(max(start_strength, 1.0), total))])
    bounds = [(-_LOGIT_BOUND, _LOGIT_BOUND), (math.log(_MIN_PRIOR_STRENGTH), math.log(total))]
    found = optimize.minimize(negative_log_likelihood, start, method="L-BFGS-B", bounds=bounds)
    mean = float(special.expit(found.x[0]))
    strength = math.exp(float(found.x[1]))
    # At the upper bound the likelihood still rises with pooling: no spread was found.
    return mean, strength, strength < total * (1 - 1e-6)


def fit_beta_prior(
    trials: Sequence[int], successes: Sequence[int], *, method: PriorFit = PriorFit.MOMENTS
) -> FittedBetaPrior:
    """Fit Beta(alpha, beta) to segment rates successes_i / trials_i (segments with trials).

    The prior is capped at the strength of all the data together (alpha + beta <= total
    trials): when the segments differ by no more than noise, each is shrunk to the pooled rate
    but the pooled rate keeps the uncertainty of the campaign's own sample.
    """
    pairs = [(int(n), int(c)) for n, c in zip(trials, successes, strict=True) if n > 0]
    if len(pairs) < 2:
        raise ValidationError(
            f"{len(pairs)} segment(s) have traffic; fitting a prior across segments needs at "
            "least 2 (or pass the campaign prior)",
            field="segments",
        )
    n = np.array([p[0] for p in pairs], dtype=np.float64)
    c = np.array([p[1] for p in pairs], dtype=np.float64)
    pooled = float(c.sum() / n.sum())
    if c.sum() == 0:
        raise ValidationError(
            "no segment has a conversion yet; a prior on the rate needs at least one "
            "(or pass the campaign prior)",
            field="conversions",
        )
    if pooled == 1.0:
        raise ValidationError(
            "every trial converted; the rates carry no information to fit a prior",
            field="conversions",
        )
    mean, strength, spread = _moments(n, c)
    if method is PriorFit.MARGINAL_LIKELIHOOD:
        mean, strength, spread = _marginal_likelihood(n, c, mean, strength)
    return FittedBetaPrior(
        alpha=mean * strength,
        beta=(1 - mean) * strength,
        method=str(method),
        pooled_rate=pooled,
        heterogeneity_detected=spread,
    )


@dataclass(frozen=True, slots=True)
class ValueCredibility:
    """Bühlmann-Straub credibility for the mean order value of segments."""

    pooled_mean: float  #: total value / total conversions
    within_variance: float  #: variance of one order's value inside a segment
    between_variance: float  #: variance of the segments' true mean order values
    #: k = within / between: conversions a segment needs for half weight on its own mean
    prior_conversions: float
    assumed_exponential: bool  #: True when no sums of squares were given (variance = mean^2)

    def credibility(self, conversions: int) -> float:
        """Z = c / (c + k): the weight of the segment's own mean order value."""
        return conversions / (conversions + self.prior_conversions) if conversions else 0.0

    def posterior_mean(self, conversions: int, value: float) -> float:
        """Z * segment mean + (1 - Z) * pooled mean."""
        z = self.credibility(conversions)
        own = value / conversions if conversions else 0.0
        return z * own + (1 - z) * self.pooled_mean

    def posterior_variance(self, conversions: int) -> float:
        """Variance of the segment's mean order value given its orders (normal approximation)."""
        return self.within_variance / (conversions + self.prior_conversions)


def fit_value_credibility(
    conversions: Sequence[int],
    values: Sequence[float],
    value_squares: Sequence[float | None],
) -> ValueCredibility:
    """Fit the credibility of segment mean order values (nonparametric empirical Bayes).

    Without sums of squares for every segment, order values are taken as exponential
    (within-segment variance = pooled mean^2). The between-segment variance is the excess of
    the observed spread of segment means over what the within variance explains; when there
    is none, k is set to the total conversions (complete pooling at the campaign's strength).
    """
    rows = [
        (int(c), float(v), s) for c, v, s in zip(conversions, values, value_squares, strict=True)
    ]
    rows = [row for row in rows if row[0] > 0]
    total_conversions = sum(row[0] for row in rows)
    if total_conversions == 0:
        return ValueCredibility(0.0, 0.0, 0.0, 1.0, True)
    pooled = sum(row[1] for row in rows) / total_conversions
    exponential = any(row[2] is None for row in rows)
    degrees = total_conversions - len(rows)
    if exponential or degrees <= 0:
        within = pooled * pooled
    else:
        within = sum(float(s or 0.0) - v * v / c for c, v, s in rows) / degrees
        within = max(within, 0.0)
    spread = sum(c * (v / c - pooled) ** 2 for c, v, _ in rows)
    denominator = total_conversions - sum(c * c for c, _, _ in rows) / total_conversions
    between = (spread - (len(rows) - 1) * within) / denominator if denominator > 0 else 0.0
    if between <= 0:
        strength = float(total_conversions)
        between = 0.0
    else:
        strength = min(float(total_conversions), within / between)
    return ValueCredibility(
        pooled_mean=pooled,
        within_variance=within,
        between_variance=between,
        prior_conversions=max(strength, 1e-9),
        assumed_exponential=exponential or degrees <= 0,
    )
