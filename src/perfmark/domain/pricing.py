"""Pricing models: what an advertiser pays and what a publisher earns, per event or goal."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from perfmark.domain.rules import check_decimal, check_positive_int
from perfmark.errors import ValidationError
from perfmark.money import Money

__all__ = [
    "BillableEvent",
    "PayoutTier",
    "Price",
    "PricingModel",
    "PricingRule",
    "price_of",
]


class PricingModel(StrEnum):
    """How a price is counted."""

    CPC = "cpc"  #: per click
    CPM = "cpm"  #: per thousand impressions
    CPL = "cpl"  #: per lead (a conversion of a lead goal)
    CPA = "cpa"  #: per action (any conversion goal)
    CPI = "cpi"  #: per app install
    REVSHARE = "revshare"  #: a percentage of the conversion's value
    HYBRID = "hybrid"  #: a fixed amount per conversion plus a percentage of its value


class BillableEvent(StrEnum):
    """The kind of event a pricing model charges for."""

    CLICK = "click"
    IMPRESSION = "impression"
    CONVERSION = "conversion"


_EVENT_OF_MODEL = {
    PricingModel.CPC: BillableEvent.CLICK,
    PricingModel.CPM: BillableEvent.IMPRESSION,
}

_HUNDRED = Decimal(100)
_THOUSAND = Decimal(1000)


@dataclass(frozen=True, slots=True)
class Price:
    """One side of a price: a fixed amount per unit and/or a percent of the conversion value."""

    model: PricingModel
    amount: Decimal = Decimal(0)
    percent: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        try:
            model = PricingModel(self.model)
        except ValueError:
            allowed = ", ".join(m.value for m in PricingModel)
            raise ValidationError(
                f"pricing model {self.model!r} is unknown; use one of {allowed}", field="model"
            ) from None
        object.__setattr__(self, "model", model)
        amount = check_decimal("amount", self.amount)
        percent = check_decimal("percent", self.percent, maximum=_HUNDRED)
        object.__setattr__(self, "amount", amount)
        object.__setattr__(self, "percent", percent)
        if model is PricingModel.REVSHARE and amount != 0:
            raise ValidationError(
                f"a revshare price takes no fixed amount, not {amount}; use hybrid for both",
                field="amount",
            )
        if model is PricingModel.REVSHARE and percent == 0:
            raise ValidationError("a revshare price takes a percent above 0", field="percent")
        if model is PricingModel.HYBRID and percent == 0:
            raise ValidationError(
                "a hybrid price takes a fixed amount and a percent above 0", field="percent"
            )
        if model not in (PricingModel.REVSHARE, PricingModel.HYBRID) and percent != 0:
            raise ValidationError(
                f"a {model.value} price takes a fixed amount only; percent must be 0 "
                "(use revshare or hybrid for a share of the value)",
                field="percent",
            )

    @property
    def event(self) -> BillableEvent:
        """Which event this price is charged on."""
        return _EVENT_OF_MODEL.get(self.model, BillableEvent.CONVERSION)


def price_of(price: Price, currency: str, value: Money | None = None) -> Money:
    """The exact (unrounded) amount of one unit: one click, one impression, one conversion.

    A CPM price is per thousand impressions, so one impression costs amount / 1000. A
    revenue share is taken of the conversion value, which must then be in `currency`.
    """
    fixed = price.amount / _THOUSAND if price.model is PricingModel.CPM else price.amount
    total = Money(fixed, currency)
    if price.percent:
        if value is None:
            return total
        if value.currency != total.currency:
            raise ValidationError(
                f"conversion value is in {value.currency} but the price is in {currency}; "
                "convert the value first",
                field="currency",
            )
        total = total + Money(value.amount * price.percent / _HUNDRED, currency)
    return total


@dataclass(frozen=True, slots=True)
class PayoutTier:
    """A publisher payout that applies from a monthly conversion volume upward."""

    min_monthly_conversions: int
    earns: Price

    def __post_init__(self) -> None:
        check_positive_int("min_monthly_conversions", self.min_monthly_conversions)


@dataclass(frozen=True, slots=True)
class PricingRule:
    """What the advertiser pays and the publisher earns for one event kind or goal.

    `goal_id` is None for click (CPC) and impression (CPM) rules. `publisher_id` set makes
    the rule an override for that publisher. `tiers` raise the publisher payout by monthly
    volume.
    """

    pays: Price
    earns: Price
    goal_id: str | None = None
    publisher_id: str | None = None
    tiers: tuple[PayoutTier, ...] = ()

    def __post_init__(self) -> None:
        if self.pays.event is not self.earns.event:
            raise ValidationError(
                f"pays is {self.pays.model.value} but earns is {self.earns.model.value}: both "
                "sides of a rule must charge the same event (click, impression or conversion)",
                field="earns",
            )
        if self.pays.event is BillableEvent.CONVERSION and not self.goal_id:
            raise ValidationError(
                f"a {self.pays.model.value} rule needs the goal_id it pays for", field="goal_id"
            )
        if self.pays.event is not BillableEvent.CONVERSION and self.goal_id:
            raise ValidationError(
                f"a {self.pays.model.value} rule charges {self.pays.event.value}s; "
                "leave goal_id empty",
                field="goal_id",
            )
        volumes = [tier.min_monthly_conversions for tier in self.tiers]
        if volumes != sorted(set(volumes)):
            raise ValidationError(
                "tiers must have strictly increasing min_monthly_conversions", field="tiers"
            )
        for tier in self.tiers:
            if tier.earns.event is not self.earns.event:
                raise ValidationError(
                    "every tier must pay for the same event as the rule", field="tiers"
                )

    @property
    def event(self) -> BillableEvent:
        """Which event this rule charges."""
        return self.pays.event

    def earns_at_volume(self, monthly_conversions: int) -> Price:
        """The publisher price that applies at this month's conversion count so far."""
        chosen = self.earns
        for tier in self.tiers:
            if monthly_conversions >= tier.min_monthly_conversions:
                chosen = tier.earns
        return chosen
