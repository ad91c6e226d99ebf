"""Postbacks on the real server: auth, replay refusal, dedupe, statuses, parameter mappings."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx

from perfmark.ingest.conversions import sign_postback

from .conftest import US, Server, click_id_of, wait_until

SHOP = "Northwind Outdoor"
APPS = "Lumen Apps"


def conversion(server: Server, txid: str) -> Any:
    rows = server.sql(
        "select status, click_id, campaign_id, value, goal_key, event_id from conversions "
        "where txid = :txid",
        txid=txid,
    )
    return rows[0] if len(rows) == 1 else rows or None


def signed(advertiser: str, secret: str, params: dict[str, str], age_s: int = 0) -> str:
    stamp = int(time.time()) - age_s
    query = urlencode({**params, "adv": advertiser, "ts": stamp})
    return f"{query}&sig={sign_postback(secret, stamp, query)}"


def test_token_and_signature_auth(server: Server, http: httpx.Client) -> None:
    advertiser, secret = server.advertiser(SHOP)
    click = click_id_of(http.get(f"/c/{server.slugs[4]}", headers=US))
    txid = f"T-{uuid.uuid4().hex[:8]}"
    ok = http.get("/postback", params={"token": secret, "click_id": click, "goal": "sale",
                                       "value": "99.50", "currency": "USD", "txid": txid})  # fmt: skip
    assert ok.status_code == 200 and ok.json()["status"] == "accepted"
    for refused, field in (
        (http.get("/postback", params={"token": "wrong", "click_id": click, "goal": "sale"}),
         "token"),
        (http.get(f"/postback?{signed(advertiser, 'wrong', {'goal': 'sale'})}"), "sig"),
        (http.get(f"/postback?{signed(advertiser, secret, {'goal': 'sale'}, age_s=301)}"), "ts"),
        (http.get(f"/postback?{signed(advertiser, secret, {'goal': 'sale'})}".replace(
            "goal=sale", "goal=lead")), "sig"),
    ):  # fmt: skip
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["field"] == field
    row = wait_until("the conversion in the store", lambda: conversion(server, txid))
    assert row[:5] == ("pending", click, server.api("GET", "/campaigns?limit=100")["data"][4]["id"],
                       99.5, "sale")  # fmt: skip


def test_replayed_signed_postback_is_counted_once(server: Server, http: httpx.Client) -> None:
    advertiser, secret = server.advertiser(SHOP)
    click = click_id_of(http.get(f"/c/{server.slugs[4]}", headers=US))
    txid = f"R-{uuid.uuid4().hex[:8]}"
    query = signed(advertiser, secret, {"click_id": click, "goal": "sale", "value": "10",
                                        "txid": txid})  # fmt: skip
    first = http.get(f"/postback?{query}").json()["event_id"]
    wait_until("the first postback processed", lambda: conversion(server, txid))
    replays = {http.get(f"/postback?{query}").json()["event_id"] for _ in range(3)}
    assert replays == {first}
    # Followed by a fresh conversion: once that is processed, the replays were too.
    marker = f"M-{uuid.uuid4().hex[:8]}"
    http.get("/postback", params={"token": secret, "goal": "lead", "txid": marker})
    wait_until("the later conversion", lambda: conversion(server, marker))
    assert server.sql("select count(*) from conversions where txid = :t", t=txid) == [(1,)]
    assert server.lake(f"select count(*) from events where event_id = '{first}'") == [(1,)]


def test_dedupe_by_transaction_id_and_status_changes(server: Server, http: httpx.Client) -> None:
    _advertiser, secret = server.advertiser(SHOP)
    click = click_id_of(http.get(f"/c/{server.slugs[2]}", headers=US))
    txid = f"S-{uuid.uuid4().hex[:8]}"

    def postback(**params: str) -> None:
        response = http.get(
            "/postback",
            params={
                "token": secret,
                "click_id": click,
                "goal": "sale",
                "txid": txid,
                **params,
            },
        )
        assert response.status_code == 200, response.text

    postback(value="40")
    postback(value="40")  # the advertiser resent it
    wait_until("the conversion", lambda: conversion(server, txid))
    postback(status="approved")
    wait_until("approved", lambda: (conversion(server, txid) or ("",))[0] == "approved")
    postback(status="refunded")
    postback(status="approved")  # refunds are final: dropped
    postback(status="pending")  # never back to pending: dropped
    marker = f"M-{uuid.uuid4().hex[:8]}"
    http.get("/postback", params={"token": secret, "goal": "lead", "txid": marker})
    wait_until("the later conversion", lambda: conversion(server, marker))
    assert conversion(server, txid)[0] == "refunded"
    changes = server.lake(
        "select previous_status, status from events where type = 'conversion_status' "
        f"and txid = '{txid}' order by ts_ms"
    )
    assert changes == [("pending", "approved"), ("approved", "refunded")]
    assert server.lake(
        f"select count(*) from events where type = 'conversion' and txid = '{txid}'"
    ) == [(1,)]


def test_tracker_style_mapping_and_mmp_install(server: Server, http: httpx.Client) -> None:
    # Lumen Apps sends `cid` and `payout` (its postback_param_map), as its tracker always did.
    _advertiser, secret = server.advertiser(APPS)
    click = click_id_of(http.get(f"/c/{server.slugs[5]}", headers=US))
    txid = f"I-{uuid.uuid4().hex[:8]}"
    response = http.get("/postback", params={"token": secret, "cid": click, "goal": "install",
                                             "payout": "1.75", "txid": txid})  # fmt: skip
    assert response.status_code == 200, response.text
    row = wait_until("the install", lambda: conversion(server, txid))
    assert (row[1], row[3], row[4]) == (click, 1.75, "install")


def test_bad_fields_are_4xx_naming_the_field(server: Server, http: httpx.Client) -> None:
    _advertiser, secret = server.advertiser(SHOP)
    for params, status, field in (
        ({"value": "1,50"}, 400, "value"),
        ({"currency": "EURO"}, 400, "currency"),
        ({"status": "paid"}, 400, "status"),
        ({"goal": "nope"}, 422, "goal"),
    ):
        response = http.get("/postback", params={"token": secret, "goal": "sale", **params})
        assert response.status_code == status
        assert response.json()["error"]["field"] == field
