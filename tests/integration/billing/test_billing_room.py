"""Budget room and approvals: over_cap accepted later, refunds giving room back, value limits,
negative margins and checked templates through the API."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from perfmark.adapters.store.schema import spend_counters
from perfmark.billing.api import build_billing_router
from perfmark.billing.domain.ledger import (
    REVENUE_ACCOUNT,
    publisher_payable_account,
    publisher_pending_account,
)
from perfmark.billing.services.schedule import run_billing_checks
from perfmark.web.app import create_app

from .helpers import BOTH_STORES, CPA, Rig

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient


@pytest.fixture
def api(rig: Rig) -> Iterator[TestClient]:
    """The whole app on the rig's store, with the demo owner's key."""
    app = create_app(rig.container)
    if not any(getattr(route, "path", "") == "/api/ledger" for route in app.routes):
        app.include_router(build_billing_router(), prefix="/api")
    with TestClient(app, base_url="http://testserver") as client:
        client.headers["Authorization"] = f"Bearer {rig.demo.api_key}"
        yield client


def counters(rig: Rig, limit_id: str) -> dict[str, int]:
    """The campaign's counters of one limit, by period bucket."""
    return {
        row["bucket"]: row["value"]
        for row in rig.rows(spend_counters)
        if row["campaign_id"] == rig.campaign_id(CPA) and row["limit_id"] == limit_id
    }


def statuses(rig: Rig) -> dict[str, str]:
    return {row["txid"]: row["status"] for row in rig.conversions()}


def ids(rig: Rig) -> dict[str, str]:
    return {row["txid"]: row["id"] for row in rig.conversions()}


def sell(rig: Rig, *txids: str) -> None:
    """One sale of 80.00 (charged 25.00 on CPA) per transaction id, then process them."""
    for txid in txids:
        rig.convert(CPA, value="80", txid=txid)
    rig.process()


def refund(rig: Rig, api: TestClient, txid: str) -> None:
    """Refund the conversion of `txid` through the API, which must accept it."""
    answer = api.post(f"/api/conversions/{ids(rig)[txid]}/refund")
    assert answer.status_code == 200, answer.text


@BOTH_STORES
def test_over_cap_conversions_are_accepted_once_there_is_room(rig: Rig, api: TestClient) -> None:
    rig.update_campaign(CPA, daily_budget="60")  # 25.00 each: two fit
    sell(rig, "O-1", "O-2", "O-3")
    assert statuses(rig) == {"O-1": "pending", "O-2": "pending", "O-3": "over_cap"}
    over = ids(rig)["O-3"]
    # Still no room: refused with the limit, and nothing is charged.
    refused = api.post("/api/conversions/accept", json={"ids": [over, "cnv_unknown"]}).json()
    assert refused["changed"] == []
    reasons = {item["id"]: item["reason"] for item in refused["refused"]}
    assert "still over_cap (over_budget by budget:day)" in reasons[over]
    assert "50.00 USD spent" in reasons[over] and "no conversion" in reasons["cnv_unknown"]
    assert statuses(rig)["O-3"] == "over_cap" and rig.charged_minor(CPA) == 5000
    # Approving it directly is not the way: the message says which statuses it may take.
    direct = api.post("/api/conversions/approve", json={"ids": [over]}).json()
    assert "allowed: pending, rejected" in direct["refused"][0]["reason"]
    # The advertiser raises the budget and accepts it: priced, reserved, pending.
    rig.update_campaign(CPA, daily_budget="100")
    rig.clock.advance(seconds=1)
    accepted = api.post("/api/conversions/accept", json={"ids": [over, ids(rig)["O-1"]]}).json()
    assert accepted == {"changed": [over], "unchanged": [ids(rig)["O-1"]], "refused": []}
    assert statuses(rig)["O-3"] == "pending" and rig.charged_minor(CPA) == 7500
    assert list(counters(rig, "budget:day").values()) == [7500]
    [row] = [row for row in rig.conversions() if row["txid"] == "O-3"]
    assert (row["data"]["cost"], row["data"]["payout"]) == ("25.00", "18.00")
    listed = api.get("/api/conversions", params={"status": "pending"}).json()["data"]
    assert [item["billing_note"] for item in listed if item["id"] == over] == [None]
    # From there on it is a normal conversion: approved, and the lake hears it once.
    assert api.post("/api/conversions/approve", json={"ids": [over]}).json()["changed"] == [over]
    rig.process()
    kinds = [item.txn.kind.value for item in rig.transactions()]
    assert kinds == ["charge", "charge", "charge"]  # no hold: the approval posts nothing


