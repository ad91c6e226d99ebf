"""The billing API: top-ups, balances, conversions and approvals, ledger, statements, templates."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from perfmark.billing.api import build_billing_router
from perfmark.domain.accounts import Role
from perfmark.services.accounts import create_api_key
from perfmark.web.app import create_app

from .helpers import CPA, CPC, CPI, Rig

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient


@pytest.fixture
def api(rig: Rig) -> Iterator[TestClient]:
    """The whole app on the rig's store, with the demo owner's key."""
    app = create_app(rig.container)
    if not any(getattr(route, "path", "") == "/api/ledger" for route in app.routes):
        app.include_router(build_billing_router(), prefix="/api")  # until web/app.py adds it
    with TestClient(app, base_url="http://testserver") as client:
        client.headers["Authorization"] = f"Bearer {rig.demo.api_key}"
        yield client


def error(response: Any, status: int, field: str | None = None) -> str:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    if field is not None:
        assert body["field"] == field, body
    return str(body["message"])


def test_top_ups_credit_the_balance_once_per_reference(rig: Rig, api: TestClient) -> None:
    advertiser = rig.advertiser_id(CPI)
    url = f"/api/advertisers/{advertiser}/topups"
    first = api.post(url, json={"amount": "100.00", "reference": "wire-7"})
    assert first.status_code == 201, first.text
    assert first.json()["balance"]["balance"] == {"amount": "100.00", "currency": "USD"}
    again = api.post(url, json={"amount": "100.00", "reference": "wire-7"})
    assert again.json()["replayed"] is True and again.json()["txn_id"] == first.json()["txn_id"]
    assert "already used" in error(
        api.post(url, json={"amount": "90.00", "reference": "wire-7"}), 409, "reference"
    )
    balance = api.get(f"/api/advertisers/{advertiser}/balance").json()
    assert balance["balance"]["amount"] == "100.00" and balance["billing_mode"] == "prepaid"
    assert balance["available"]["amount"] == "100.00"


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        ({"amount": "-5"}, 422, "amount", "above 0"),
        ({"amount": "0"}, 422, "amount", "above 0"),
        ({"amount": "10.005"}, 422, "amount", "decimals"),
        ({"amount": "ten"}, 422, "amount", "ten"),
        ({"amount": "5", "currency": "EUR"}, 422, "currency", "USD"),
    ],
)
def test_bad_top_ups_are_refused_naming_the_field(
    rig: Rig, api: TestClient, body: dict[str, str], status: int, field: str, words: str
) -> None:
    response = api.post(f"/api/advertisers/{rig.advertiser_id(CPI)}/topups", json=body)
    assert words in error(response, status, field)


def test_a_top_up_of_an_unknown_advertiser_is_404(api: TestClient) -> None:
    error(api.post("/api/advertisers/adv_nope/topups", json={"amount": "5"}), 404)


def test_conversions_list_filters_and_pages(rig: Rig, api: TestClient) -> None:
    rig.convert(CPA, value="10", txid="L-1")
    rig.convert(CPA, value="10", txid="L-2")
    rig.convert(CPC, value="10", txid="L-3")
    rig.process()
    everything = api.get("/api/conversions").json()["data"]
    assert [item["txid"] for item in everything] == ["L-1", "L-2", "L-3"]
    assert everything[0]["cost"] == "25.00" and everything[0]["payout"] == "18.00"
    of_cpa = api.get("/api/conversions", params={"campaign_id": rig.campaign_id(CPA)}).json()
    assert [item["txid"] for item in of_cpa["data"]] == ["L-1", "L-2"]
    page = api.get("/api/conversions", params={"limit": 2}).json()
    rest = api.get("/api/conversions", params={"cursor": page["next_cursor"]}).json()
    assert [i["txid"] for i in page["data"] + rest["data"]] == ["L-1", "L-2", "L-3"]
    assert rest["next_cursor"] is None
    assert api.get("/api/conversions", params={"status": "approved"}).json()["data"] == []
    error(api.get("/api/conversions", params={"status": "paid"}), 422, "status")


def test_bulk_approve_and_reject_say_what_changed(rig: Rig, api: TestClient) -> None:
    rig.update_campaign(CPA, hold_days=10)
    for txid in ("A-1", "A-2", "A-3"):
        rig.convert(CPA, value="10", txid=txid)
    rig.process()
    ids = [row["id"] for row in rig.conversions()]
    first = api.post("/api/conversions/approve", json={"ids": [ids[0]]}).json()
    assert first == {"changed": [ids[0]], "unchanged": [], "refused": []}
    assert api.post("/api/conversions/reject", json={"ids": [ids[1]]}).json()["changed"] == [ids[1]]
    result = api.post("/api/conversions/approve",
                      json={"ids": [ids[0], ids[1], ids[2], "cnv_unknown"]}).json()  # fmt: skip
    assert result["changed"] == [ids[2]] and result["unchanged"] == [ids[0]]
    reasons = {item["id"]: item["reason"] for item in result["refused"]}
    assert "rejected conversion cannot become approved" in reasons[ids[1]]
    assert "no conversion" in reasons["cnv_unknown"]
    statuses = {row["txid"]: row["status"] for row in rig.conversions()}
    assert statuses == {"A-1": "approved", "A-2": "rejected", "A-3": "approved"}
    ledger = api.get("/api/ledger", params={"kind": "approval"}).json()["data"]
    assert sorted(item["conversion_id"] for item in ledger) == sorted([ids[0], ids[2]])
    # The status changes reach the lake through the log, already posted: nothing twice.
    rig.process()
    kinds = sorted(item["kind"] for item in api.get("/api/ledger").json()["data"])
    assert kinds == ["approval", "approval", "charge", "charge", "charge", "reversal"]


def test_refunds(rig: Rig, api: TestClient) -> None:
    assert "no conversion" in error(api.post("/api/conversions/cnv_nope/refund"), 404)
    rig.convert(CPA, value="10", txid="F-1")
    rig.process()
    [row] = rig.conversions()
    refunded = api.post(f"/api/conversions/{row['id']}/refund")
    assert refunded.status_code == 200 and refunded.json()["status"] == "refunded"
    again = api.post(f"/api/conversions/{row['id']}/refund")
    assert again.status_code == 200  # a retry changes nothing
    entries = api.get("/api/ledger", params={"conversion_id": row["id"]}).json()["data"]
    assert [item["kind"] for item in entries] == ["charge", "reversal"]
    assert rig.charged_minor(CPA) == 0


def test_ledger_pages_and_portal_keys_cannot_read_it(rig: Rig, api: TestClient) -> None:
    rig.clicks(CPC, 3)
    rig.process()
    rig.clock.advance(seconds=1)
    rig.clicks(CPC, 2)
    rig.process()
    page = api.get("/api/ledger", params={"limit": 1}).json()
    assert [item["quantity"] for item in page["data"]] == [3]
    [charge] = page["data"]
    assert sum(entry["minor"] for entry in charge["entries"]) == 0
    rest = api.get("/api/ledger", params={"cursor": page["next_cursor"]}).json()
    assert [item["quantity"] for item in rest["data"]] == [2]
    key = create_api_key(rig.container, rig.owner, "portal", Role.ADVERTISER,
                         advertiser_id=rig.advertiser_id(CPC))  # fmt: skip
    portal = api.get("/api/ledger", headers={"Authorization": f"Bearer {key.secret}"})
    error(portal, 403)
    denied = api.post(f"/api/advertisers/{rig.advertiser_id(CPC)}/topups", json={"amount": "5"},
                      headers={"Authorization": f"Bearer {key.secret}"})  # fmt: skip
    error(denied, 403)


def test_invoices_and_statements(rig: Rig, api: TestClient) -> None:
    start = rig.clock.now().isoformat()
    rig.convert(CPA, value="10", txid="I-1")
    rig.clicks(CPC, 2)
    rig.process()
    rig.clock.advance(days=1)
    end = rig.clock.now().isoformat()
    advertiser = rig.advertiser_id(CPA)
    future = api.post("/api/invoices", json={"advertiser_id": advertiser, "period_start": start,
                                             "period_end": "2030-01-01T00:00:00Z"})  # fmt: skip
    assert "future" in error(future, 422, "period_end")
    issued = api.post("/api/invoices",
                      json={"advertiser_id": advertiser, "period_start": start,
                            "period_end": end})  # fmt: skip
    assert issued.status_code == 201, issued.text
    invoice = issued.json()
    assert invoice["number"] == "INV-2026-000001" and invoice["intact"] is True
    assert invoice["totals"] == [{"amount": "26.60", "currency": "USD"}]  # 25.00 + 2 x 0.80
    overlap = api.post("/api/invoices", json={"advertiser_id": advertiser, "period_start": start,
                                              "period_end": end})  # fmt: skip
    error(overlap, 409, "period_start")
    csv_text = api.get(f"/api/invoices/{invoice['id']}.csv").text
    assert csv_text.startswith("number,kind,party_id") and "INV-2026-000001" in csv_text
    assert api.get(f"/api/invoices/{invoice['id']}", params={"format": "csv"}).text == csv_text
    html = api.get(f"/api/invoices/{invoice['id']}.html")
    assert html.headers["content-type"].startswith("text/html")
    assert "INV-2026-000001" in html.text and "26.60" in html.text
    listed = api.get("/api/invoices").json()["data"]
    assert [item["id"] for item in listed] == [invoice["id"]]
    publisher = rig.publisher_id(CPA)
    late = api.post(
        "/api/statements",
        json={
            "publisher_id": publisher,
            "period_start": end,
            "period_end": end.replace("01-02", "01-02"),
        },
    )
    error(late, 422, "period_end")
    statement = api.post(
        "/api/statements",
        json={"publisher_id": publisher, "period_start": start, "period_end": end},
    )
    assert statement.status_code == 201, statement.text
    body = statement.json()
    assert body["number"] == "PAY-2026-000001"
    assert body["amount_due"] == [{"amount": "18.00", "currency": "USD"}]
    assert len(body["payout_txn_ids"]) == 1
    assert api.get(f"/api/statements/{body['id']}").json()["number"] == "PAY-2026-000001"
    error(api.get(f"/api/invoices/{body['id']}"), 404)


def test_a_first_statement_must_cover_the_earliest_earnings(rig: Rig, api: TestClient) -> None:
    rig.convert(CPA, value="10", txid="W-1")
    rig.process()
    rig.clock.advance(days=2)
    later = rig.clock.now()
    response = api.post("/api/statements", json={
        "publisher_id": rig.publisher_id(CPA),
        "period_start": (later - timedelta(days=1)).isoformat(),
        "period_end": later.isoformat(),
    })  # fmt: skip
    assert "first payout statement" in error(response, 422, "period_start")


def test_postback_templates_are_checked_and_deliveries_listed(rig: Rig, api: TestClient) -> None:
    publisher = rig.publisher_id(CPA)
    url = f"/api/publishers/{publisher}/postback_template"
    bad = api.put(url, json={"template": "https://aff.example/pb?c={click_id}&x={payot}"})
    assert "{payot}" in error(bad, 422, "postback_url_template")
    host = api.put(url, json={"template": "https://{sub1}.example/pb"})
    assert "host" in error(host, 422, "postback_url_template")
    good = api.put(url, json={"template": "https://aff.example/pb?c={click_id}&p={payout}"})
    assert good.status_code == 200, good.text
    click = rig.click(CPA)
    rig.postback(CPA, click_id=click.click_id or "", goal="sale", value="10", txid="D-1")
    rig.process()
    [delivery] = api.get("/api/postbacks/deliveries").json()["data"]
    assert delivery["url"] == f"https://aff.example/pb?c={click.click_id}&p=18.00"
    assert (delivery["status"], delivery["topic"], delivery["method"]) == (
        "pending", "conversion.created", "GET",
    )  # fmt: skip
    error(api.post(f"/api/postbacks/deliveries/{delivery['id']}/requeue"), 409)


def test_portal_keys_see_only_their_own_money(rig: Rig, api: TestClient) -> None:
    rig.convert(CPA, value="10", txid="Q-1")
    rig.process()
    advertiser, publisher = rig.advertiser_id(CPA), rig.publisher_id(CPA)
    own = create_api_key(rig.container, rig.owner, "adv", Role.ADVERTISER,
                         advertiser_id=advertiser).secret  # fmt: skip
    other = create_api_key(rig.container, rig.owner, "other", Role.ADVERTISER,
                           advertiser_id=rig.advertiser_id(CPI)).secret  # fmt: skip
    earner = create_api_key(rig.container, rig.owner, "pub", Role.PUBLISHER,
                            publisher_id=publisher).secret  # fmt: skip

    def as_(key: str, path: str) -> Any:
        return api.get(path, headers={"Authorization": f"Bearer {key}"})

    assert as_(own, f"/api/advertisers/{advertiser}/balance").status_code == 200
    error(as_(other, f"/api/advertisers/{advertiser}/balance"), 404)
    error(as_(earner, f"/api/advertisers/{advertiser}/balance"), 404)
    assert [c["txid"] for c in as_(own, "/api/conversions").json()["data"]] == ["Q-1"]
    assert as_(other, "/api/conversions").json()["data"] == []
    assert [c["txid"] for c in as_(earner, "/api/conversions").json()["data"]] == ["Q-1"]
    rig.clock.advance(days=1)
    start = (rig.clock.now() - timedelta(days=2)).isoformat()
    invoice = api.post(
        "/api/invoices",
        json={
            "advertiser_id": advertiser,
            "period_start": start,
            "period_end": rig.clock.now().isoformat(),
        },
    ).json()
    assert as_(own, f"/api/invoices/{invoice['id']}").status_code == 200
    error(as_(earner, f"/api/invoices/{invoice['id']}"), 404)
    error(as_(other, f"/api/invoices/{invoice['id']}"), 404)
    assert as_(earner, "/api/invoices").json()["data"] == []
