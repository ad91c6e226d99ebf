"""Pricing: models and their events, revshare and hybrid percents, tiers, and exact unit prices."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.domain.pricing import (
    BillableEvent,
    PayoutTier,
    Price,
    PricingModel,
    PricingRule,
    price_of,
)
from perfmark.errors import ValidationError
from perfmark.money import Money

M = PricingModel
EVENT = {
    M.CPC: BillableEvent.CLICK,
    M.CPM: BillableEvent.IMPRESSION,
    M.CPL: BillableEvent.CONVERSION,
    M.CPA: BillableEvent.CONVERSION,
    M.CPI: BillableEvent.CONVERSION,
    M.REVSHARE: BillableEvent.CONVERSION,
    M.HYBRID: BillableEvent.CONVERSION,
}
FIXED_MODELS = [M.CPC, M.CPM, M.CPL, M.CPA, M.CPI]

prices = st.decimals(min_value=0, max_value=Decimal("100000"), places=4)
percents = st.decimals(min_value=Decimal("0.0001"), max_value=100, places=4)
values = st.decimals(min_value=0, max_value=Decimal("1e9"), places=2)


def price(model: PricingModel, amount: str = "0", percent: str = "0") -> Price:
    return Price(model, Decimal(amount), Decimal(percent))


def a_price(model: PricingModel) -> Price:
    """A valid price of each model."""
    if model is M.REVSHARE:
        return price(model, percent="30")
    if model is M.HYBRID:
        return price(model, "2", "10")
    return price(model, "1.5")


def rule(pays: Price, earns: Price, **kwargs: Any) -> PricingRule:
    return PricingRule(pays=pays, earns=earns, **kwargs)


# --- prices -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "event"), EVENT.items())
def test_each_model_charges_its_event(model: PricingModel, event: BillableEvent) -> None:
    assert a_price(model).event is event


def test_model_from_string() -> None:
    assert Price("cpc", Decimal(1)).model is M.CPC  # type: ignore[arg-type]


def test_unknown_model_names_the_field_and_the_choices() -> None:
    with pytest.raises(ValidationError) as caught:
        Price("cpx", Decimal(1))  # type: ignore[arg-type]
    assert caught.value.field == "model"
    assert "cpc, cpm, cpl, cpa, cpi, revshare, hybrid" in caught.value.message


@pytest.mark.parametrize("model", list(M))
def test_negative_amounts_are_refused(model: PricingModel) -> None:
    with pytest.raises(ValidationError) as caught:
        Price(model, Decimal("-0.01"), Decimal(10))
    assert caught.value.field == "amount"


def test_float_amount_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        Price(M.CPC, 0.5)  # type: ignore[arg-type]
    assert caught.value.field == "amount"


@pytest.mark.parametrize("percent", ["-1", "100.01", "1000"])
def test_percent_is_between_0_and_100(percent: str) -> None:
    with pytest.raises(ValidationError) as caught:
        price(M.REVSHARE, percent=percent)
    assert caught.value.field == "percent"


@pytest.mark.parametrize("model", FIXED_MODELS)
def test_fixed_models_take_no_percent(model: PricingModel) -> None:
    with pytest.raises(ValidationError) as caught:
        price(model, "1", "5")
    assert caught.value.field == "percent"
    assert f"a {model.value} price takes a fixed amount only" in caught.value.message


def test_revshare_takes_a_percent_above_zero() -> None:
    with pytest.raises(ValidationError) as caught:
        price(M.REVSHARE)
    assert caught.value.field == "percent"
    assert price(M.REVSHARE, percent="100").percent == 100


def test_revshare_takes_no_fixed_amount() -> None:
    with pytest.raises(ValidationError) as caught:
        price(M.REVSHARE, "1", "10")
    assert caught.value.field == "amount"


def test_hybrid_needs_a_percent_and_may_have_an_amount() -> None:
    with pytest.raises(ValidationError) as caught:
        price(M.HYBRID, "5")
    assert caught.value.field == "percent"
    assert price(M.HYBRID, "5", "12.5").amount == 5
    assert price(M.HYBRID, "0", "12.5").percent == Decimal("12.5")


# --- rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pays", list(M))
@pytest.mark.parametrize("earns", list(M))
def test_both_sides_of_a_rule_charge_the_same_event(
    pays: PricingModel, earns: PricingModel
) -> None:
    goal = "goal_1" if EVENT[pays] is BillableEvent.CONVERSION else None
    if EVENT[pays] is EVENT[earns]:
        assert rule(a_price(pays), a_price(earns), goal_id=goal).event is EVENT[pays]
    else:
        with pytest.raises(ValidationError) as caught:
            rule(a_price(pays), a_price(earns), goal_id=goal)
        assert caught.value.field == "earns"


@pytest.mark.parametrize("model", [M.CPL, M.CPA, M.CPI, M.REVSHARE, M.HYBRID])
def test_conversion_rules_need_a_goal(model: PricingModel) -> None:
    with pytest.raises(ValidationError) as caught:
        rule(a_price(model), a_price(model))
    assert caught.value.field == "goal_id"


@pytest.mark.parametrize("model", [M.CPC, M.CPM])
def test_click_and_impression_rules_take_no_goal(model: PricingModel) -> None:
    with pytest.raises(ValidationError) as caught:
        rule(a_price(model), a_price(model), goal_id="goal_1")
    assert caught.value.field == "goal_id"
    assert rule(a_price(model), a_price(model)).goal_id is None


def tier(volume: int, amount: str) -> PayoutTier:
    return PayoutTier(volume, price(M.CPA, amount))


def tiered(*tiers: PayoutTier) -> PricingRule:
    return rule(price(M.CPA, "20"), price(M.CPA, "10"), goal_id="g", tiers=tiers)


@pytest.mark.parametrize("volumes", [(100, 100), (200, 100), (10, 50, 20)])
def test_tiers_must_strictly_increase(volumes: tuple[int, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        tiered(*(tier(v, "11") for v in volumes))
    assert caught.value.field == "tiers"


@pytest.mark.parametrize("volume", [0, -1])
def test_tier_volume_must_be_positive(volume: int) -> None:
    with pytest.raises(ValidationError) as caught:
        tier(volume, "1")
    assert caught.value.field == "min_monthly_conversions"


def test_tiers_pay_for_the_rule_event() -> None:
    with pytest.raises(ValidationError) as caught:
        tiered(PayoutTier(10, price(M.CPC, "1")))
    assert caught.value.field == "tiers"


def test_earns_at_volume_picks_the_highest_reached_tier() -> None:
    pricing = tiered(tier(100, "12"), tier(500, "15"))
    expected = {0: "10", 99: "10", 100: "12", 499: "12", 500: "15", 10_000: "15"}
    for volume, amount in expected.items():
        assert pricing.earns_at_volume(volume).amount == Decimal(amount), volume


@settings(max_examples=100)
@given(
    st.lists(st.integers(min_value=1, max_value=10_000), min_size=0, max_size=6, unique=True),
    st.integers(min_value=0, max_value=20_000),
)
def test_earns_at_volume_against_brute_force(volumes: list[int], monthly: int) -> None:
    volumes.sort()
    pricing = tiered(*(tier(v, str(v)) for v in volumes))
    reached = [v for v in volumes if v <= monthly]
    expected = Decimal(max(reached)) if reached else Decimal(10)
    assert pricing.earns_at_volume(monthly).amount == expected


# --- price_of ---------------------------------------------------------------------------------


def test_hand_computed_unit_prices() -> None:
    assert price_of(price(M.CPC, "0.35"), "USD") == Money.of("0.35", "USD")
    assert price_of(price(M.CPM, "2.50"), "USD") == Money.of("0.0025", "USD")
    assert price_of(price(M.CPA, "40"), "EUR") == Money.of("40", "EUR")
    value = Money.of("80", "USD")
    assert price_of(price(M.REVSHARE, percent="12.5"), "USD", value) == Money.of("10", "USD")
    assert price_of(price(M.HYBRID, "2", "5"), "USD", value) == Money.of("6", "USD")


def test_a_thousand_impressions_cost_exactly_the_cpm() -> None:
    per_impression = price_of(price(M.CPM, "3.33"), "USD")
    total = Money.zero("USD")
    for _ in range(1000):
        total = total + per_impression
    assert total == Money.of("3.33", "USD")


@settings(max_examples=150)
@given(prices)
def test_cpc_is_the_amount(amount: Decimal) -> None:
    assert price_of(Price(M.CPC, amount), "USD").amount == amount


@settings(max_examples=150)
@given(prices)
def test_cpm_is_exactly_one_thousandth(amount: Decimal) -> None:
    unit = price_of(Price(M.CPM, amount), "USD").amount
    assert Fraction(unit) == Fraction(amount) / 1000
    assert unit * 1000 == amount


@settings(max_examples=150)
@given(percents, values)
def test_revshare_is_exactly_the_percent_of_the_value(percent: Decimal, value: Decimal) -> None:
    unit = price_of(Price(M.REVSHARE, percent=percent), "USD", Money(value, "USD")).amount
    assert Fraction(unit) == Fraction(value) * Fraction(percent) / 100


@settings(max_examples=150)
@given(prices, percents, values)
def test_hybrid_is_exactly_fixed_plus_percent(
    amount: Decimal, percent: Decimal, value: Decimal
) -> None:
    unit = price_of(Price(M.HYBRID, amount, percent), "EUR", Money(value, "EUR"))
    assert unit.currency == "EUR"
    assert Fraction(unit.amount) == Fraction(amount) + Fraction(value) * Fraction(percent) / 100


def test_revshare_without_a_value_is_zero_and_hybrid_is_its_fixed_part() -> None:
    assert price_of(price(M.REVSHARE, percent="30"), "USD").is_zero()
    assert price_of(price(M.HYBRID, "2", "30"), "USD") == Money.of("2", "USD")


def test_a_value_in_another_currency_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        price_of(price(M.REVSHARE, percent="10"), "USD", Money.of("50", "EUR"))
    assert caught.value.field == "currency"
    assert "EUR" in caught.value.message and "USD" in caught.value.message


def test_fixed_prices_ignore_the_value() -> None:
    assert price_of(price(M.CPA, "5"), "USD", Money.of("999", "EUR")) == Money.of("5", "USD")