@BOTH_STORES
def test_refunds_and_rejections_give_their_room_back_once(rig: Rig, api: TestClient) -> None:
    rig.update_campaign(CPA, daily_budget="50")  # two conversions of 25.00
    sell(rig, "R-1", "R-2", "R-3")
    assert statuses(rig)["R-3"] == "over_cap"
    [day] = counters(rig, "budget:day")
    assert counters(rig, "budget:day") == {day: 5000}
    assert counters(rig, "cap:campaign:day:count") == {day: 2}
    # A day later, R-1 is refunded: the room comes back to the day it was counted in.
    rig.clock.advance(days=1)
    refund(rig, api, "R-1")
    assert counters(rig, "budget:day") == {day: 2500}
    assert counters(rig, "cap:campaign:day:count") == {day: 1}
    assert counters(rig, "budget:total") == {"total": 2500}
    # A second refund changes nothing, and releases nothing.
    refund(rig, api, "R-1")
    assert counters(rig, "budget:day") == {day: 2500}
    # The freed room takes the over-cap conversion of that day.
    accepted = api.post("/api/conversions/accept", json={"ids": [ids(rig)["R-3"]]}).json()
    assert accepted["changed"] == [ids(rig)["R-3"]]
    assert counters(rig, "budget:day") == {day: 5000}
    # A rejection by status postback releases too, once, however often it is sent.
    for _ in range(2):
        rig.clock.advance(seconds=1)
        rig.postback(CPA, goal="sale", txid="R-2", status="rejected")
        rig.process()
    assert statuses(rig) == {"R-1": "refunded", "R-2": "rejected", "R-3": "pending"}
    assert counters(rig, "budget:day") == {day: 2500}
    assert counters(rig, "cap:campaign:day:count") == {day: 1}
    assert rig.charged_minor(CPA) == 2500


def test_conversions_above_the_value_limit_wait_for_a_person(rig: Rig, api: TestClient) -> None:
    publisher = rig.publisher_id(CPA)
    pending, payable = (
        publisher_pending_account(publisher).key,
        publisher_payable_account(publisher).key,
    )
    # Without a hold period, only the large conversion's earning is held.
    rig.update_campaign(CPA, auto_approve_max_value="100")
    rig.convert(CPA, value="100", txid="V-1")
    rig.convert(CPA, value="100.01", txid="V-2")
    rig.process()
    assert (rig.balance(payable), rig.balance(pending)) == (-1800, -1800)
    rig.clock.advance(days=40)
    assert run_billing_checks(rig.container).approved == 0
    assert rig.balance(pending) == -1800
    approved = api.post("/api/conversions/approve", json={"ids": [ids(rig)["V-2"]]}).json()
    assert approved["changed"] == [ids(rig)["V-2"]]
    assert (rig.balance(payable), rig.balance(pending)) == (-3600, 0)
    # With a hold period, auto-approval after the hold stops at the limit.
    rig.update_campaign(CPA, hold_days=10)
    rig.convert(CPA, value="99", txid="V-3")
    rig.convert(CPA, value="250", txid="V-4")
    rig.process()
    assert rig.balance(pending) == -3600
    rig.clock.advance(days=11)
    # V-1 (payable from the start) becomes approved too; V-4 is above the limit.
    assert run_billing_checks(rig.container).approved == 2
    assert statuses(rig) == {"V-1": "approved", "V-2": "approved", "V-3": "approved",
                             "V-4": "pending"}  # fmt: skip
    assert (rig.balance(payable), rig.balance(pending)) == (-5400, -1800)


def test_a_negative_margin_is_refused_unless_the_campaign_allows_it(
    rig: Rig, api: TestClient
) -> None:
    campaign = api.get(f"/api/campaigns/{rig.campaign_id(CPA)}").json()
    goal = campaign["goal_ids"][0]
    loss = [{"goal_id": goal, "pays": {"model": "cpa", "amount": "25.00"},
             "earns": {"model": "cpa", "amount": "30.00"}}]  # fmt: skip
    refused = api.patch(f"/api/campaigns/{rig.campaign_id(CPA)}", json={"pricing": loss})
    assert refused.status_code == 422, refused.text
    body = refused.json()["error"]
    assert body["field"] == "pricing" and "allow_negative_margin" in body["message"]
    allowed = api.patch(f"/api/campaigns/{rig.campaign_id(CPA)}",
                        json={"pricing": loss, "allow_negative_margin": True})  # fmt: skip
    assert allowed.status_code == 200, allowed.text
    rig.convert(CPA, value="80", txid="N-1")
    rig.process()
    [charge] = rig.transactions()
    # The publisher earns 30.00 of a 25.00 charge: the 5.00 loss is booked against revenue.
    assert sorted(entry.minor for entry in charge.txn.entries) == [-3000, 500, 2500]
    assert rig.balance(REVENUE_ACCOUNT.key) == 500
    refund(rig, api, "N-1")
    assert rig.balance(REVENUE_ACCOUNT.key) == 0


