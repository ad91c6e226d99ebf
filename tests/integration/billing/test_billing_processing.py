"""The processor's billing step: charges, budgets and caps, funds, statuses, redo after a crash."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from perfmark.adapters.lake import events_glob
from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.schema import billed_events
from perfmark.billing import store
from perfmark.billing.domain.ledger import (
    REVENUE_ACCOUNT,
    advertiser_account,
    publisher_payable_account,
    publisher_pending_account,
)
from perfmark.billing.domain.pricing import ExchangeRate
from perfmark.billing.services import funds
from perfmark.billing.services.events import BILLING_KEY
from perfmark.billing.services.schedule import run_billing_checks
from perfmark.costs.services import add_rates
from perfmark.domain.events import TrackedEvent
from perfmark.settings import lake_directory
from perfmark.workers.processor import Processor

from .helpers import (
    BOTH_STORES,
    CPA,
    CPC,
    CPI,
    CPM,
    REVSHARE,
    Rig,
)


def lake(rig: Rig) -> list[dict[str, Any]]:
    root = lake_directory(rig.container.settings)
    if not list(Path(root).glob("events/*/*/*.parquet")):
        return []
    relation = duckdb.sql(
        f"select * from read_parquet('{events_glob(root)}', union_by_name=true) "
        "order by ts_ms, event_id"
    )
    return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


def kinds(rig: Rig) -> list[tuple[str, str, int]]:
    return [(t.txn.kind.value, t.txn.event.value if t.txn.event else "", t.txn.quantity)
            for t in rig.transactions()]  # fmt: skip


@BOTH_STORES
def test_a_cpa_conversion_is_charged_once_and_the_lake_says_what_was_charged(rig: Rig) -> None:
    rig.convert(CPA, value="80", txid="T-1")
    rig.process()
    rig.postback(CPA, goal="sale", value="80", txid="T-1")  # resent: a duplicate
    rig.process()
    assert kinds(rig) == [("charge", "conversion", 1)]
    advertiser, publisher = rig.advertiser_id(CPA), rig.publisher_id(CPA)
    assert rig.balance(advertiser_account(advertiser).key) == 2500
    assert rig.balance(publisher_payable_account(publisher).key) == -1800
    assert rig.balance(REVENUE_ACCOUNT.key) == -700
    [row] = rig.conversions()
    assert row["status"] == "pending"
    [conversion] = [event for event in lake(rig) if event["type"] == "conversion"]
    assert (conversion["cost"], conversion["payout"]) == ("25.00", "18.00")


def test_clicks_are_charged_per_batch_and_never_twice(rig: Rig) -> None:
    rig.clicks(CPC, 5)
    rig.process()
    rig.clock.advance(seconds=1)  # postings are listed in time order
    rig.clicks(CPC, 2)
    rig.process()
    assert kinds(rig) == [("charge", "click", 5), ("charge", "click", 2)]
    assert rig.charged_minor(CPC) == 7 * 80
    assert rig.balance(publisher_payable_account(rig.publisher_id(CPC)).key) == -7 * 60
    assert len(rig.rows(billed_events)) == 7
    rig.process()
    assert len(rig.transactions()) == 2


def test_impressions_are_rounded_once_per_batch_half_even(rig: Rig) -> None:
    rig.impressions(CPM, 7)  # 7 x 6.00/1000 = 0.042 -> 0.04; payout 7 x 0.0045 = 0.0315 -> 0.03
    rig.process()
    [charge] = rig.transactions()
    assert charge.txn.quantity == 7
    assert sorted(e.minor for e in charge.txn.entries) == [-3, -1, 4]


def test_a_batch_redone_after_a_crash_posts_nothing_twice(rig: Rig) -> None:
    rig.clicks(CPC, 3)
    rig.convert(CPA, value="80", txid="C-1")
    first = Processor(rig.container, count=rig.count)

    class Crash(BaseException):
        pass

    def die(*_args: Any, **_kwargs: Any) -> Any:
        raise Crash

    first.reader.save_checkpoint = die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        first.process_batch()
    committed = [item.txn.txn_id for item in rig.transactions()]
    assert len(committed) == 2  # the store committed before the crash
    [before] = rig.conversions()
    # The redo asks once which of the batch's conversions have ledger history.
    ws, conversion_id = rig.workspace_id, before["id"]
    with transaction(rig.container.engine) as conn:
        asked = [(ws, conversion_id), (ws, "cnv_never_posted"), ("ws_other", conversion_id)]
        assert store.conversions_with_transactions(conn, asked) == {(ws, conversion_id)}
    rig.process()  # a new processor redoes the batch
    assert [item.txn.txn_id for item in rig.transactions()] == committed
    # The conversion as the first run left it: charged once, no billing error on it.
    [after] = rig.conversions()
    assert after["data"] == before["data"] and after["data"].get(BILLING_KEY) is None
    events = lake(rig)
    # Three CPC clicks, the CPA campaign's click (no click price) and its conversion.
    assert sorted((e["type"], str(e["cost"])) for e in events) == [
        ("click", "0.80"), ("click", "0.80"), ("click", "0.80"), ("click", "None"),
        ("conversion", "25.00"),
    ]  # fmt: skip


@BOTH_STORES
def test_conversions_past_the_daily_budget_are_over_cap_and_the_campaign_is_capped(
    rig: Rig,
) -> None:
    rig.update_campaign(CPA, daily_budget="60")
    for index in range(3):
        rig.convert(CPA, value="80", txid=f"B-{index}")
    rig.process()
    statuses = [row["status"] for row in rig.conversions()]
    assert statuses == ["pending", "pending", "over_cap"]
    assert rig.charged_minor(CPA) == 5000
    over = rig.conversions()[2]
    assert over["data"]["_billing"]["verdict"] == "over_budget"
    assert over["data"]["_billing"]["limit"] == "budget:day"
    assert rig.campaign_status(CPA) == "capped"
    outcome = rig.click(CPA)
    assert outcome.status == 302 and outcome.location == "https://www.northwind.example/"
    assert [e["status"] for e in lake(rig) if e["type"] == "conversion"][-1] == "over_cap"
    # A new day: the campaign runs again, and its counter starts from zero.
    run_billing_checks(rig.container)
    assert rig.campaign_status(CPA) == "capped"
    rig.clock.advance(days=1)
    assert run_billing_checks(rig.container).released_campaigns == (rig.campaign_id(CPA),)
    assert rig.campaign_status(CPA) == "active"
    rig.convert(CPA, value="80", txid="B-next")
    rig.process()
    assert rig.conversions()[-1]["status"] == "pending"


def test_a_publisher_cap_refuses_conversions_without_capping_the_campaign(rig: Rig) -> None:
    rig.update_campaign(CPA, caps=[{"limit": "1", "scope": "publisher", "period": "day"}])
    rig.convert(CPA, txid="P-1", value="5")
    rig.convert(CPA, txid="P-2", value="5")
    rig.process()
    assert [row["status"] for row in rig.conversions()] == ["pending", "over_cap"]
    assert rig.conversions()[1]["data"]["_billing"]["verdict"] == "over_cap"
    assert rig.campaign_status(CPA) == "active"


def test_clicks_past_the_budget_are_recorded_but_not_billed(rig: Rig) -> None:
    rig.update_campaign(CPC, daily_budget="2.00")
    rig.clicks(CPC, 5)
    rig.process()
    [charge] = rig.transactions()
    assert charge.txn.quantity == 2 and rig.charged_minor(CPC) == 160
    billed = rig.rows(billed_events)
    assert sorted(row["txn_id"] is None for row in billed) == [False, False, True, True, True]
    clicks = [e for e in lake(rig) if e["type"] == "click"]
    assert [(e["cost"], e["status"]) for e in clicks] == [("0.80", None)] * 2 + [
        (None, "over_cap")
    ] * 3
    assert rig.campaign_status(CPC) == "capped"


@BOTH_STORES
def test_prepaid_funds_pause_at_zero_and_a_top_up_resumes(rig: Rig) -> None:
    rig.convert(CPI, txid="I-0")
    rig.process()
    [row] = rig.conversions()
    assert row["status"] == "over_cap"
    assert row["data"]["_billing"]["verdict"] == "insufficient_funds"
    assert rig.campaign_status(CPI) == "paused"
    result = funds.top_up(rig.container, rig.owner, rig.advertiser_id(CPI), "10.00",
                          reference="wire-1")  # fmt: skip
    assert result.released_campaigns == (rig.campaign_id(CPI),)
    assert rig.campaign_status(CPI) == "active"
    for index in range(4):  # 4 x 2.50 = 10.00: exactly the balance
        rig.convert(CPI, txid=f"I-{index + 1}")
    rig.process()
    assert [row["status"] for row in rig.conversions()].count("pending") == 4
    balance = funds.balance_of(rig.container, rig.owner, rig.advertiser_id(CPI))
    assert balance.balance.amount == 0 and balance.available is not None
    assert rig.campaign_status(CPI) == "paused"


def test_a_credit_limit_lets_a_prepaid_advertiser_go_below_zero(rig: Rig) -> None:
    rig.update_advertiser(CPI, credit_limit="5")
    for index in range(3):  # 7.50 > 5.00: the third is refused
        rig.convert(CPI, txid=f"K-{index}")
    rig.process()
    assert [row["status"] for row in rig.conversions()] == ["pending", "pending", "over_cap"]
    balance = funds.balance_of(rig.container, rig.owner, rig.advertiser_id(CPI))
    assert balance.balance.amount == Decimal("-5.00")


@BOTH_STORES
def test_status_postbacks_approve_and_reverse(rig: Rig) -> None:
    rig.update_campaign(CPA, hold_days=30)
    rig.convert(CPA, value="50", txid="S-1")
    rig.process()
    publisher = rig.publisher_id(CPA)
    assert rig.balance(publisher_pending_account(publisher).key) == -1800
    rig.clock.advance(seconds=1)
    rig.postback(CPA, goal="sale", txid="S-1", status="approved")
    rig.process()
    assert rig.balance(publisher_pending_account(publisher).key) == 0
    assert rig.balance(publisher_payable_account(publisher).key) == -1800
    rig.clock.advance(seconds=1)
    rig.postback(CPA, goal="sale", txid="S-1", status="refunded")
    rig.process()
    assert kinds(rig) == [("charge", "conversion", 1), ("approval", "conversion", 1),
                          ("reversal", "conversion", 1)]  # fmt: skip
    assert rig.balance(publisher_payable_account(publisher).key) == 0
    assert rig.balance(advertiser_account(rig.advertiser_id(CPA)).key) == 0
    assert rig.balance(REVENUE_ACCOUNT.key) == 0


def test_a_rejected_conversion_approved_again_is_charged_again(rig: Rig) -> None:
    rig.convert(CPA, value="50", txid="R-1")
    rig.process()
    rig.clock.advance(seconds=1)
    rig.postback(CPA, goal="sale", txid="R-1", status="rejected")
    rig.process()
    rig.clock.advance(seconds=1)
    rig.postback(CPA, goal="sale", txid="R-1", status="approved")
    rig.process()
    assert [item.txn.kind.value for item in rig.transactions()] == [
        "charge", "reversal", "charge",
    ]  # fmt: skip
    assert [item.txn.reference for item in rig.transactions()][2].endswith(":2")
    assert rig.charged_minor(CPA) == 2500


def test_payout_tiers_follow_the_monthly_volume(rig: Rig) -> None:
    campaign = rig.demo.campaigns[CPA].spec
    goal = campaign.goal_ids[0]
    rig.update_campaign(
        CPA,
        pricing=[
            {
                "pays": {"model": "cpa", "amount": "25.00"},
                "earns": {"model": "cpa", "amount": "18.00"},
                "goal_id": goal,
                "tiers": [{"min_monthly_conversions": 3,
                           "earns": {"model": "cpa", "amount": "20.00"}}],
            }
        ],
    )  # fmt: skip
    for index in range(4):
        rig.convert(CPA, txid=f"V-{index}", value="1")
    rig.process()
    payouts = [row["data"]["payout"] for row in rig.conversions()]
    assert payouts == ["18.00", "18.00", "20.00", "20.00"]


def test_a_value_in_another_currency_is_converted_at_the_rate_of_its_time(rig: Rig) -> None:
    rig.clock.advance(hours=1)
    rate_from = rig.clock.now() - timedelta(minutes=30)
    add_rates(rig.container, rig.owner, [ExchangeRate("EUR", "USD", Decimal("1.10"), rate_from)])
    rig.convert(REVSHARE, value="100", currency="EUR", txid="E-1")
    rig.process()
    [row] = rig.conversions()
    # 12% of 110.00 USD = 13.20 charged; 8% = 8.80 earned.
    assert (row["data"]["cost"], row["data"]["payout"]) == ("13.20", "8.80")
    assert rig.charged_minor(REVSHARE) == 1320


def test_a_missing_rate_is_a_recorded_billing_error_not_a_silent_loss(rig: Rig) -> None:
    rig.convert(REVSHARE, value="100", currency="GBP", txid="G-1")
    rig.process()
    [row] = rig.conversions()
    assert row["status"] == "pending"
    assert row["data"]["_billing"]["verdict"] == "failed"
    assert "GBP" in row["data"]["_billing"]["message"]
    assert rig.transactions() == []


def test_auto_approval_after_the_hold_period(rig: Rig) -> None:
    rig.update_campaign(CPA, hold_days=2)
    rig.convert(CPA, value="50", txid="H-1")
    rig.process()
    emitted: list[TrackedEvent] = []
    rig.clock.advance(days=1)
    assert run_billing_checks(rig.container, emit=emitted.append).approved == 0
    rig.clock.advance(days=1, seconds=1)
    assert run_billing_checks(rig.container, emit=emitted.append).approved == 1
    assert rig.conversions()[0]["status"] == "approved"
    [event] = emitted
    assert (event.type, event.previous_status, event.status) == (
        "conversion_status", "pending", "approved",
    )  # fmt: skip
    assert kinds(rig)[-1] == ("approval", "conversion", 1)
