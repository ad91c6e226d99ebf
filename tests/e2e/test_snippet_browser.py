"""The JS snippet in a real browser: tracking link → landing page with /t.js → attributed sale."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import duckdb
import pytest
from playwright.sync_api import Page, Response, Route
from sqlalchemy import select

from perfmark.adapters.store.schema import clicks, conversions

if TYPE_CHECKING:
    from .conftest import LandingSite, LiveServer

pytestmark = pytest.mark.browser

LINK_RESOLVE_TIMEOUT_S = 15.0
BEACON_TIMEOUT_S = 15.0
CONSENT_COOKIE_DAYS = 7
CLICK_ID = re.compile(r"clk_[0-9a-z]{26}")

LANDING_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Ultralight tents</title>
<script src="{tracker}/t.js" data-write-key="{write_key}" {extra} async></script></head>
<body><h1>Ultralight tents</h1><a id="checkout" href="/checkout">Go to checkout</a></body></html>"""

CHECKOUT_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Checkout</title>
<script src="{tracker}/t.js" data-write-key="{write_key}" async></script></head>
<body><h1>Checkout</h1>
<button id="buy" onclick="perfmark.track('sale', {{revenue: 42, order_id: 'O-1'}});
  document.getElementById('done').textContent = 'Thank you';">Buy for 42 USD</button>
<p id="done"></p></body></html>"""


@dataclass(frozen=True)
class Shop:
    """What the test set up through the API: a write key and two links into two campaigns."""

    write_key: str
    campaign_id: str
    link_id: str
    link_url: str
    consent_link_url: str


def _campaign_with_link(
    server: LiveServer, name: str, landing_url: str, ids: dict[str, str]
) -> tuple[str, dict[str, Any]]:
    offer = server.api(
        "POST",
        "/offers",
        {
            "name": name,
            "advertiser_id": ids["advertiser"],
            "landing_pages": [{"key": "local", "url": landing_url}],
        },
    )
    sale = {"model": "cpa", "amount": "5.00"}
    campaign = server.api(
        "POST",
        "/campaigns",
        {
            "name": name,
            "advertiser_id": ids["advertiser"],
            "offer_id": offer["id"],
            "goal_ids": [ids["goal"]],
            "pricing": [
                {"goal_id": ids["goal"], "pays": sale, "earns": {**sale, "amount": "3.00"}}
            ],
            "status": "active",
        },
    )
    link = server.api(
        "POST", "/links", {"campaign_id": campaign["id"], "publisher_id": ids["publisher"]}
    )
    return campaign["id"], link


@pytest.fixture(scope="module")
def shop(live_server: LiveServer, landing_site: LandingSite) -> Shop:
    """Campaigns buying the demo's `sale` goal whose landing pages are the local site's."""
    write_key = live_server.api("GET", "/workspace/write-key")["write_key"]
    goal = next(g for g in live_server.api("GET", "/goals")["data"] if g["key"] == "sale")
    ids = {
        "goal": goal["id"],
        "advertiser": live_server.api("GET", "/advertisers")["data"][0]["id"],
        "publisher": live_server.api("GET", "/publishers")["data"][0]["id"],
    }
    site = landing_site.base_url
    campaign_id, link = _campaign_with_link(
        live_server, "Browser test shop", f"{site}/landing?clid={{click_id}}", ids
    )
    _, consent_link = _campaign_with_link(
        live_server, "Browser test consent", f"{site}/consent-landing?clid={{click_id}}", ids
    )
    values = {"tracker": live_server.base_url, "write_key": write_key}
    landing_site.pages.update(
        {
            "/landing": LANDING_PAGE.format(**values, extra=""),
            "/checkout": CHECKOUT_PAGE.format(**values),
            "/consent-landing": LANDING_PAGE.format(
                **values,
                extra=f'data-consent="required" data-cookie-days="{CONSENT_COOKIE_DAYS}"',
            ),
        }
    )
    return Shop(
        write_key, campaign_id, link["id"], link["tracking_url"], consent_link["tracking_url"]
    )


class Beacons:
    """The snippet's calls to the event API (/v1/*): what the browser sent, how it was answered."""

    def __init__(self, page: Page, tracker: str) -> None:
        self.page = page
        self.prefix = f"{tracker}/v1/"
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.answered: list[tuple[str, int]] = []
        # Playwright reports no post data for sendBeacon requests; a route sees the body.
        page.route(f"{self.prefix}**", self._record_body)
        page.on("response", self._record_status)

    def _record_body(self, route: Route) -> None:
        body = route.request.post_data_buffer or b"{}"
        self.sent.append((route.request.url[len(self.prefix) :], json.loads(body)))
        route.continue_()

    def _record_status(self, response: Response) -> None:
        if response.url.startswith(self.prefix):
            self.answered.append((response.url[len(self.prefix) :], response.status))

    def wait_for(self, kind: str, count: int) -> list[dict[str, Any]]:
        """Let the page run until `count` calls to /v1/<kind> were answered; their bodies."""
        deadline = time.monotonic() + BEACON_TIMEOUT_S
        while sum(path == kind for path, _ in self.answered) < count:
            assert time.monotonic() < deadline, f"no {count} /v1/{kind} answers: {self.answered}"
            self.page.wait_for_timeout(100)  # lets Playwright deliver network events
        assert all(status == 200 for _, status in self.answered), self.answered
        return [body for path, body in self.sent if path == kind]


