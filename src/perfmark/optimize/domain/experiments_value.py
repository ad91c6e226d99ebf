"""A/B/n experiments on value per visitor: conversion Beta times a posterior on mean order value."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from perfmark.errors import ValidationError
from perfmark.optimize.domain.experiments import (
    DEFAULT_CREDIBLE_LEVEL,
    ArmObservation,
    ArmResult,
    BetaPrior,
    ExperimentAnalysis,
    Metric,
    check_arms,
    check_credible_level,
    sample_conversion_rates,
)

__all__ = [
    "DEFAULT_VALUE_DRAWS",
    "GammaRatePrior",
    "NormalInverseGammaPrior",
    "OrderValuePosterior",
    "ValueModel",
    "analyze_value",
    "order_value_posteriors",
    "sample_values_per_visitor",
]

DEFAULT_VALUE_DRAWS = 100_000
MIN_VALUE_DRAWS = 1_000
# The default priors are centred on the pooled mean order value of all arms (so they favour
# no arm) and are worth this many converters: enough to keep an arm with 0 or 1 converters
# finite, little enough to be outweighed by a handful of real orders.
DEFAULT_PRIOR_CONVERTERS = 1.0
_DEFAULT_GAMMA_SHAPE = 2.0  # shape 2: the prior mean of 1/rate exists and equals the pooled mean
_DEFAULT_NIG_SHAPE = 2.0  # shape 2: the prior mean of the variance exists and equals `scale`


class ValueModel(StrEnum):
    """How the value of one converter is modelled."""

    AUTO = "auto"  #: normal when every arm has value_sum_squares, else exponential
    NORMAL = "normal"  #: normal values, normal-inverse-gamma posterior on (mean, variance)
    EXPONENTIAL = "exponential"  #: exponential values, Gamma posterior on the rate


@dataclass(frozen=True, slots=True)
class NormalInverseGammaPrior:
    """Normal-inverse-gamma prior on a converter's mean value and its variance."""

    mean: float  #: prior mean of the mean order value
    strength: float  #: kappa0: how many converters the prior mean is worth
    shape: float  #: a0 of the inverse-gamma on the variance
    scale: float  #: b0 of the inverse-gamma on the variance

    def __post_init__(self) -> None:
        if not math.isfinite(self.mean):
            raise ValidationError(
                f"value_prior.mean is {self.mean!r}; give a finite number", field="value_prior.mean"
            )
        for name in ("strength", "shape", "scale"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValidationError(
                    f"value_prior.{name} is {value!r}; give a finite number above 0",
                    field=f"value_prior.{name}",
                )


@dataclass(frozen=True, slots=True)
class GammaRatePrior:
    """Gamma(shape, rate) prior on the rate of exponential order values (mean value = 1/rate)."""

    shape: float  #: above 1, so the mean order value has a finite mean
    rate: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.shape) or self.shape <= 1:
            raise ValidationError(
                f"value_prior.shape is {self.shape!r}; give a number above 1",
                field="value_prior.shape",
            )
        if not math.isfinite(self.rate) or self.rate <= 0:
            raise ValidationError(
                f"value_prior.rate is {self.rate!r}; give a number above 0",
                field="value_prior.rate",
            )


@dataclass(frozen=True, slots=True)
class OrderValuePosterior:
    """The posterior of one arm's mean order value (the mean value of a converter)."""

    model: ValueModel
    mean: float  #: posterior mean of the mean order value
    #: normal: Student-t (df, location, scale); exponential: Gamma on the rate (shape, rate, 0)
    parameters: tuple[float, float, float]

    def sample(self, rng: np.random.Generator, draws: int) -> NDArray[np.float64]:
        """Draws of the mean order value."""
        first, second, third = self.parameters
        if self.model is ValueModel.NORMAL:
            return second + third * rng.standard_t(first, size=draws)
        return 1.0 / rng.gamma(first, 1.0 / second, size=draws)


def _resolve_model(arms: Sequence[ArmObservation], model: ValueModel) -> ValueModel:
    missing = [arm.name for arm in arms if not arm.has_value]
    if missing:
        raise ValidationError(
            f"arms {missing} have no value_sum; value per visitor needs each arm's value",
            field="value_sum",
        )
    if model is not ValueModel.AUTO:
        if model is ValueModel.NORMAL:
            lacking = [arm.name for arm in arms if arm.value_sum_squares is None]
            if lacking:
                raise ValidationError(
                    f"arms {lacking} have no value_sum_squares; the normal value model needs "
                    "them (or choose the exponential model)",
                    field="value_sum_squares",
                )
        return model
    every_square = all(arm.value_sum_squares is not None for arm in arms)
    return ValueModel.NORMAL if every_square else ValueModel.EXPONENTIAL


