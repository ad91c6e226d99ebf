"""Thompson-sampling rotation weights with an exploration floor, and a regret simulation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from perfmark.errors import ValidationError
from perfmark.optimize.domain.experiments import (
    ArmObservation,
    BetaPrior,
    Metric,
    check_arms,
    sample_conversion_rates,
)
from perfmark.optimize.domain.experiments_value import (
    GammaRatePrior,
    NormalInverseGammaPrior,
    ValueModel,
    sample_values_per_visitor,
)

__all__ = [
    "DEFAULT_MIN_SHARE",
    "DEFAULT_ROTATION_TOTAL",
    "DEFAULT_SHARPNESS",
    "DEFAULT_THOMPSON_DRAWS",
    "BanditSimulation",
    "PolicyOutcome",
    "RotationWeights",
    "apply_exploration_floor",
    "best_arm_shares",
    "decayed_floor",
    "sharpen_shares",
    "integer_rotation_weights",
    "simulate_bandit",
    "thompson_weights",
]

DEFAULT_MIN_SHARE = 0.05
DEFAULT_THOMPSON_DRAWS = 10_000
DEFAULT_ROTATION_TOTAL = 100  #: integer weights sum to this (a tracker's "percent" rotation)
DEFAULT_SHARPNESS = 1.0  #: 1 is plain Thompson sampling (probability matching)


def best_arm_shares(samples: NDArray[np.float64]) -> tuple[float, ...]:
    """Share of posterior draws (rows) in which each arm (column) is the best."""
    if samples.ndim != 2 or samples.shape[0] == 0 or samples.shape[1] == 0:
        raise ValidationError(
            f"samples has shape {samples.shape}; give a (draws, arms) array", field="samples"
        )
    counts = np.bincount(np.argmax(samples, axis=1), minlength=samples.shape[1])
    return tuple(float(c) / samples.shape[0] for c in counts)


def _check_min_share(min_share: float, arms: int) -> float:
    if isinstance(min_share, bool) or not isinstance(min_share, int | float):
        raise ValidationError(f"min_share is {min_share!r}; give a number", field="min_share")
    if not 0 <= min_share <= 1 / arms:
        raise ValidationError(
            f"min_share is {min_share!r}; with {arms} arms it must be between 0 and "
            f"1/{arms} = {1 / arms:.4g} so that the shares can sum to 1",
            field="min_share",
        )
    return float(min_share)


def apply_exploration_floor(shares: Sequence[float], min_share: float) -> tuple[float, ...]:
    """Mix shares with the even split so each is >= min_share and they still sum to 1.

    w_k = m + (1 - n*m) * s_k: the floor is reserved for every arm and the rest follows the
    Thompson shares, so the ranking of arms is kept.
    """
    values = [float(s) for s in shares]
    if not values or any(not math.isfinite(s) or s < 0 for s in values) or sum(values) <= 0:
        raise ValidationError(
            f"shares is {values}; give finite shares of at least 0, not all 0", field="shares"
        )
    floor = _check_min_share(min_share, len(values))
    total = sum(values)
    free = 1 - len(values) * floor
    weights = [floor + free * s / total for s in values]
    # Put the float rounding residue on the largest weight so the sum is 1 to the last bit
    # that can be represented (floors are never touched).
    largest = max(range(len(weights)), key=weights.__getitem__)
    weights[largest] += 1 - math.fsum(weights)
    return tuple(weights)


def sharpen_shares(shares: Sequence[float], sharpness: float) -> tuple[float, ...]:
    """P(best) raised to `sharpness` and renormalised: 1 keeps them, above 1 favours the leader.

    Probability matching explores as if the test ran forever; with a short horizon and daily
    batches it sends too much traffic to arms that are probably worse. Raising P(best) to a
    power above 1 keeps the ranking and every arm with P(best) > 0, but moves traffic to the
    leader sooner (2 halves the weight of an arm at P(best) = 0.25 against one at 0.5).
    """
    values = [float(s) for s in shares]
    if not values or any(not math.isfinite(s) or s < 0 for s in values) or sum(values) <= 0:
        raise ValidationError(
            f"shares is {values}; give finite shares of at least 0, not all 0", field="shares"
        )
    if (
        isinstance(sharpness, bool)
        or not isinstance(sharpness, int | float)
        or not math.isfinite(sharpness)
        or sharpness < 1
    ):
        raise ValidationError(
            f"sharpness is {sharpness!r}; give a number of at least 1 (1 is plain Thompson "
            "sampling)",
            field="sharpness",
        )
    peak = max(values)
    # Divide by the largest first so that large powers cannot underflow every share to 0.
    powered = [(s / peak) ** float(sharpness) for s in values]
    total = math.fsum(powered)
    return tuple(p / total for p in powered)


def decayed_floor(min_share: float, conversions: int, floor_evidence: int | None) -> float:
    """The exploration floor after `conversions`: min_share until `floor_evidence`, then less.

    min_share x min(1, floor_evidence / conversions). Early on the floor guards against a
    posterior misled by a few conversions; once there is evidence, the posterior's own spread
    keeps the other arms in play, and a fixed floor only costs conversions. None keeps the
    floor fixed.
    """
    if floor_evidence is None:
        return float(min_share)
    if (
        isinstance(floor_evidence, bool)
        or not isinstance(floor_evidence, int)
        or floor_evidence < 1
    ):
        raise ValidationError(
            f"floor_evidence is {floor_evidence!r}; give a whole number of conversions of at "
            "least 1, or none to keep the floor fixed",
            field="floor_evidence",
        )
    if conversions <= floor_evidence:
        return float(min_share)
    return float(min_share) * floor_evidence / conversions


@dataclass(frozen=True, slots=True)
class RotationWeights:
    """Rotation weights for a tracker, from Thompson sampling, in arm order."""

    names: tuple[str, ...]
    weights: tuple[float, ...]  #: each >= min_share, summing to 1
    best_shares: tuple[float, ...]  #: share of draws each arm was best (before the floor)
    integer_weights: tuple[int, ...]  #: the weights as integers summing to `integer_total`
    integer_total: int
    min_share: float
    draws: int
    metric: Metric


def thompson_weights(
    arms: Sequence[ArmObservation],
    rng: np.random.Generator,
    *,
    metric: Metric = Metric.CONVERSION_RATE,
    min_share: float = DEFAULT_MIN_SHARE,
    draws: int = DEFAULT_THOMPSON_DRAWS,
    prior: BetaPrior | None = None,
    value_model: ValueModel = ValueModel.AUTO,
    value_prior: NormalInverseGammaPrior | GammaRatePrior | None = None,
    integer_total: int = DEFAULT_ROTATION_TOTAL,
    sharpness: float = DEFAULT_SHARPNESS,
    floor_evidence: int | None = None,
) -> RotationWeights:
    """Each arm's share of posterior draws in which it is best, floored at `min_share`.

    With `sharpness` above 1 the shares are sharpened (`sharpen_shares`); with
    `floor_evidence` the floor shrinks once the arms have more conversions than that
    (`decayed_floor`). `best_shares` keeps the plain P(best).
    """
    arms = check_arms(arms)
    _check_min_share(min_share, len(arms))
    floor = decayed_floor(min_share, sum(arm.conversions for arm in arms), floor_evidence)
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValidationError(
            f"draws is {draws!r}; give a whole number of at least 1", field="draws"
        )
    if metric is Metric.CONVERSION_RATE:
        samples = sample_conversion_rates(arms, rng, draws=draws, prior=prior)
    else:
        samples = sample_values_per_visitor(
            arms, rng, draws=draws, prior=prior, model=value_model, value_prior=value_prior
        )
    shares = best_arm_shares(samples)
    weights = apply_exploration_floor(sharpen_shares(shares, sharpness), floor)
    return RotationWeights(
        names=tuple(arm.name for arm in arms),
        weights=weights,
        best_shares=shares,
        integer_weights=integer_rotation_weights(weights, total=integer_total),
        integer_total=integer_total,
        min_share=floor,
        draws=draws,
        metric=metric,
    )


def integer_rotation_weights(
    weights: Sequence[float], *, total: int = DEFAULT_ROTATION_TOTAL
) -> tuple[int, ...]:
    """Whole-number weights summing to `total`, each >= 1, by largest remainder.

    Each integer is within 1 of weight * total, except that an arm whose share rounds to 0
    still gets 1 (taken from the largest), so no arm drops out of the rotation.
    """
    values = [float(w) for w in weights]
    if not values or any(not math.isfinite(w) or w < 0 for w in values) or sum(values) <= 0:
        raise ValidationError(
            f"weights is {values}; give finite weights of at least 0, not all 0", field="weights"
        )
    if isinstance(total, bool) or not isinstance(total, int) or total < len(values):
        raise ValidationError(
            f"total is {total!r}; give a whole number of at least the number of arms "
            f"({len(values)}) so each arm keeps a weight of 1",
            field="total",
        )
    scaled = [w * total / math.fsum(values) for w in values]
    result = [math.floor(s) for s in scaled]
    order = sorted(range(len(scaled)), key=lambda k: (result[k] - scaled[k], k))
    for k in order[: total - sum(result)]:
        result[k] += 1
    for k in range(len(result)):
        if result[k] == 0:
            donor = max(range(len(result)), key=lambda j: (result[j], -j))
            result[donor] -= 1
            result[k] = 1
    return tuple(result)


@dataclass(frozen=True, slots=True)
class PolicyOutcome:
    """What one allocation policy did in a simulation."""

    visitors: tuple[int, ...]  #: visitors sent to each arm
    conversions: int  #: conversions realised
    expected_conversions: float  #: sum of visitors x true rate (free of conversion noise)
    regret: float  #: expected conversions lost against always showing the best arm


@dataclass(frozen=True, slots=True)
class BanditSimulation:
    """Thompson sampling against an even split and the best arm, on the same traffic."""

    true_rates: tuple[float, ...]
    rounds: int
    visitors_per_round: int
    best_arm_expected_conversions: float
    thompson: PolicyOutcome
    even_split: PolicyOutcome


def _outcome(
    visitors: NDArray[np.int64], conversions: int, rates: NDArray[np.float64], best: float
) -> PolicyOutcome:
    expected = float(np.dot(visitors, rates))
    return PolicyOutcome(
        visitors=tuple(int(v) for v in visitors),
        conversions=conversions,
        expected_conversions=expected,
        regret=best * float(visitors.sum()) - expected,
    )


def simulate_bandit(
    true_rates: Sequence[float],
    rng: np.random.Generator,
    *,
    rounds: int,
    visitors_per_round: int,
    min_share: float = DEFAULT_MIN_SHARE,
    draws: int = DEFAULT_THOMPSON_DRAWS,
    prior: BetaPrior | None = None,
    sharpness: float = DEFAULT_SHARPNESS,
    floor_evidence: int | None = None,
) -> BanditSimulation:
    """Run Thompson allocation round by round on arms with hidden rates, beside an even split.

    Each round the bandit recomputes its weights from all conversions so far, splits the
    round's visitors multinomially by them, and each visitor converts with its arm's true
    rate. Regret is measured in expected conversions (visitors x true rate), which removes
    the coin-flip noise of the conversions themselves.
    """
    rates = np.array([float(r) for r in true_rates], dtype=np.float64)
    if rates.size < 2 or not np.all((rates >= 0) & (rates <= 1)):
        raise ValidationError(
            f"true_rates is {list(true_rates)}; give at least two rates between 0 and 1",
            field="true_rates",
        )
    for name, count in (("rounds", rounds), ("visitors_per_round", visitors_per_round)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValidationError(
                f"{name} is {count!r}; give a whole number of at least 1", field=name
            )
    names = [f"arm{k}" for k in range(rates.size)]
    even = np.full(rates.size, 1.0 / rates.size)
    seen = {policy: np.zeros(rates.size, dtype=np.int64) for policy in ("thompson", "even")}
    won = {policy: np.zeros(rates.size, dtype=np.int64) for policy in ("thompson", "even")}
    for _ in range(rounds):
        arms = [
            ArmObservation(name, int(v), int(c))
            for name, v, c in zip(names, seen["thompson"], won["thompson"], strict=True)
        ]
        weights = thompson_weights(
            arms,
            rng,
            min_share=min_share,
            draws=draws,
            prior=prior,
            sharpness=sharpness,
            floor_evidence=floor_evidence,
        ).weights
        for policy, split in (("thompson", np.asarray(weights)), ("even", even)):
            sent = rng.multinomial(visitors_per_round, split / split.sum())
            seen[policy] += sent
            won[policy] += rng.binomial(sent, rates)
    best = float(rates.max())
    return BanditSimulation(
        true_rates=tuple(float(r) for r in rates),
        rounds=rounds,
        visitors_per_round=visitors_per_round,
        best_arm_expected_conversions=best * rounds * visitors_per_round,
        thompson=_outcome(seen["thompson"], int(won["thompson"].sum()), rates, best),
        even_split=_outcome(seen["even"], int(won["even"].sum()), rates, best),
    )