def open_tracking_link(page: Page, url: str, landing_origin: str) -> Response:
    """Open a tracking link and return the landing page's response (after the 302)."""
    deadline = time.monotonic() + LINK_RESOLVE_TIMEOUT_S
    while True:
        response = page.goto(url)
        assert response is not None
        if page.url.startswith(landing_origin):
            return response
        # A link created a moment ago reaches the tracker's config cache within
        # config_cache_ttl_ms; until then the tracker answers its 404 page (and logs nothing).
        assert response.status == 404, f"{url} answered {response.status} at {page.url}"
        assert time.monotonic() < deadline, f"{url} still unknown to the tracker"
        page.wait_for_timeout(200)


def pm_cookie(page: Page) -> dict[str, Any] | None:
    """The snippet's first-party `_pm` cookie: its attributes and its decoded JSON value."""
    found = [c for c in page.context.cookies() if c["name"] == "_pm"]
    if not found:
        return None
    assert len(found) == 1, found
    cookie: dict[str, Any] = dict(found[0])
    cookie["data"] = json.loads(unquote(cookie["value"]))
    return cookie


def test_sale_on_landing_page_is_attributed_to_the_tracking_click(
    live_server: LiveServer, landing_site: LandingSite, shop: Shop, browser_page: Page
) -> None:
    page = browser_page
    beacons = Beacons(page, live_server.base_url)

    landing = open_tracking_link(page, shop.link_url, landing_site.base_url)
    redirect = landing.request.redirected_from
    assert redirect is not None and redirect.url == shop.link_url
    redirect_response = redirect.response()
    assert redirect_response is not None and redirect_response.status == 302
    query = parse_qs(urlsplit(page.url).query)
    click_id = query["pm_clid"][0]
    assert CLICK_ID.fullmatch(click_id)
    assert query["clid"] == [click_id]  # the {click_id} macro and the appended parameter agree
    assert f"/landing?clid={click_id}&pm_clid={click_id}" in landing_site.requests
    assert page.evaluate("perfmark.clickId()") == click_id

    first_view = beacons.wait_for("page", 1)[0]
    assert first_view["writeKey"] == shop.write_key
    assert first_view["context"]["click_id"] == click_id
    cookie = pm_cookie(page)
    assert cookie is not None and cookie["data"]["clid"] == click_id
    assert cookie["data"]["vid"] == first_view["anonymousId"]

    # The checkout page has no click id in its URL: the snippet reads it back from `_pm`.
    page.click("#checkout")
    page.wait_for_url(f"{landing_site.base_url}/checkout")
    assert page.evaluate("perfmark.clickId()") == click_id
    page.click("#buy")
    page.wait_for_selector("#done:has-text('Thank you')")
    (sale,) = beacons.wait_for("track", 1)
    assert sale["event"] == "sale"
    assert sale["properties"] == {"revenue": 42, "order_id": "O-1", "click_id": click_id}
    assert sale["anonymousId"] == first_view["anonymousId"]
    views = beacons.wait_for("page", 2)

    assert live_server.process_events() > 0
    with live_server.store().connect() as conn:
        sold = conn.execute(
            select(conversions).where(
                conversions.c.workspace_id == live_server.workspace_id,
                conversions.c.txid == "O-1",
            )
        ).all()
        link_clicks = conn.execute(
            select(clicks.c.click_id, clicks.c.campaign_id).where(clicks.c.link_id == shop.link_id)
        ).all()
    assert [tuple(row) for row in link_clicks] == [(click_id, shop.campaign_id)]
    assert len(sold) == 1, sold
    conversion = sold[0]
    assert conversion.click_id == click_id
    assert conversion.campaign_id == shop.campaign_id
    assert conversion.goal_key == "sale"
    assert Decimal(str(conversion.value)) == Decimal(42)
    assert conversion.currency == "USD"
    assert conversion.status == "pending"
    assert conversion.source == "segment"
    assert conversion.visitor_id == first_view["anonymousId"]

    pageviews = (
        duckdb.connect()
        .execute(
            f"select url from read_parquet('{live_server.lake_glob()}') "
            f"where type = 'pageview' and click_id = '{click_id}' order by ts_ms"
        )
        .fetchall()
    )
    assert [row[0] for row in pageviews] == [view["context"]["page"]["url"] for view in views]
    assert pageviews[1][0] == f"{landing_site.base_url}/checkout"


def test_consent_mode_sets_no_cookie_until_consent(
    live_server: LiveServer, landing_site: LandingSite, shop: Shop, browser_page: Page
) -> None:
    page = browser_page
    beacons = Beacons(page, live_server.base_url)
    open_tracking_link(page, shop.consent_link_url, landing_site.base_url)
    click_id = parse_qs(urlsplit(page.url).query)["pm_clid"][0]
    (view,) = beacons.wait_for("page", 1)  # page views are still sent, cookie-free

    assert pm_cookie(page) is None
    assert page.evaluate("perfmark.clickId()") == click_id

    page.evaluate("perfmark.consent(true)")
    cookie = pm_cookie(page)
    assert cookie is not None
    assert cookie["data"]["clid"] == click_id
    assert cookie["data"]["vid"] == view["anonymousId"]
    assert cookie["domain"] == "127.0.0.1" and cookie["path"] == "/"
    assert not cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    expected_expiry = datetime.now(UTC) + timedelta(days=CONSENT_COOKIE_DAYS)
    expiry = datetime.fromtimestamp(cookie["expires"], UTC)
    assert abs(expiry - expected_expiry) < timedelta(minutes=2)

    page.evaluate("perfmark.consent(false)")
    assert pm_cookie(page) is None
