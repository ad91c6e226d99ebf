"""CPC and CPM bid recommendations per segment for a target CPA or ROAS, with empirical Bayes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum

import numpy as np
from scipy import special

from perfmark.errors import ValidationError
from perfmark.money import Money, normalize_currency
from perfmark.optimize.domain.bids_prior import (
    FittedBetaPrior,
    PriorFit,
    ValueCredibility,
    fit_beta_prior,
    fit_value_credibility,
)
from perfmark.optimize.domain.experiments import BetaPrior, check_credible_level

__all__ = [
    "BID_DECIMAL_PLACES",
    "DEFAULT_BID_CREDIBLE_LEVEL",
    "DEFAULT_BID_DRAWS",
    "BidBasis",
    "BidRecommendations",
    "SegmentBid",
    "SegmentPerformance",
    "TargetCpa",
    "TargetRoas",
    "recommend_bids",
]

# Bids carry two digits more than the currency's minor unit: CPC bids of a fraction of a cent
# are common on native and push traffic, and the rounding to minor units happens at charging.
BID_DECIMAL_PLACES = 4
DEFAULT_BID_CREDIBLE_LEVEL = 0.9
DEFAULT_BID_DRAWS = 20_000
IMPRESSIONS_PER_CPM = 1000


class BidBasis(StrEnum):
    """What a bid pays for."""

    CPC = "cpc"  #: per click; the rate is conversions per click
    CPM = "cpm"  #: per thousand impressions; the rate is conversions per impression


@dataclass(frozen=True, slots=True)
class SegmentPerformance:
    """Observed results of one segment (a publisher, or a sub id) of a campaign.

    `conversions` counts whichever goal the bid optimises (raw leads, qualified leads, first
    purchases) and `value` is the total value of those conversions, in the target currency.
    `value_squares`, the sum of each conversion's value squared, is optional.
    """

    segment: str
    clicks: int
    conversions: int
    value: Decimal = Decimal(0)
    impressions: int | None = None
    value_squares: Decimal | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.segment, str) or not self.segment.strip():
            raise ValidationError(
                f"segment is {self.segment!r}; give each segment a non-blank key", field="segment"
            )
        for name in ("clicks", "conversions", "impressions"):
            count = getattr(self, name)
            if count is None and name == "impressions":
                continue
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValidationError(
                    f"segment {self.segment!r}: {name} is {count!r}; give a whole number of at "
                    "least 0",
                    field=name,
                )
        for name in ("value", "value_squares"):
            amount = getattr(self, name)
            if amount is None and name == "value_squares":
                continue
            if not isinstance(amount, Decimal | int) or isinstance(amount, bool):
                raise ValidationError(
                    f"segment {self.segment!r}: {name} is {amount!r}; give a Decimal amount",
                    field=name,
                )
            if not Decimal(amount).is_finite() or amount < 0:
                raise ValidationError(
                    f"segment {self.segment!r}: {name} is {amount}; give an amount of at least 0",
                    field=name,
                )
        if self.conversions == 0 and self.value != 0:
            raise ValidationError(
                f"segment {self.segment!r}: value is {self.value} with 0 conversions; value comes "
                "from conversions",
                field="value",
            )

    def trials(self, basis: BidBasis) -> int:
        """Clicks for CPC bids, impressions for CPM bids."""
        if basis is BidBasis.CPC:
            return self.clicks
        if self.impressions is None:
            raise ValidationError(
                f"segment {self.segment!r} has no impressions; CPM bids need them",
                field="impressions",
            )
        return self.impressions


@dataclass(frozen=True, slots=True)
class TargetCpa:
    """Pay at most `cpa` per conversion of the optimised goal."""

    cpa: Money

    def __post_init__(self) -> None:
        if not isinstance(self.cpa, Money) or self.cpa.amount <= 0:
            raise ValidationError(
                f"target_cpa is {self.cpa!r}; give an amount above 0", field="target_cpa"
            )


@dataclass(frozen=True, slots=True)
class TargetRoas:
    """Earn at least `roas` of value per unit of spend (2 means value = 2 x spend)."""

    roas: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.roas, Decimal | int) or not Decimal(self.roas).is_finite():
            raise ValidationError(
                f"target_roas is {self.roas!r}; give a Decimal above 0", field="target_roas"
            )
        if self.roas <= 0:
            raise ValidationError(
                f"target_roas is {self.roas}; give a ratio above 0 such as 1.5", field="target_roas"
            )
        object.__setattr__(self, "currency", normalize_currency(self.currency))


@dataclass(frozen=True, slots=True)
class SegmentBid:
    """The recommended bid of one segment, with its interval and how much it was shrunk."""

    segment: str
    trials: int  #: clicks (CPC) or impressions (CPM)
    conversions: int
    observed_rate: float | None  #: conversions / trials, None with no trials
    rate: float  #: posterior mean rate, shrunk toward the campaign average
    rate_low: float
    rate_high: float
    #: weight of the campaign average in `rate`: (alpha + beta) / (alpha + beta + trials)
    rate_shrinkage: float
    value_per_conversion: Decimal | None  #: shrunk mean order value (ROAS targets only)
    value_shrinkage: float | None  #: weight of the campaign's mean order value, 1 - Z
    bid: Money  #: per click, or per thousand impressions
    bid_low: Money
    bid_high: Money


@dataclass(frozen=True, slots=True)
class BidRecommendations:
    """Bids for every segment of one campaign, with the fitted prior they were shrunk to."""

    basis: BidBasis
    target: TargetCpa | TargetRoas
    prior: FittedBetaPrior
    value_credibility: ValueCredibility | None  #: set for ROAS targets
    credible_level: float
    segments: tuple[SegmentBid, ...]


def _to_money(amount: float, currency: str) -> Money:
    quantum = Decimal(1).scaleb(-BID_DECIMAL_PLACES)
    exact = Decimal(repr(max(amount, 0.0))).quantize(quantum, rounding=ROUND_HALF_EVEN)
    return Money(exact, currency)


def _check_segments(segments: Sequence[SegmentPerformance]) -> tuple[SegmentPerformance, ...]:
    rows = tuple(segments)
    if not rows:
        raise ValidationError("segments is empty; give at least one segment", field="segments")
    keys = [row.segment for row in rows]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValidationError(
            f"segments {duplicates} appear more than once; merge their counts", field="segments"
        )
    return rows


def _resolve_prior(
    rows: Sequence[SegmentPerformance],
    basis: BidBasis,
    prior: BetaPrior | None,
    fit: PriorFit,
) -> FittedBetaPrior:
    trials = [row.trials(basis) for row in rows]
    for row, n in zip(rows, trials, strict=True):
        if row.conversions > n:
            raise ValidationError(
                f"segment {row.segment!r}: conversions is {row.conversions} but "
                f"{'clicks' if basis is BidBasis.CPC else 'impressions'} is {n}; count only "
                f"conversions that followed a {'click' if basis is BidBasis.CPC else 'view'}",
                field="conversions",
            )
    if prior is not None:
        total = sum(trials)
        return FittedBetaPrior(
            alpha=prior.alpha,
            beta=prior.beta,
            method="given",
            pooled_rate=sum(row.conversions for row in rows) / total if total else prior.mean,
            heterogeneity_detected=True,
        )
    return fit_beta_prior(trials, [row.conversions for row in rows], method=fit)


def recommend_bids(
    segments: Sequence[SegmentPerformance],
    target: TargetCpa | TargetRoas,
    *,
    rng: np.random.Generator,
    basis: BidBasis = BidBasis.CPC,
    prior: BetaPrior | None = None,
    fit: PriorFit = PriorFit.MOMENTS,
    credible_level: float = DEFAULT_BID_CREDIBLE_LEVEL,
    draws: int = DEFAULT_BID_DRAWS,
) -> BidRecommendations:
    """Bid = target CPA x rate, or rate x value per conversion / target ROAS, per segment.

    The rate of each segment is its Beta posterior mean under a prior fitted to all segments
    (or `prior`, e.g. the campaign's prior when bidding on the sub ids of one publisher); a
    CPM bid is per thousand impressions. For ROAS the mean order value is shrunk by
    credibility too, and the bid interval comes from `draws` posterior draws (rng).
    """
    rows = _check_segments(segments)
    level = check_credible_level(credible_level)
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 100:
        raise ValidationError(
            f"draws is {draws!r}; give a whole number of at least 100", field="draws"
        )
    fitted = _resolve_prior(rows, basis, prior, fit)
    scale = IMPRESSIONS_PER_CPM if basis is BidBasis.CPM else 1
    credibility = None
    if isinstance(target, TargetRoas):
        credibility = fit_value_credibility(
            [row.conversions for row in rows],
            [float(row.value) for row in rows],
            [None if row.value_squares is None else float(row.value_squares) for row in rows],
        )
    tail = (1 - level) / 2
    bids = []
    for row in rows:
        n = row.trials(basis)
        a, b = fitted.alpha + row.conversions, fitted.beta + n - row.conversions
        rate = a / (a + b)
        low, high = (float(x) for x in special.betaincinv(a, b, [tail, 1 - tail]))
        value_mean: float | None = None
        value_shrinkage: float | None = None
        if isinstance(target, TargetCpa):
            per_conversion = float(target.cpa.amount) * scale
            currency = target.cpa.currency
            bid, bid_low, bid_high = (per_conversion * x for x in (rate, low, high))
        else:
            assert credibility is not None
            currency = target.currency
            value_mean = credibility.posterior_mean(row.conversions, float(row.value))
            value_shrinkage = 1 - credibility.credibility(row.conversions)
            roas = float(target.roas)
            bid = rate * value_mean * scale / roas
            spread = math.sqrt(credibility.posterior_variance(row.conversions))
            # Rate and order value are independent a posteriori; an order value below 0 is
            # impossible, so the normal draws are clipped there.
            sampled = rng.beta(a, b, draws) * np.maximum(rng.normal(value_mean, spread, draws), 0.0)
            bid_low, bid_high = (
                float(q) * scale / roas for q in np.quantile(sampled, [tail, 1 - tail])
            )
        bids.append(
            SegmentBid(
                segment=row.segment,
                trials=n,
                conversions=row.conversions,
                observed_rate=row.conversions / n if n else None,
                rate=rate,
                rate_low=low,
                rate_high=high,
                rate_shrinkage=fitted.strength / (fitted.strength + n),
                value_per_conversion=None
                if value_mean is None
                else Decimal(repr(value_mean)).quantize(Decimal(1).scaleb(-BID_DECIMAL_PLACES)),
                value_shrinkage=value_shrinkage,
                bid=_to_money(bid, currency),
                bid_low=_to_money(bid_low, currency),
                bid_high=_to_money(bid_high, currency),
            )
        )
    return BidRecommendations(
        basis=basis,
        target=target,
        prior=fitted,
        value_credibility=credibility,
        credible_level=level,
        segments=tuple(bids),
    )
