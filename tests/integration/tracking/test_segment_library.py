"""The official Segment library (segment-analytics-python) against the real server."""

from __future__ import annotations

import gzip
import json
import uuid
from typing import Any

import httpx
from segment.analytics import Client

from .conftest import US, Server, click_id_of, cookies_of, wait_until


def write_key(server: Server) -> str:
    key: str = server.api("GET", "/workspace/write-key")["write_key"]
    return key


def test_segment_library_conversion_is_attributed_to_the_earlier_click(
    server: Server, http: httpx.Client
) -> None:
    clicked = http.get(f"/c/{server.slugs[2]}", headers=US)
    click_id, visitor = click_id_of(clicked), cookies_of(clicked)["pm_vid"]
    errors: list[Any] = []
    client = Client(
        write_key(server),
        host=server.base_url,
        gzip=True,
        max_retries=1,
        on_error=lambda error, batch: errors.append((error, batch)),
        sync_mode=False,
    )
    order = f"ORD-{uuid.uuid4().hex[:8]}"
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    client.identify(customer, {"plan": "pro"}, anonymous_id=visitor)
    client.page(customer, name="Checkout", anonymous_id=visitor,
                properties={"url": "https://shop.northwind.example/checkout"})  # fmt: skip
    client.track(customer, "Order Completed", {"revenue": 129.5, "currency": "USD",
                                               "order_id": order}, anonymous_id=visitor)  # fmt: skip
    client.flush()
    client.join()
    assert errors == []
    row = wait_until(
        "the Segment conversion in the store",
        lambda: server.sql(
            "select click_id, campaign_id, value, goal_key, customer_id, source "
            "from conversions where txid = :o", o=order,
        ),
    )  # fmt: skip
    campaign = server.api("GET", "/campaigns?limit=100")["data"][2]["id"]
    assert row == [(click_id, campaign, 129.5, "sale", customer, "segment")]
    linked = server.sql("select customer_id from identities where visitor_id = :v", v=visitor)
    assert linked == [(customer,)]
    page = wait_until(
        "the page view in the lake",
        lambda: server.lake(
            f"select name, anonymous_id from events where type = 'pageview' "
            f"and customer_id = '{customer}'"
        ),
    )
    assert page == [("Checkout", visitor)]


def post(server: Server, path: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", content=body, headers=headers, timeout=30)


def test_event_api_auth_limits_and_errors_over_http(server: Server) -> None:
    key = write_key(server)
    message = {"anonymousId": "v-http", "event": "Viewed", "messageId": str(uuid.uuid4())}
    ok = httpx.post(f"{server.base_url}/v1/track", json=message, auth=(key, ""), timeout=30)
    assert ok.status_code == 200 and ok.json() == {"success": True}
    in_body = post(server, "/v1/track", json.dumps({**message, "writeKey": key}).encode())
    assert in_body.status_code == 200
    unknown = httpx.post(f"{server.base_url}/v1/track", json=message, auth=("nope", ""))
    assert unknown.status_code == 401
    too_big = post(server, "/v1/track", json.dumps({**message, "writeKey": key,
                                                    "pad": "x" * 40_000}).encode())  # fmt: skip
    assert too_big.status_code == 413
    assert (
        post(
            server, "/v1/batch", b"{oops", authorization=ok.request.headers["authorization"]
        ).status_code
        == 400
    )
    no_ids = {"batch": [{"type": "track", "event": "X"}], "writeKey": key}
    missing = post(server, "/v1/batch", gzip.compress(json.dumps(no_ids).encode()),
                   **{"content-encoding": "gzip"})  # fmt: skip
    assert missing.status_code == 400 and missing.json()["error"]["field"] == "batch[0].userId"
    # The retried message (same messageId) is stored once.
    wait_until(
        "the track event in the lake",
        lambda: server.lake("select 1 from events where anonymous_id = 'v-http'"),
    )
    retry = httpx.post(f"{server.base_url}/v1/track", json=message, auth=(key, ""), timeout=30)
    assert retry.status_code == 200
    marker = {"anonymousId": "v-marker", "event": "After", "writeKey": key}
    post(server, "/v1/track", json.dumps(marker).encode())
    wait_until(
        "a later event in the lake",
        lambda: server.lake("select 1 from events where anonymous_id = 'v-marker'"),
    )
    assert server.lake("select count(*) from events where anonymous_id = 'v-http'") == [(1,)]
