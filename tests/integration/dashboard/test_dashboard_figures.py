"""The figures on the pages and in their JSON twins, against the hand-computed known lake."""

from __future__ import annotations

import json
import re
from typing import Any

from perfmark.domain.accounts import Role
from perfmark.services.accounts import create_api_key
from perfmark.services.container import Principal

from .conftest import ClientFactory, World


def _tile(html: str, metric: str) -> tuple[str, str]:
    """The value and change text of one KPI tile."""
    found = re.search(
        rf'id="kpi-{metric}">.*?<span class="value">([^<]*)</span>\s*<span class="change[^"]*">([^<]*)',
        html,
        re.S,
    )
    assert found, f"no tile for {metric}"
    return found.group(1).strip(), found.group(2).strip()


def _key(world: World, role: Role, **scope: str) -> dict[str, str]:
    owner = Principal(world.demo.workspace_id, Role.OWNER, actor_id="test")
    created = create_api_key(world.container, owner, f"{role.value} test key", role, **scope)
    return {"Authorization": f"Bearer {created.secret}"}


def test_overview_tiles_show_the_period_and_its_change(
    world: World, client_for: ClientFactory
) -> None:
    html = client_for(world, world.owner).get("/dashboard/").text
    assert _tile(html, "cost") == ("27.00 USD", "+35.0 %")
    assert _tile(html, "revenue") == ("100.00 USD", "+233.3 %")
    assert _tile(html, "conversions") == ("2", "+100.0 %")
    assert _tile(html, "cpa") == ("13.50 USD", "−32.5 %")
    # ROAS 100/27 = 3.7037 against 30/20 = 1.5: +146.9 %
    assert _tile(html, "roas") == ("3.70×", "+146.9 %")
    assert "2025-12-26 to 2026-01-01 (UTC)" in html


def test_the_trend_chart_has_one_point_per_day(world: World, client_for: ClientFactory) -> None:
    html = client_for(world, world.owner).get("/dashboard/").text
    found = re.search(r'<script type="application/json" id="trend-data">(.*?)</script>', html, re.S)
    assert found
    chart = json.loads(found.group(1))
    assert chart["labels"] == [f"2025-12-{day}" for day in range(26, 32)] + ["2026-01-01"]
    series = {item["label"]: item["values"] for item in chart["series"]}
    # 2025-12-30: 2.00 of clicks + 10 of the sale; 2025-12-31: the 15 install.
    assert series["Spend (USD)"] == ["0", "0", "0", "0", "12", "15", "0"]
    assert series["Conversions"] == ["0", "0", "0", "0", "1", "1", "0"]


def test_the_overview_json_twin_says_the_same(world: World, client_for: ClientFactory) -> None:
    client = client_for(world, None)
    body: dict[str, Any] = client.get(
        "/api/dashboard/overview", headers=_key(world, Role.ANALYST)
    ).json()
    kpis = {kpi["metric"]: kpi for kpi in body["kpis"]}
    assert (kpis["cost"]["value"], kpis["cost"]["previous"], kpis["cost"]["change"]) == (
        "27", "20", "0.35",
    )  # fmt: skip
    assert kpis["conversions"]["value"] == 2
    assert kpis["cpa"]["value"] == "13.5"
    assert kpis["roas"]["value"] == "3.703704"
    assert body["from"] == "2025-12-26" and body["to"] == "2026-01-01"
    top = body["top_campaigns"]
    assert [row["campaign"] for row in top] == [
        world.facts.northwind_campaign, world.facts.lumen_campaign,
    ] or [row["campaign"] for row in top] == [
        world.facts.lumen_campaign, world.facts.northwind_campaign,
    ]  # fmt: skip
    assert {row["campaign"]: row["conversions"] for row in top} == {
        world.facts.northwind_campaign: 1,
        world.facts.lumen_campaign: 1,
    }


def test_an_advertiser_sees_only_its_own_figures(world: World, client_for: ClientFactory) -> None:
    html = client_for(world, world.advertiser).get("/dashboard/").text
    assert _tile(html, "cost") == ("12.00 USD", "−40.0 %")  # 12 against 20
    assert _tile(html, "revenue")[0] == "40.00 USD"
    assert _tile(html, "conversions")[0] == "1"
    assert "Calm app" not in html  # Lumen's campaign is not in its top campaigns
    body = (
        client_for(world, None)
        .get(
            "/api/dashboard/overview",
            headers=_key(world, Role.ADVERTISER, advertiser_id=world.facts.northwind),
        )
        .json()
    )
    assert {kpi["metric"]: kpi["value"] for kpi in body["kpis"]}["cost"] == "12"


def test_a_publisher_sees_its_traffic_and_earnings_not_spend(
    world: World, client_for: ClientFactory
) -> None:
    html = client_for(world, world.publisher).get("/dashboard/").text
    assert _tile(html, "clicks")[0] == "4"
    assert _tile(html, "conversions")[0] == "1"
    assert _tile(html, "conversion_rate")[0] == "25.00 %"
    assert _tile(html, "payout")[0] == "8.20 USD"  # 4 x 0.30 + 7
    assert 'id="kpi-cost"' not in html and 'id="kpi-revenue"' not in html


