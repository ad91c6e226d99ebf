"""The Segment-compatible API: auth, message types, goals, dedupe ids, gzip and size limits."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from perfmark.domain.events import DropReason
from perfmark.ingest.segment import MAX_MESSAGE_BYTES

from .helpers import GOALS, WORKSPACE, WRITE_KEY, Rig

CLICK = "clk_01kdvdna00m3e9d1yz096zzreb"


def basic(key: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def post(rig: Rig, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return rig.request(
        "POST", path, content=raw, headers=basic(WRITE_KEY) if headers is None else headers
    )


def test_track_with_basic_auth_is_logged(rig: Rig) -> None:
    response = post(rig, "/v1/track", {"anonymousId": "v1", "event": "Viewed Tent",
                                       "properties": {"sku": "T-1"}})  # fmt: skip
    assert response.status_code == 200 and response.json() == {"success": True}
    assert response.headers["access-control-allow-origin"] == "*"
    [event] = rig.events()
    assert (event.type, event.name, event.workspace_id) == ("track", "Viewed Tent", WORKSPACE)
    assert (event.anonymous_id, event.visitor_id, event.properties) == ("v1", "v1", {"sku": "T-1"})
    assert event.source == "segment"


def test_write_key_in_the_body_works_too(rig: Rig) -> None:
    body = {"writeKey": WRITE_KEY, "userId": "u1", "event": "X"}
    assert post(rig, "/v1/track", body, headers={}).status_code == 200
    assert rig.events()[0].customer_id == "u1"


@pytest.mark.parametrize(
    "headers", [{}, basic("wrong"), {"authorization": "Basic !!notbase64"}, {"authorization": "x"}]
)
def test_a_missing_or_unknown_write_key_is_401(rig: Rig, headers: dict[str, str]) -> None:
    response = post(rig, "/v1/track", {"anonymousId": "v1", "event": "X"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["field"] == "writeKey"
    assert rig.events() == [] and rig.drops() == [DropReason.BAD_SIGNATURE]


def test_message_id_gives_a_deterministic_event_id(rig: Rig) -> None:
    body = {"anonymousId": "v1", "event": "X", "messageId": "m-123"}
    post(rig, "/v1/track", body)
    post(rig, "/v1/track", body)
    post(rig, "/v1/track", {**body, "messageId": "m-124"})
    expected = "evt_m" + hashlib.sha256(f"{WORKSPACE}\nm-123".encode()).hexdigest()[:26]
    ids = [event.event_id for event in rig.events()]
    assert ids[0] == ids[1] == expected and ids[2] != expected


def test_track_of_a_goal_event_name_is_a_conversion(rig: Rig) -> None:
    body = {
        "anonymousId": "v1",
        "event": "Order Completed",
        "properties": {"revenue": 59.9, "currency": "eur", "order_id": "O-77", "click_id": CLICK},
    }
    assert post(rig, "/v1/track", body).status_code == 200
    [event] = rig.events()
    assert (event.type, event.goal_id, event.goal_key) == (
        "conversion", GOALS["sale"].goal_id, "sale",
    )  # fmt: skip
    assert (event.value, event.currency, event.txid, event.status) == (
        "59.9", "EUR", "O-77", "pending",
    )  # fmt: skip
    assert event.click_id == CLICK


def test_track_by_goal_key_uses_the_goal_default_value(rig: Rig) -> None:
    post(rig, "/v1/track", {"userId": "u1", "event": "lead"})
    [event] = rig.events()
    assert (event.type, event.value, event.currency) == ("conversion", "4.00", "USD")


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({"revenue": "lots"}, "properties.revenue"),
        ({"revenue": True}, "properties.revenue"),
        ({"revenue": -5}, "properties.revenue"),
        ({"revenue": 5, "currency": "ZZZ"}, "properties.currency"),
        ({"order_id": "o" * 129}, "properties.order_id"),
    ],
)
def test_bad_conversion_properties_are_400(
    rig: Rig, properties: dict[str, Any], field: str
) -> None:
    body = {"userId": "u1", "event": "Order Completed", "properties": properties}
    response = post(rig, "/v1/track", body)
    assert response.status_code == 400 and response.json()["error"]["field"] == field
    assert rig.events() == []


def test_identify_links_the_anonymous_id_to_the_user(rig: Rig) -> None:
    post(rig, "/v1/identify", {"anonymousId": "v1", "userId": "cust-9", "traits": {"plan": "pro"}})
    post(rig, "/v1/identify", {"userId": "cust-9", "traits": {"plan": "max"}})
    linked, traits_only = rig.events()
    assert (linked.type, linked.anonymous_id, linked.customer_id) == ("identify", "v1", "cust-9")
    assert linked.properties == {"plan": "pro"}
    # Without both ids there is nothing to link: kept as a plain event.
    assert (traits_only.type, traits_only.name) == ("track", "identify")


def test_page_reads_url_campaign_and_click_id_from_context(rig: Rig) -> None:
    body = {
        "anonymousId": "v1",
        "name": "Tents",
        "context": {
            "page": {"url": f"https://shop.example/t?pm_clid={CLICK}&utm_term=x",
                     "referrer": "https://google.com/"},
            "campaign": {"source": "news", "name": "spring"},
            "userAgent": "UA/1", "ip": "198.51.100.7", "locale": "fr-FR",
        },
    }  # fmt: skip
    assert post(rig, "/v1/page", body).status_code == 200
    [event] = rig.events()
    assert (event.type, event.name, event.click_id) == ("pageview", "Tents", CLICK)
    assert (event.utm_source, event.utm_campaign, event.utm_term) == ("news", "spring", "x")
    assert (event.referrer, event.user_agent, event.language) == (
        "https://google.com/",
        "UA/1",
        "fr",
    )
    assert event.ip == "198.51.100.0"


def test_batch_logs_every_message_with_the_shared_context(rig: Rig) -> None:
    body = {
        "batch": [
            {"type": "page", "anonymousId": "v1", "name": "Home"},
            {"type": "track", "anonymousId": "v1", "event": "Signed Up"},
            {"type": "identify", "anonymousId": "v1", "userId": "u1"},
            {"type": "screen", "userId": "u1", "name": "Main"},
        ],
        "context": {"userAgent": "SharedUA/2"},
    }
    assert post(rig, "/v1/batch", body).status_code == 200
    events = rig.events()
    assert [e.type for e in events] == ["pageview", "conversion", "identify", "pageview"]
    assert {e.user_agent for e in events} == {"SharedUA/2"}
    assert events[1].goal_key == "lead"


def test_one_bad_message_rejects_the_whole_batch(rig: Rig) -> None:
    body = {"batch": [{"type": "track", "anonymousId": "v", "event": "ok"},
                      {"type": "track", "event": "no ids"}]}  # fmt: skip
    response = post(rig, "/v1/batch", body)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "batch[1].userId"
    assert rig.events() == []


def test_gzip_bodies_are_accepted(rig: Rig) -> None:
    body = gzip.compress(json.dumps({"batch": [{"type": "track", "userId": "u",
                                                "event": "Z"}]}).encode())  # fmt: skip
    response = post(rig, "/v1/batch", body, {**basic(WRITE_KEY), "content-encoding": "gzip"})
    assert response.status_code == 200
    assert rig.events()[0].name == "Z"


def test_oversized_bodies_are_413(rig: Rig) -> None:
    padding = "x" * (MAX_MESSAGE_BYTES + 1)
    single = post(rig, "/v1/track", {"userId": "u", "event": "Z", "properties": {"p": padding}})
    assert single.status_code == 413
    batch = post(rig, "/v1/batch", {"batch": [], "pad": "x" * (500 * 1024 + 1)})
    assert batch.status_code == 413
    bomb = gzip.compress(json.dumps({"batch": [], "pad": "y" * (600 * 1024)}).encode())
    assert len(bomb) < 10_000
    inflated = post(rig, "/v1/batch", bomb, {**basic(WRITE_KEY), "content-encoding": "gzip"})
    assert inflated.status_code == 413
    assert rig.events() == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/track", b"{not json", None),
        ("/v1/track", b"[1, 2]", None),
        ("/v1/track", b"\xff\xfe", None),
        ("/v1/track", {"event": "X"}, "userId"),
        ("/v1/track", {"anonymousId": "v"}, "event"),
        ("/v1/track", {"anonymousId": {"a": 1}, "event": "X"}, "anonymousId"),
        ("/v1/track", {"anonymousId": "v", "event": "X", "properties": []}, "properties"),
        ("/v1/batch", {"batch": {"type": "track"}}, "batch"),
        ("/v1/batch", {"batch": [{"type": "bogus", "userId": "u"}]}, "batch[0].type"),
        ("/v1/batch", {"batch": ["text"]}, "batch[0]"),
        ("/v1/identify", {"anonymousId": "a" * 129}, "anonymousId"),
    ],
)
def test_malformed_requests_are_400(rig: Rig, path: str, body: Any, field: str | None) -> None:
    response = post(rig, path, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "malformed_request"
    if field is not None:
        assert error["field"] == field
    assert rig.events() == []


def test_only_post_and_cors_preflight(rig: Rig) -> None:
    assert rig.get("/v1/track").status_code == 405
    preflight = rig.request("OPTIONS", "/v1/batch")
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["access-control-allow-methods"]


def test_client_timestamps_are_used_only_when_plausible(rig: Rig) -> None:
    def ts_of(timestamp: str) -> int:
        post(rig, "/v1/track", {"userId": "u", "event": "X", "timestamp": timestamp})
        return rig.events()[-1].ts_ms

    now_ms = int(rig.clock.now().timestamp() * 1000)
    hour_ago = datetime(2025, 12, 31, 23, 0, tzinfo=UTC)
    assert ts_of("2025-12-31T23:00:00Z") == int(hour_ago.timestamp() * 1000)
    assert ts_of("2020-01-01T00:00:00Z") == now_ms  # too old
    assert ts_of("2026-01-02T00:00:00Z") == now_ms  # in the future
    assert ts_of("2025-12-31T23:00:00") == now_ms  # no time zone
    assert ts_of("yesterday") == now_ms


def test_a_server_librarys_own_agent_is_not_the_visitors(rig: Rig) -> None:
    ruby = {**basic(WRITE_KEY), "user-agent": "analytics-ruby/2.4.0"}
    library = {"library": {"name": "analytics-ruby", "version": "2.4.0"}}
    post(rig, "/v1/track", {"userId": "u", "event": "A", "context": library}, ruby)
    post(rig, "/v1/track", {"userId": "u", "event": "B",
                            "context": {**library, "userAgent": "Browser/1"}}, ruby)  # fmt: skip
    beacon = {**basic(WRITE_KEY), "user-agent": "Mozilla/5.0 Beacon"}
    post(rig, "/v1/track", {"userId": "u", "event": "C"}, beacon)
    assert [event.user_agent for event in rig.events()] == [None, "Browser/1", "Mozilla/5.0 Beacon"]