def _pooled_mean(arms: Sequence[ArmObservation]) -> float:
    converters = sum(arm.conversions for arm in arms)
    if converters == 0:
        raise ValidationError(
            "no arm has a converting visitor yet; value per visitor needs at least one order "
            "(or pass value_prior)",
            field="conversions",
        )
    return sum(arm.value_sum or 0.0 for arm in arms) / converters


def _default_nig(arms: Sequence[ArmObservation]) -> NormalInverseGammaPrior:
    mean = _pooled_mean(arms)
    converters = sum(arm.conversions for arm in arms)
    within = sum(
        (arm.value_sum_squares or 0.0) - (arm.value_sum or 0.0) ** 2 / arm.conversions
        for arm in arms
        if arm.conversions
    )
    degrees = converters - sum(1 for arm in arms if arm.conversions)
    variance = within / degrees if degrees > 0 else 0.0
    if variance <= 0:
        # Too few orders to see any spread: assume a coefficient of variation of 1 (as an
        # exponential would), else a unit variance when the pooled mean is 0.
        variance = mean * mean if mean != 0 else 1.0
    return NormalInverseGammaPrior(
        mean=mean,
        strength=DEFAULT_PRIOR_CONVERTERS,
        shape=_DEFAULT_NIG_SHAPE,
        scale=variance * (_DEFAULT_NIG_SHAPE - 1),
    )


def _default_gamma(arms: Sequence[ArmObservation]) -> GammaRatePrior:
    for arm in arms:
        if (arm.value_sum or 0.0) < 0:
            raise ValidationError(
                f"arm {arm.name!r}: value_sum is {arm.value_sum}; the exponential value model "
                "needs values of at least 0 (send value_sum_squares for the normal model)",
                field="value_sum",
            )
    mean = _pooled_mean(arms)
    if mean <= 0:
        raise ValidationError(
            "every order so far is worth 0; value per visitor cannot rank the arms yet",
            field="value_sum",
        )
    return GammaRatePrior(shape=_DEFAULT_GAMMA_SHAPE, rate=mean * (_DEFAULT_GAMMA_SHAPE - 1))


def order_value_posteriors(
    arms: Sequence[ArmObservation],
    *,
    model: ValueModel = ValueModel.AUTO,
    value_prior: NormalInverseGammaPrior | GammaRatePrior | None = None,
) -> tuple[OrderValuePosterior, ...]:
    """Each arm's posterior on its mean order value, from its converters' value summary."""
    arms = check_arms(arms)
    if model is ValueModel.AUTO and value_prior is not None:
        # A given prior names its model.
        normal = isinstance(value_prior, NormalInverseGammaPrior)
        model = ValueModel.NORMAL if normal else ValueModel.EXPONENTIAL
    chosen = _resolve_model(arms, model)
    if chosen is ValueModel.NORMAL:
        nig = value_prior if value_prior is not None else _default_nig(arms)
        if not isinstance(nig, NormalInverseGammaPrior):
            raise ValidationError(
                "the normal value model takes a NormalInverseGammaPrior", field="value_prior"
            )
        return tuple(_normal_posterior(arm, nig) for arm in arms)
    gamma = value_prior if value_prior is not None else _default_gamma(arms)
    if not isinstance(gamma, GammaRatePrior):
        raise ValidationError(
            "the exponential value model takes a GammaRatePrior", field="value_prior"
        )
    for arm in arms:
        if (arm.value_sum or 0.0) < 0:
            raise ValidationError(
                f"arm {arm.name!r}: value_sum is {arm.value_sum}; exponential values are >= 0",
                field="value_sum",
            )
    return tuple(_gamma_posterior(arm, gamma) for arm in arms)


def _normal_posterior(arm: ArmObservation, prior: NormalInverseGammaPrior) -> OrderValuePosterior:
    n = arm.conversions
    total = arm.value_sum or 0.0
    mean = total / n if n else 0.0
    # Squared deviations from the arm's own mean; clipped because float cancellation can
    # make a zero spread come out a hair negative.
    spread = max(0.0, (arm.value_sum_squares or 0.0) - n * mean * mean) if n else 0.0
    kappa = prior.strength + n
    location = (prior.strength * prior.mean + total) / kappa
    shape = prior.shape + n / 2
    scale = prior.scale + spread / 2 + prior.strength * n * (mean - prior.mean) ** 2 / (2 * kappa)
    t_scale = math.sqrt(scale / (shape * kappa))
    return OrderValuePosterior(ValueModel.NORMAL, location, (2 * shape, location, t_scale))