def test_publisher_templates_are_checked_when_a_publisher_is_saved(api: TestClient) -> None:
    def refused(response: Any) -> str:
        assert response.status_code == 422, response.text
        body = response.json()["error"]
        assert body["field"] == "postback_url_template", body
        return str(body["message"])

    bad = {"name": "Aff", "postback_url_template": "https://aff.example/pb?c={clickid}"}
    message = refused(api.post("/api/publishers", json=bad))
    assert "unknown macro {clickid}" in message and "{click_id}" in message
    good = {"name": "Aff", "postback_url_template": "https://aff.example/pb?c={click_id}"}
    created = api.post("/api/publishers", json=good)
    assert created.status_code == 201, created.text
    url = f"/api/publishers/{created.json()['id']}"
    assert "host" in refused(
        api.patch(url, json={"postback_url_template": "https://{sub1}.example/pb"})
    )
    kept = api.get(url).json()["postback_url_template"]
    assert kept == "https://aff.example/pb?c={click_id}"


@BOTH_STORES
def test_a_refund_that_frees_todays_room_reopens_the_capped_campaign(
    rig: Rig, api: TestClient
) -> None:
    rig.update_campaign(CPA, daily_budget="50")  # two conversions of 25.00 a day
    sell(rig, "C-1", "C-2", "C-3")
    assert rig.campaign_status(CPA) == "capped"
    # Refunding one of today's conversions gives today's room back: clicks count again now,
    # not only at the next day's billing check.
    rig.clock.advance(seconds=1)
    refund(rig, api, "C-1")
    assert rig.campaign_status(CPA) == "active"
    assert rig.click(CPA).location != "https://www.northwind.example/"  # not the fallback
    sell(rig, "C-4")
    assert statuses(rig)["C-4"] == "pending"
    assert rig.campaign_status(CPA) == "capped"  # full again
    # A new day reopens it and it fills up; refunding yesterday's conversion frees yesterday.
    rig.clock.advance(days=1)
    assert run_billing_checks(rig.container).released_campaigns == (rig.campaign_id(CPA),)
    sell(rig, "D-1", "D-2")
    assert rig.campaign_status(CPA) == "capped"
    rig.clock.advance(seconds=1)
    refund(rig, api, "C-2")
    assert rig.campaign_status(CPA) == "capped"
    # Today's refund does reopen it, once; a second refund of it changes nothing.
    refund(rig, api, "D-1")
    assert rig.campaign_status(CPA) == "active"
    rig.update_campaign(CPA, status="paused")  # a person's change ...
    refund(rig, api, "D-1")
    assert rig.campaign_status(CPA) == "paused"  # ... is never undone by billing


@BOTH_STORES
def test_in_one_batch_a_refusal_after_a_refund_reopened_the_campaign_caps_it_again(
    rig: Rig,
) -> None:
    rig.update_campaign(CPA, daily_budget="60")  # 25.00 each: two fit, 10.00 left over
    clicks = {f"E-{n}": rig.click(CPA).click_id for n in range(1, 7)}  # all while active

    def sale(txid: str) -> None:
        rig.postback(CPA, click_id=clicks[txid] or "", txid=txid, value="80", goal="sale")
        rig.clock.advance(milliseconds=1)

    for txid in ("E-1", "E-2", "E-3"):
        sale(txid)
    rig.process()
    assert rig.campaign_status(CPA) == "capped"  # E-3's refusal capped it
    # One batch: a refusal while capped, a refund that reopens, a sale that fits and one
    # that does not.
    sale("E-4")
    rig.postback(CPA, txid="E-1", status="refunded", goal="sale")
    sale("E-5")
    sale("E-6")
    rig.process()
    assert statuses(rig) == {
        "E-1": "refunded", "E-2": "pending", "E-3": "over_cap", "E-4": "over_cap",
        "E-5": "pending", "E-6": "over_cap",
    }  # fmt: skip
    # The refund reopened it within the batch, and E-6's refusal caps it again.
    assert rig.campaign_status(CPA) == "capped"
