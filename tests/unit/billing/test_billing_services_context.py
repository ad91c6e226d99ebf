"""How a campaign's settings become billing limits, counter units, funds and access scopes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.schema import workspaces
from perfmark.billing.domain.budgets import CapScope, LimitPeriod
from perfmark.billing.services.access import Scope, scope_of
from perfmark.billing.services.context import (
    AdvertiserBilling,
    BillingConfig,
    CampaignBilling,
    cap_id_of,
    limits_of,
)
from perfmark.domain.accounts import Role
from perfmark.domain.campaigns import CampaignSpec, Cap
from perfmark.domain.parties import BillingMode
from perfmark.errors import ForbiddenError
from perfmark.money import Money
from perfmark.services.container import Container, Principal
from perfmark.services.demo import seed_demo


def spec(**changes: object) -> CampaignSpec:
    values: dict[str, object] = {
        "name": "c", "advertiser_id": "adv_1", "offer_id": "off_1", "goal_ids": ("goal_1",),
        "currency": "USD", "daily_budget": Decimal("50.005"), "total_budget": Decimal("900"),
        "caps": (
            Cap(limit=Decimal("10")),
            Cap(limit=Decimal("3"), scope="publisher", period="week"),
            Cap(limit=Decimal("12.50"), scope="goal", metric="money", goal_id="goal_1"),
            Cap(limit=Decimal("4")),
        ),
    }  # fmt: skip
    values.update(changes)
    return CampaignSpec(**values)  # type: ignore[arg-type]


POSTPAID = AdvertiserBilling("adv_1", "USD", BillingMode.POSTPAID, None)


def test_budgets_and_caps_become_domain_limits_with_stable_ids() -> None:
    limits = limits_of("cmp_1", spec(), "Europe/Berlin")
    assert [(b.limit_id, b.amount) for b in limits.budgets] == [
        ("budget:day", Money.of("50.005", "USD")), ("budget:total", Money.of("900", "USD")),
    ]  # fmt: skip
    assert [cap.cap_id for cap in limits.caps] == [
        "cap:campaign:day:count", "cap:publisher:week:count", "cap:goal:day:money:goal_1",
        "cap:campaign:day:count#2",
    ]  # fmt: skip
    assert limits.caps[1].scope is CapScope.PUBLISHER
    assert limits.caps[1].period is LimitPeriod.WEEK
    # The same settings give the same ids, so a counter survives an unrelated edit.
    again = limits_of("cmp_1", spec(name="renamed"), "Europe/Berlin")
    assert [c.cap_id for c in again.caps] == [c.cap_id for c in limits.caps]


def test_a_cap_id_never_repeats() -> None:
    taken: set[str] = set()
    ids = [cap_id_of(Cap(limit=Decimal(1)), taken) for _ in range(3)]
    assert ids == ["cap:campaign:day:count", "cap:campaign:day:count#2",
                   "cap:campaign:day:count#3"]  # fmt: skip


def test_counter_units_are_minor_units_for_money_and_counts_for_counts() -> None:
    ctx = CampaignBilling.build("cmp_1", "ws_1", spec(), "UTC", POSTPAID)
    # 50.005 USD has no whole-cent ceiling above 5000: the limit is rounded down, never up.
    assert ctx.limit_table["budget:day"] == (LimitPeriod.DAY, 5000, True)
    assert ctx.limit_table["cap:goal:day:money:goal_1"] == (LimitPeriod.DAY, 1250, True)
    assert ctx.limit_table["cap:campaign:day:count"] == (LimitPeriod.DAY, 10, False)
    assert ctx.to_units("budget:day", Decimal("12.34")) == 1234
    assert ctx.from_units("budget:day", 1234) == Decimal("12.34")
    assert ctx.to_units("cap:campaign:day:count", Decimal(2)) == 2
    assert ctx.campaign_wide == {"budget:day", "budget:total", "cap:campaign:day:count",
                                 "cap:campaign:day:count#2"}  # fmt: skip
    assert not ctx.holds_earnings and ctx.policy.hold_days == 0
    held = CampaignBilling.build("cmp_1", "ws_1", spec(hold_days=7), "UTC", POSTPAID)
    assert held.holds_earnings and held.policy.hold_days == 7


@pytest.mark.parametrize(
    ("mode", "credit", "account_minor", "available"),
    [
        (BillingMode.PREPAID, None, -1000, "10.00"),  # 10.00 prepaid left
        (BillingMode.PREPAID, None, 0, "0.00"),  # nothing left: pause
        (BillingMode.PREPAID, Decimal("5.009"), 200, "3.00"),  # owes 2.00 of 5.00 credit
        (BillingMode.POSTPAID, Decimal("100"), 2500, "75.00"),
        (BillingMode.POSTPAID, None, 99_999, None),  # never refused for funds
    ],
)
def test_funds_follow_the_billing_mode_and_credit_limit(
    mode: BillingMode, credit: Decimal | None, account_minor: int, available: str | None
) -> None:
    advertiser = AdvertiserBilling("adv_1", "USD", mode, credit)
    funds = advertiser.funds(account_minor)
    if available is None:
        assert funds is None and not advertiser.funds_checked
    else:
        assert funds is not None and funds.available == Money.of(available, "USD")


def test_portal_keys_are_scoped_to_their_party() -> None:
    assert scope_of(Principal("ws", Role.ANALYST)) == Scope()
    mine = scope_of(Principal("ws", Role.ADVERTISER, advertiser_id="adv_1"))
    assert mine.allows("adv_1", None) and not mine.allows("adv_2", None)
    publisher = scope_of(Principal("ws", Role.PUBLISHER, publisher_id="pub_1"))
    assert publisher.allows(None, "pub_1") and not publisher.allows(None, "pub_2")
    with pytest.raises(ForbiddenError):
        scope_of(Principal("ws", Role.PUBLISHER))


def test_a_workspace_that_no_longer_loads_bills_in_utc_instead_of_stopping_the_batch(
    container: Container, caplog: Any
) -> None:
    demo = seed_demo(container)
    with transaction(container.engine) as conn:
        query = select(workspaces.c.data).where(workspaces.c.id == demo.workspace_id)
        stored = dict(conn.execute(query).scalar_one())
        assert BillingConfig(conn).time_zone(demo.workspace_id) == stored["timezone"]
        stored["timezone"] = "Mars/Olympus_Mons"  # as if stored before the check existed
        conn.execute(
            update(workspaces).where(workspaces.c.id == demo.workspace_id).values(data=stored)
        )
        assert BillingConfig(conn).time_zone(demo.workspace_id) == "UTC"
        # The campaign's limits are built in UTC, not refused.
        campaign = BillingConfig(conn).campaign(demo.workspace_id, demo.campaigns[0].id)
        assert campaign is not None and campaign.limits.time_zone == "UTC"
    assert f"workspace {demo.workspace_id} cannot be loaded for billing" in caplog.text