def test_a_publisher_cannot_ask_the_report_builder_for_spend(
    world: World, client_for: ClientFactory
) -> None:
    client = client_for(world, world.publisher)
    response = client.get(
        "/dashboard/reports", params={"from": "2025-12-01", "to": "2025-12-31", "metrics": "cost"}
    )
    assert response.status_code == 422
    assert "cannot see cost" in response.text
    ok = client.get(
        "/dashboard/reports",
        params={"from": "2025-12-01", "to": "2025-12-31", "metrics": ["clicks", "payout"]},
    )
    assert ok.status_code == 200
    # December: 4 clicks; earnings 4 x 0.30 + 7 (2025-12-30) + 14 (2025-12-20) = 22.20.
    assert re.search(r'<td class="num">4</td><td class="num">22.20 USD</td>', ok.text)


def test_the_report_builder_keeps_the_input_and_names_the_field(
    world: World, client_for: ClientFactory
) -> None:
    response = client_for(world, world.owner).get(
        "/dashboard/reports",
        params={"from": "2025-12-31", "to": "2025-12-01", "tz": "Mars/Olympus", "by": "day"},
    )
    assert response.status_code == 422
    assert 'value="Mars/Olympus"' in response.text
    assert 'id="error-tz"' in response.text or 'id="error-to"' in response.text


def test_the_report_builder_table_and_csv_export(world: World, client_for: ClientFactory) -> None:
    client = client_for(world, world.owner)
    params = {"from": "2025-12-19", "to": "2026-01-01", "by": "campaign",
              "metrics": ["conversions", "cost"]}  # fmt: skip
    page = client.get("/dashboard/reports", params=params)
    assert page.status_code == 200
    assert "Tents - search CPC" in page.text
    assert "/api/reports?from=2025-12-19&amp;to=2026-01-01" in page.text  # the twin is named
    export = client.get("/dashboard/reports/export.csv", params=params)
    assert export.headers["content-type"].startswith("text/csv")
    lines = export.text.strip().splitlines()
    assert lines[0] == "campaign,campaign_name,conversions,cost"
    rows = {line.split(",")[1]: line.split(",")[2:] for line in lines[1:]}
    # Northwind's campaign: the 2025-12-20 sale and the 2025-12-30 sale; 20 + 2 + 10 = 32.
    assert rows["Tents - search CPC"] == ["2", "32"]
    assert rows["Calm app - CPI"] == ["1", "15"]


def test_campaigns_list_shows_metrics_per_campaign(world: World, client_for: ClientFactory) -> None:
    body = (
        client_for(world, None)
        .get("/api/dashboard/campaigns", headers=_key(world, Role.ANALYST))
        .json()
    )
    by_id = {row["id"]: row for row in body["data"]}
    assert len(by_id) == 6
    assert by_id[world.facts.northwind_campaign]["metrics"]["cost"] == "12"
    assert by_id[world.facts.northwind_campaign]["metrics"]["clicks"] == 4
    assert by_id[world.facts.lumen_campaign]["metrics"]["cpa"] == "15"
    html = client_for(world, world.owner).get("/dashboard/campaigns").text
    assert html.count('class="badge status-active"') == 6


def test_partner_pages_show_figures_and_json_twins(world: World, client_for: ClientFactory) -> None:
    client = client_for(world, None)
    publishers = client.get("/api/dashboard/publishers", headers=_key(world, Role.ANALYST)).json()
    earnings = {row["id"]: row["metrics"]["payout"] for row in publishers["data"]}
    # Last 30 days: SearchBuy 8.2 now + 14 on 2025-12-20; CouponHub 9.
    assert earnings[world.facts.searchbuy] == "22.2"
    assert earnings[world.facts.couponhub] == "9"
    own = client.get(
        "/api/dashboard/publishers",
        headers=_key(world, Role.PUBLISHER, publisher_id=world.facts.searchbuy),
    ).json()
    assert [row["id"] for row in own["data"]] == [world.facts.searchbuy]
    page = client_for(world, world.publisher).get("/dashboard/publishers")
    assert "22.20 USD" in page.text and "CouponHub" not in page.text


def test_the_live_fragment_is_204_while_nothing_changed(
    fresh_world: World, client_for: ClientFactory
) -> None:
    client = client_for(fresh_world, fresh_world.owner)
    page = client.get("/dashboard/").text
    found = re.search(r'hx-get="(/dashboard/overview/live\?[^"]+)"', page)
    assert found
    poll = found.group(1).replace("&amp;", "&")
    assert client.get(poll).status_code == 204
    # One more conversion reaches the lake: the next poll brings the new figures.
    from perfmark.adapters.lake import LakeWriter
    from perfmark.domain.events import TrackedEvent
    from perfmark.settings import lake_directory

    from .world import at_ms

    LakeWriter(lake_directory(fresh_world.container.settings)).write(
        "bnew",
        [
            TrackedEvent(
                event_id="evt_new", type="conversion", ts_ms=at_ms("2025-12-31 12:00"),
                workspace_id=fresh_world.demo.workspace_id, campaign_id=fresh_world.facts.lumen_campaign,
                advertiser_id=fresh_world.facts.lumen, goal_key="install", status="pending",
                value="5", currency="USD", cost="3", payout="2", billing_currency="USD",
            )
        ],
    )  # fmt: skip
    fresh = client.get(poll)
    assert fresh.status_code == 200
    assert _tile(fresh.text, "conversions")[0] == "3"
    assert _tile(fresh.text, "cost")[0] == "30.00 USD"
