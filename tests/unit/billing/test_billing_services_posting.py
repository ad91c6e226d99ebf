"""Charging a conversion in the store: the domain's verdicts, margins, and counters in minor units."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, insert

from perfmark.adapters.store.schema import workspaces
from perfmark.billing import store
from perfmark.billing.domain.budgets import CounterKey, Spend, check_spend
from perfmark.billing.domain.ledger import AccountKind
from perfmark.billing.services.context import AdvertiserBilling, CampaignBilling
from perfmark.billing.services.posting import (
    ChargeOutcome,
    ConversionInfo,
    charge_conversion,
    decide,
)
from perfmark.domain.campaigns import CampaignSpec, Cap
from perfmark.domain.parties import BillingMode
from perfmark.domain.pricing import BillableEvent, Price, PricingModel, PricingRule, price_of
from perfmark.errors import ValidationError
from perfmark.ids import new_id
from perfmark.money import Money
from perfmark.services.container import Container

AT = datetime(2026, 3, 2, 12, tzinfo=UTC)
FAST = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def conn(container: Container) -> Iterator[Connection]:
    """One transaction on a fresh SQLite store, rolled back at the end."""
    with container.engine.connect() as connection:
        outer = connection.begin()
        yield connection
        outer.rollback()


def workspace(conn: Connection) -> str:
    workspace_id = new_id("ws")
    conn.execute(insert(workspaces).values(id=workspace_id, name="w", data={"name": "w"},
                                           created_at=AT, updated_at=AT, version=1))  # fmt: skip
    return workspace_id


def campaign(workspace_id: str, pays: Price, earns: Price, **changes: object) -> CampaignBilling:
    values: dict[str, object] = {
        "name": "c", "advertiser_id": "adv_1", "offer_id": "off_1", "goal_ids": ("goal_1",),
        "pricing": (PricingRule(pays, earns, goal_id="goal_1"),),
    }  # fmt: skip
    values.update(changes)
    spec = CampaignSpec(**values)  # type: ignore[arg-type]
    advertiser = AdvertiserBilling("adv_1", "USD", BillingMode.POSTPAID, None)
    return CampaignBilling.build(new_id("cmp"), workspace_id, spec, "Europe/Berlin", advertiser)


def conversion(workspace_id: str, value: Decimal | None = None, publisher: str = "pub_1"
               ) -> ConversionInfo:  # fmt: skip
    return ConversionInfo(
        conversion_id=new_id("cnv"), workspace_id=workspace_id, event_id=new_id("evt"),
        campaign_id="cmp", publisher_id=publisher, advertiser_id="adv_1", goal_id="goal_1",
        goal_key="sale", ts=AT, value=value, currency="USD", txid=None, click_id=None,
        status="pending", data={},
    )  # fmt: skip


cents = st.integers(min_value=0, max_value=100_000).map(lambda n: Decimal(n) / 1000)
percents = st.integers(min_value=1, max_value=100).map(Decimal)
prices = st.one_of(
    cents.map(lambda a: Price(PricingModel.CPA, a)),
    percents.map(lambda p: Price(PricingModel.REVSHARE, percent=p)),
    st.tuples(cents, percents).map(lambda ap: Price(PricingModel.HYBRID, ap[0], ap[1])),
)


def can_exceed(pays: Price, earns: Price) -> bool:
    """Whether some conversion value makes the payout pass the cost (both are linear in it)."""
    return any(
        price_of(earns, "USD", Money(value, "USD")) > price_of(pays, "USD", Money(value, "USD"))
        for value in (Decimal(0), Decimal(10) ** 9)
    )


@FAST
@given(
    pays=prices,
    earns=prices,
    value=st.integers(0, 10**6).map(lambda n: Decimal(n) / 100),
    allow=st.booleans(),
)
def test_a_publisher_never_earns_more_than_the_advertiser_pays_unless_a_loss_is_allowed(
    conn: Connection, pays: Price, earns: Price, value: Decimal, allow: bool
) -> None:
    ws = workspace(conn)
    if can_exceed(pays, earns) and not allow:
        # Refused when the campaign is configured, naming the way out.
        with pytest.raises(ValidationError) as info:
            campaign(ws, pays, earns)
        assert info.value.field == "pricing" and "allow_negative_margin" in info.value.message
        return
    ctx = campaign(ws, pays, earns, allow_negative_margin=allow)
    result = charge_conversion(conn, ctx, conversion(ws, value), AT)
    assert result.outcome is ChargeOutcome.CHARGED and result.txn is not None
    amount = Money(value, "USD")
    cost = result.txn.entry_of_kind(AccountKind.ADVERTISER)
    earned = result.txn.entry_of_kind(AccountKind.PUBLISHER_PAYABLE)
    revenue = result.txn.entry_of_kind(AccountKind.PLATFORM_REVENUE)
    assert cost is not None and earned is not None and revenue is not None
    assert cost.minor == price_of(pays, "USD", amount).to_minor()
    # The publisher gets what the rule says, in full: a loss is booked, never hidden.
    assert -earned.minor == price_of(earns, "USD", amount).to_minor()
    assert revenue.minor == -earned.minor - cost.minor
    if not allow:
        assert -earned.minor <= cost.minor
    # The ledger still balances, transaction by transaction and over all accounts.
    assert sum(entry.minor for entry in result.txn.entries) == 0
    assert sum(store.all_balances(conn, ws).values()) == 0


def test_a_rule_never_checked_for_its_margin_is_capped_at_the_cost(conn: Connection) -> None:
    ws = workspace(conn)
    ctx = campaign(ws, Price(PricingModel.CPA, Decimal(5)), Price(PricingModel.CPA, Decimal(3)))
    # Pricing that bypassed the campaign's check (e.g. stored before it existed).
    loose = PricingRule(Price(PricingModel.CPA, Decimal(5)), Price(PricingModel.CPA, Decimal(7)),
                        goal_id="goal_1")  # fmt: skip
    object.__setattr__(ctx.spec, "pricing", (loose,))
    result = charge_conversion(conn, ctx, conversion(ws), AT)
    assert result.outcome is ChargeOutcome.CHARGED and result.txn is not None
    assert result.quote is not None and result.quote.uncapped_payout == Money.of("7", "USD")
    assert [entry.minor for entry in result.txn.entries] == [500, -500, 0]


@FAST
@given(
    spent=st.integers(0, 6000),
    day_count=st.integers(0, 6),
    publisher_count=st.integers(0, 3),
    cost=st.integers(0, 3000),
)
def test_the_store_decides_like_the_domain_over_the_same_counters(
    conn: Connection, spent: int, day_count: int, publisher_count: int, cost: int
) -> None:
    ws = workspace(conn)
    ctx = campaign(
        ws, Price(PricingModel.CPA, Decimal(1)), Price(PricingModel.CPA, Decimal(1)),
        daily_budget=Decimal("50.00"),
        caps=(Cap(limit=Decimal(5)), Cap(limit=Decimal(2), scope="publisher", period="week")),
    )  # fmt: skip
    spend = Spend(AT, BillableEvent.CONVERSION, Money.from_minor(cost, "USD"), "pub_1", "goal_1")
    stored = {
        CounterKey(ctx.campaign_id, "budget:day", "*", "d:2026-03-02"): spent,
        CounterKey(ctx.campaign_id, "cap:campaign:day:count", "*", "d:2026-03-02"): day_count,
        CounterKey(ctx.campaign_id, "cap:publisher:week:count", "pub_1", "w:2026-03-02"):
            publisher_count,
    }  # fmt: skip
    for key, units in stored.items():
        assert store.add_to_counter(conn, ws, key, units, None, AT)
    expected = check_spend(
        ctx.limits,
        {
            key: Decimal(units) / 100 if key.limit_id.startswith("budget") else Decimal(units)
            for key, units in stored.items()
        },
        spend,
    )
    assert decide(conn, ctx, spend) == expected


def test_a_reservation_moves_every_counter_or_none(conn: Connection) -> None:
    ws = workspace(conn)
    ctx = campaign(
        ws, Price(PricingModel.CPA, Decimal("20")), Price(PricingModel.CPA, Decimal("15")),
        daily_budget=Decimal("50.00"), caps=(Cap(limit=Decimal(5)),),
    )  # fmt: skip
    results = [charge_conversion(conn, ctx, conversion(ws), AT) for _ in range(3)]
    assert [r.outcome for r in results] == [ChargeOutcome.CHARGED, ChargeOutcome.CHARGED,
                                            ChargeOutcome.REFUSED]  # fmt: skip
    refused = results[2].decision
    assert refused is not None and refused.limit_id == "budget:day"
    keys = [
        CounterKey(ctx.campaign_id, "budget:day", "*", "d:2026-03-02"),
        CounterKey(ctx.campaign_id, "cap:campaign:day:count", "*", "d:2026-03-02"),
    ]
    # The refused conversion moved neither the budget nor the cap.
    assert store.read_counters(conn, keys) == {keys[0]: 4000, keys[1]: 2}
    # The next local day (Berlin) starts from zero.
    tomorrow = conversion(ws)
    later = replace(tomorrow, ts=AT + timedelta(hours=12))
    assert charge_conversion(conn, ctx, later, AT).outcome is ChargeOutcome.CHARGED
