"""Conversions: postback authentication (token, HMAC), parameter mappings, validation, pixel."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

import pytest

from perfmark.domain.events import DropReason
from perfmark.ingest.conversions import sign_postback

from .helpers import (
    ADVERTISER,
    GOALS,
    MMP_ADVERTISER,
    MMP_SECRET,
    SECRET,
    WORKSPACE,
    WRITE_KEY,
    Rig,
    RigFactory,
)

CLICK = "clk_01kdvdna00m3e9d1yz096zzreb"


def now_s(rig: Rig) -> int:
    return int(rig.clock.now().timestamp())


def signed(rig: Rig, params: dict[str, str], secret: str = SECRET, ts: int | None = None) -> str:
    """A query string signed the documented way (ts and adv inside the signed query)."""
    stamp = now_s(rig) if ts is None else ts
    query = urlencode({**params, "adv": ADVERTISER, "ts": str(stamp)})
    return f"{query}&sig={sign_postback(secret, stamp, query)}"


def test_signature_is_hmac_sha256_of_ts_query_and_body() -> None:
    expected = hmac.new(b"s", b"1700000000\na=1&b=2\nBODY", hashlib.sha256).hexdigest()
    assert sign_postback("s", 1700000000, "a=1&b=2", b"BODY") == expected


def test_token_postback_is_logged_with_its_fields(rig: Rig) -> None:
    query = urlencode(
        {"token": SECRET, "click_id": CLICK, "goal": "sale", "value": "99.50",
         "currency": "eur", "txid": "T-1", "status": "Approved"}
    )  # fmt: skip
    response = rig.get(f"/postback?{query}")
    assert response.status_code == 200, response.text
    [event] = rig.events()
    assert response.json() == {"status": "accepted", "event_id": event.event_id}
    assert (event.type, event.workspace_id, event.advertiser_id) == (
        "conversion", WORKSPACE, ADVERTISER,
    )  # fmt: skip
    assert (event.click_id, event.goal_id, event.goal_key) == (CLICK, GOALS["sale"].goal_id, "sale")
    assert (event.value, event.currency, event.txid, event.status) == (
        "99.50", "EUR", "T-1", "approved",
    )  # fmt: skip
    assert event.source == "postback" and event.event_id.startswith("cnv_")
    assert rig.counts == [("conversion", None)]


def test_goal_default_value_and_currency_apply_when_not_sent(rig: Rig) -> None:
    assert rig.get(f"/postback?token={SECRET}&click_id={CLICK}&goal=lead").status_code == 200
    [event] = rig.events()
    assert (event.value, event.currency, event.status) == ("4.00", "USD", "pending")


def test_unknown_token_is_refused(rig: Rig) -> None:
    response = rig.get(f"/postback?token=nope&click_id={CLICK}&goal=sale")
    assert response.status_code == 401
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("bad_signature", "token")
    assert rig.events() == [] and rig.drops() == [DropReason.BAD_SIGNATURE]


def test_missing_credentials_are_refused(rig: Rig) -> None:
    response = rig.get(f"/postback?click_id={CLICK}&goal=sale")
    assert response.status_code == 401 and rig.events() == []


def test_valid_hmac_signature_in_the_query_is_accepted(rig: Rig) -> None:
    response = rig.get(f"/postback?{signed(rig, {'click_id': CLICK, 'goal': 'sale'})}")
    assert response.status_code == 200, response.text
    [event] = rig.events()
    assert event.advertiser_id == ADVERTISER and event.event_id.startswith("evt_s")


def test_valid_hmac_signature_in_headers_with_a_form_body(rig: Rig) -> None:
    stamp = now_s(rig)
    body = urlencode({"click_id": CLICK, "goal": "sale", "value": "10"}).encode()
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-perfmark-signature": sign_postback(SECRET, stamp, "", body),
        "x-perfmark-timestamp": str(stamp),
        "x-perfmark-advertiser": ADVERTISER,
    }
    response = rig.request("POST", "/postback", content=body, headers=headers)
    assert response.status_code == 200, response.text
    [event] = rig.events()
    assert (event.click_id, event.value) == (CLICK, "10")
    tampered = body.replace(b"value=10", b"value=99")
    assert rig.request("POST", "/postback", content=tampered, headers=headers).status_code == 401


def test_wrong_secret_is_refused(rig: Rig) -> None:
    response = rig.get(f"/postback?{signed(rig, {'click_id': CLICK, 'goal': 'sale'}, 'wrong')}")
    assert response.status_code == 401
    assert response.json()["error"]["field"] == "sig"
    assert rig.events() == [] and rig.drops() == [DropReason.BAD_SIGNATURE]


def test_tampered_query_is_refused(rig: Rig) -> None:
    query = signed(rig, {"click_id": CLICK, "goal": "sale", "value": "10"})
    for tampered in (
        query.replace("value=10", "value=1000"),
        query + "&status=approved",
        query.replace(f"adv={ADVERTISER}", f"adv={MMP_ADVERTISER}"),
    ):
        assert rig.get(f"/postback?{tampered}").status_code == 401
    assert rig.events() == []


@pytest.mark.parametrize(("age", "accepted"), [(0, True), (300, True), (301, False),
                                               (-300, True), (-301, False), (86400, False)])  # fmt: skip
def test_signature_timestamps_older_than_the_limit_are_refused(
    rig: Rig, age: int, accepted: bool
) -> None:
    query = signed(rig, {"click_id": CLICK, "goal": "sale"}, ts=now_s(rig) - age)
    response = rig.get(f"/postback?{query}")
    assert response.status_code == (200 if accepted else 401)
    if not accepted:
        assert response.json()["error"]["field"] == "ts"


def test_the_age_limit_is_the_postback_max_age_seconds_setting(make_rig: RigFactory) -> None:
    rig = make_rig(postback_max_age_seconds=60)
    assert rig.get(f"/postback?{signed(rig, {'goal': 'sale'}, ts=now_s(rig) - 60)}").is_success
    refused = rig.get(f"/postback?{signed(rig, {'goal': 'sale'}, ts=now_s(rig) - 61)}")
    assert refused.status_code == 401


def test_bad_timestamp_and_unknown_advertiser_are_refused(rig: Rig) -> None:
    query = urlencode({"goal": "sale", "adv": ADVERTISER, "ts": "yesterday", "sig": "00"})
    assert rig.get(f"/postback?{query}").json()["error"]["field"] == "ts"
    stamp = now_s(rig)
    query = urlencode({"goal": "sale", "adv": "adv_nobody", "ts": stamp})
    response = rig.get(f"/postback?{query}&sig={sign_postback(SECRET, stamp, query)}")
    assert response.status_code == 401 and response.json()["error"]["field"] == "adv"


def test_a_replayed_signed_postback_gets_the_same_event_id(rig: Rig) -> None:
    query = signed(rig, {"click_id": CLICK, "goal": "sale", "value": "5"})
    first = rig.get(f"/postback?{query}").json()["event_id"]
    rig.clock.advance(seconds=100)  # still inside the 300 s window
    second = rig.get(f"/postback?{query}").json()["event_id"]
    assert first == second
    assert [event.event_id for event in rig.events()] == [first, first]


def test_tracker_style_parameter_names_are_mapped(make_rig: RigFactory) -> None:
    from dataclasses import replace

    from .helpers import snapshot

    config = snapshot()
    advertiser = replace(config.advertisers[ADVERTISER], param_map={"click_id": "cid",
                                                                      "value": "payout"})  # fmt: skip
    auths = {**config.advertisers, ADVERTISER: advertiser}
    from perfmark.services.tracking_config import token_digest

    rig = make_rig(
        replace(
            config,
            advertisers=auths,
            advertisers_by_token={token_digest(a.secret): a for a in auths.values()},
        )
    )
    response = rig.get(f"/postback?token={SECRET}&cid={CLICK}&goal=sale&payout=12.5&txid=9")
    assert response.status_code == 200, response.text
    [event] = rig.events()
    assert (event.click_id, event.value, event.txid) == (CLICK, "12.5", "9")


def test_mmp_install_postback_works_unchanged(rig: Rig) -> None:
    # What a mobile measurement partner sends, with its own parameter names.
    query = urlencode(
        {"token": MMP_SECRET, "clickid": CLICK, "event_name": "install",
         "event_revenue": "0.00", "event_revenue_currency": "EUR",
         "install_id": "2f1c-9a77-install", "idfa": "ignored", "app_id": "id123"}
    )  # fmt: skip
    response = rig.get(f"/postback?{query}")
    assert response.status_code == 200, response.text
    [event] = rig.events()
    assert event.advertiser_id == MMP_ADVERTISER
    assert (event.click_id, event.goal_key, event.goal_id) == (
        CLICK, "install", GOALS["install"].goal_id,
    )  # fmt: skip
    assert (event.value, event.currency, event.txid) == ("0.00", "EUR", "2f1c-9a77-install")


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"value": "abc"}, 400, "value"),
        ({"value": "-1"}, 400, "value"),
        ({"value": "NaN"}, 400, "value"),
        ({"value": "Infinity"}, 400, "value"),
        ({"value": "1e13"}, 400, "value"),
        ({"currency": "XYZ"}, 400, "currency"),
        ({"currency": "dollars"}, 400, "currency"),
        ({"status": "paid"}, 400, "status"),
        ({"goal": ""}, 400, "goal"),
        ({"goal": "nosuchgoal"}, 422, "goal"),
        ({"txid": "t" * 129}, 400, "txid"),
        ({"click_id": "c" * 65}, 400, "click_id"),
    ],
)
def test_bad_fields_are_refused_naming_the_field(
    rig: Rig, params: dict[str, str], status: int, field: str
) -> None:
    query = urlencode({"token": SECRET, "click_id": CLICK, "goal": "sale", **params})
    response = rig.get(f"/postback?{query}")
    assert response.status_code == status
    error = response.json()["error"]
    assert error["field"] == field
    assert field in error["message"] or field.replace("_", " ") in error["message"]
    assert rig.events() == []
    assert len(rig.drops()) == 1


def test_postback_methods_and_body_limits(make_rig: RigFactory) -> None:
    rig = make_rig(max_body_bytes=100)
    assert rig.request("PUT", f"/postback?token={SECRET}&goal=sale").status_code == 405
    big = rig.request("POST", f"/postback?token={SECRET}&goal=sale", content=b"x" * 101)
    assert big.status_code == 413 and rig.events() == []


GIF_LENGTH = 43


def assert_gif(response: object) -> None:
    assert response.status_code == 200  # type: ignore[attr-defined]
    assert len(response.content) == GIF_LENGTH  # type: ignore[attr-defined]
    assert response.content[:6] == b"GIF89a"  # type: ignore[attr-defined]
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["content-type"] == "image/gif"
    assert "no-store" in headers["cache-control"] and "no-cache" in headers["cache-control"]
    assert headers["pragma"] == "no-cache" and headers["expires"] == "0"


def test_conversion_pixel_finds_the_click_from_parameter_or_cookie(rig: Rig) -> None:
    by_param = rig.get(f"/p.gif?goal=lead&click_id={CLICK}&txid=A")
    by_cookie = rig.get("/p.gif?goal=sale&value=3", headers={"cookie": f"pm_clid={CLICK}"})
    by_write_key = rig.get(f"/p.gif?goal=Signed%20Up&wk={WRITE_KEY}")
    for response in (by_param, by_cookie, by_write_key):
        assert_gif(response)
        assert response.headers["x-perfmark-event"].startswith("cnv_")
    first, second, third = rig.events()
    assert (first.click_id, first.goal_key, first.txid) == (CLICK, "lead", "A")
    assert first.workspace_id == "" and first.goal_id is None  # resolved by the processor
    assert (second.click_id, second.value) == (CLICK, "3")
    assert (third.workspace_id, third.goal_key, third.click_id) == (WORKSPACE, "lead", None)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("goal=sale", "malformed"),
        (f"click_id={CLICK}", "malformed"),
        (f"click_id={CLICK}&goal=sale&value=ten", "malformed"),
        (f"click_id={CLICK}&goal=sale&currency=ZZZ", "malformed"),
        (f"wk={WRITE_KEY}&goal=unknown", "unknown_goal"),
        ("goal=sale&click_id=" + "x" * 3000, "malformed"),
        ("a=1&" * 150, "malformed"),
    ],
)
def test_pixel_always_answers_the_gif_and_counts_the_drop(
    rig: Rig, query: str, reason: str
) -> None:
    response = rig.get(f"/p.gif?{query}")
    assert_gif(response)
    assert response.headers["x-perfmark-error"] == reason
    assert rig.events() == []
    assert [str(drop) for drop in rig.drops()] == [reason]