def _gamma_posterior(arm: ArmObservation, prior: GammaRatePrior) -> OrderValuePosterior:
    shape = prior.shape + arm.conversions
    rate = prior.rate + (arm.value_sum or 0.0)
    return OrderValuePosterior(ValueModel.EXPONENTIAL, rate / (shape - 1), (shape, rate, 0.0))


def _check_draws(draws: int) -> int:
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < MIN_VALUE_DRAWS:
        raise ValidationError(
            f"draws is {draws!r}; give a whole number of at least {MIN_VALUE_DRAWS}",
            field="draws",
        )
    return draws


def sample_values_per_visitor(
    arms: Sequence[ArmObservation],
    rng: np.random.Generator,
    *,
    draws: int = DEFAULT_VALUE_DRAWS,
    prior: BetaPrior | None = None,
    model: ValueModel = ValueModel.AUTO,
    value_prior: NormalInverseGammaPrior | GammaRatePrior | None = None,
) -> NDArray[np.float64]:
    """Posterior draws of each arm's value per visitor (rate x mean order value), (draws, arms)."""
    arms = check_arms(arms)
    draws = _check_draws(draws)
    posteriors = order_value_posteriors(arms, model=model, value_prior=value_prior)
    rates = sample_conversion_rates(arms, rng, draws=draws, prior=prior)
    values = np.column_stack([posterior.sample(rng, draws) for posterior in posteriors])
    product: NDArray[np.float64] = rates * values
    return product


def analyze_value(
    arms: Sequence[ArmObservation],
    rng: np.random.Generator,
    *,
    draws: int = DEFAULT_VALUE_DRAWS,
    prior: BetaPrior | None = None,
    model: ValueModel = ValueModel.AUTO,
    value_prior: NormalInverseGammaPrior | GammaRatePrior | None = None,
    credible_level: float = DEFAULT_CREDIBLE_LEVEL,
) -> ExperimentAnalysis:
    """Value per visitor of each arm: posterior mean, interval, P(best) and expected loss.

    The mean is exact (E[rate] * E[mean order value], independent posteriors); the interval,
    P(best) and loss come from `draws` joint posterior draws, and `probability_error` and
    `loss_error` are three Monte-Carlo standard errors (a ~99.7% bound).
    """
    arms = check_arms(arms)
    level = check_credible_level(credible_level)
    beta_prior = prior if prior is not None else BetaPrior()
    posteriors = order_value_posteriors(arms, model=model, value_prior=value_prior)
    samples = sample_values_per_visitor(
        arms, rng, draws=draws, prior=beta_prior, model=model, value_prior=value_prior
    )
    winners = np.bincount(np.argmax(samples, axis=1), minlength=len(arms)) / draws
    regret = np.max(samples, axis=1, keepdims=True) - samples
    losses = regret.mean(axis=0)
    loss_errors = 3 * regret.std(axis=0, ddof=1) / math.sqrt(draws)
    tail = (1 - level) / 2
    lows, highs = np.quantile(samples, [tail, 1 - tail], axis=0)
    results = tuple(
        ArmResult(
            name=arm.name,
            visitors=arm.visitors,
            conversions=arm.conversions,
            mean=(beta_prior.alpha + arm.conversions)
            / (beta_prior.strength + arm.visitors)
            * posteriors[k].mean,
            interval_low=float(lows[k]),
            interval_high=float(highs[k]),
            probability_best=float(winners[k]),
            expected_loss=float(losses[k]),
        )
        for k, arm in enumerate(arms)
    )
    leader = min(results, key=lambda r: (r.expected_loss, -r.mean)).name
    worst_share = float(np.max(winners * (1 - winners)))
    return ExperimentAnalysis(
        metric=Metric.VALUE_PER_VISITOR,
        arms=results,
        credible_level=level,
        leader=leader,
        # A share of exactly 0 or 1 still carries an error of about 1/draws.
        probability_error=3 * math.sqrt(max(worst_share, 1.0 / draws) / draws),
        loss_error=float(np.max(loss_errors)),
        method=f"monte_carlo:{draws}",
    )
