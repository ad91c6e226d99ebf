"""Negative margins: refused when a campaign is configured, capped when priced, booked if allowed."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.billing.domain.ledger import (
    REVENUE_ACCOUNT,
    Journal,
    build_charge,
    build_reversal,
)
from perfmark.billing.domain.pricing import quote_event
from perfmark.domain.campaigns import CampaignSpec
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

AT = datetime(2026, 3, 2, 12, tzinfo=UTC)


def spec(*rules: PricingRule, **changes: object) -> CampaignSpec:
    values: dict[str, object] = {"name": "c", "advertiser_id": "adv_1", "offer_id": "off_1",
                                 "goal_ids": ("goal_1",), "pricing": rules}  # fmt: skip
    values.update(changes)
    return CampaignSpec(**values)  # type: ignore[arg-type]


def cpa(amount: str) -> Price:
    return Price(PricingModel.CPA, Decimal(amount))


def test_a_payout_above_the_charge_is_refused_when_configured_naming_the_rule() -> None:
    with pytest.raises(ValidationError) as info:
        spec(PricingRule(cpa("5"), cpa("3"), goal_id="goal_1"),
             PricingRule(cpa("5"), cpa("6"), goal_id="goal_1", publisher_id="pub_9"))  # fmt: skip
    message = info.value.message
    assert info.value.field == "pricing"
    assert "goal goal_1 for publisher pub_9" in message and "cpa 6" in message
    assert "allow_negative_margin" in message
    # A tier that pays more than the charge counts too.
    tiered = PricingRule(cpa("5"), cpa("3"), goal_id="goal_1",
                         tiers=(PayoutTier(100, cpa("5.01")),))  # fmt: skip
    with pytest.raises(ValidationError, match=r"cpa 5\.01"):
        spec(tiered)
    # A revenue share that can pass the charge for a large enough sale.
    shares = PricingRule(Price(PricingModel.HYBRID, Decimal(2), Decimal(5)),
                         Price(PricingModel.REVSHARE, percent=Decimal(6)), goal_id="goal_1")  # fmt: skip
    with pytest.raises(ValidationError, match="6% of the value"):
        spec(shares)
    # Equal is fine; an explicit setting accepts the loss.
    assert spec(PricingRule(cpa("5"), cpa("5"), goal_id="goal_1")).allow_negative_margin is False
    assert spec(tiered, allow_negative_margin=True).allow_negative_margin
    with pytest.raises(ValidationError) as bad:
        spec(allow_negative_margin="yes")
    assert bad.value.field == "allow_negative_margin"


def test_the_auto_approval_limit_is_a_non_negative_amount() -> None:
    assert spec(auto_approve_max_value="250.00").auto_approve_max_value == Decimal("250.00")
    with pytest.raises(ValidationError) as info:
        spec(auto_approve_max_value="-1")
    assert info.value.field == "auto_approve_max_value"


amounts = st.integers(0, 10_000).map(lambda n: Decimal(n) / 100)
percents = st.integers(1, 100).map(Decimal)
prices = st.one_of(
    amounts.map(lambda a: Price(PricingModel.CPA, a)),
    percents.map(lambda p: Price(PricingModel.REVSHARE, percent=p)),
    st.tuples(amounts, percents).map(lambda ap: Price(PricingModel.HYBRID, ap[0], ap[1])),
)


@settings(max_examples=200, deadline=None)
@given(
    pays=prices,
    earns=prices,
    value=st.integers(0, 10**7).map(lambda n: Decimal(n) / 100),
    allow=st.booleans(),
)
def test_a_quote_pays_at_most_the_charge_unless_a_loss_is_allowed(
    pays: Price, earns: Price, value: Decimal, allow: bool
) -> None:
    # Rules built directly, not through a campaign: the quote is the last line of defence.
    rule = PricingRule(pays, earns, goal_id="goal_1")
    quote = quote_event([rule], event=BillableEvent.CONVERSION, goal_id="goal_1",
                        currency="USD", at=AT, value=Money(value, "USD"),
                        allow_negative_margin=allow)  # fmt: skip
    asked = price_of(earns, "USD", Money(value, "USD"))
    assert quote.cost == price_of(pays, "USD", Money(value, "USD"))
    if allow or asked <= quote.cost:
        assert quote.payout == asked and quote.uncapped_payout is None
    else:
        assert quote.payout == quote.cost and quote.uncapped_payout == asked
    journal = Journal()
    charge = build_charge(advertiser_id="adv", publisher_id="pub", cost=quote.cost,
                          payout=quote.payout, event=BillableEvent.CONVERSION, reference="cnv",
                          occurred_at=AT, campaign_id="cmp", goal_id="goal_1",
                          allow_negative_margin=allow)  # fmt: skip
    journal.post(charge)
    loss = charge.entry_of_kind(REVENUE_ACCOUNT.kind)
    assert loss is not None
    assert loss.minor == quote.payout.to_minor() - quote.cost.to_minor()
    if not allow:
        assert loss.minor <= 0  # revenue is credited (or untouched): never a loss
    # The ledger balances, and a refund nets everything back to zero, a loss included.
    journal.post(build_reversal(charge, approved=False, publisher_paid=False, occurred_at=AT,
                                reason="refunded"))  # fmt: skip
    assert all(sum(entry.minor for entry in txn.entries) == 0 for txn in journal)
    assert all(journal.balance(entry.account, "USD") == 0 for entry in charge.entries)
