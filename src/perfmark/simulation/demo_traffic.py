"""Realistic demo traffic sent through the real tracking endpoints, spread over past days.

Impressions, clicks (with sub ids, UTMs and ad-platform click ids), page views and identify
calls through the Segment-compatible API, conversions by postback, pixel and `track`, status
changes, plus some bots and duplicate postbacks, so that every report and page has data from
the first minute. Requests go through the ASGI app in-process, with a clock that walks
through the days, so event times are spread like real traffic.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import httpx

from perfmark.adapters.store.kinds import ADVERTISERS
from perfmark.clock import FixedClock
from perfmark.domain.accounts import Role
from perfmark.domain.campaigns import CampaignSpec
from perfmark.domain.links import TrackingLinkSpec
from perfmark.domain.records import Record
from perfmark.services import accounts, catalog
from perfmark.services.container import Container, Principal
from perfmark.services.demo import DemoWorkspace
from perfmark.web.app import create_app
from perfmark.workers.processor import Processor

__all__ = ["TrafficSummary", "drive_demo_traffic"]

_AGENTS = (
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36", 5),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15", 3),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", 5),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36", 4),
    ("Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", 1),
)  # fmt: skip
_BOTS = (
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "facebookexternalhit/1.1",
    "Slackbot-LinkExpanding 1.0",
)
_COUNTRIES = (("US", 6), ("GB", 2), ("DE", 2), ("CA", 1), ("FR", 1), ("BR", 1))
_SUBS = ("banner-top", "sidebar", "newsletter-a", "story-feed", "retarget")
_CONVERSION_RATE = {
    "cpc": 0.05,
    "cpm": 0.03,
    "revshare": 0.06,
    "cpl": 0.12,
    "cpa": 0.05,
    "cpi": 0.15,
}
_ORGANIC = (
    ("https://www.google.com/", None), ("https://duckduckgo.com/", None),
    ("https://t.co/abc", None), (None, "email"), (None, None),
)  # fmt: skip


@dataclass
class TrafficSummary:
    """What the demo traffic sent."""

    days: int = 0
    clicks: int = 0
    impressions: int = 0
    conversions: int = 0
    page_views: int = 0
    bots: int = 0
    duplicates: int = 0
    processed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


def _pick(rng: random.Random, weighted: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([item for item, _ in weighted], [w for _, w in weighted])[0]


def drive_demo_traffic(
    container: Container,
    demo: DemoWorkspace,
    *,
    days: int = 14,
    visitors_per_day: int = 120,
    seed: int = 7,
) -> TrafficSummary:
    """Send `days` days of traffic ending now, then process it into the lake and store."""
    start = container.clock.now() - timedelta(days=days)
    clock = FixedClock(start)
    traffic = replace(container, clock=clock)
    summary = TrafficSummary(days=days)
    asyncio.run(_drive(traffic, clock, demo, days, visitors_per_day, random.Random(seed), summary))
    summary.processed = Processor(container).drain()
    return summary


@dataclass
class _Context:
    """What every simulated visitor needs."""

    app: Any
    clock: FixedClock
    rng: random.Random
    pairs: list[tuple[Record[TrackingLinkSpec], Record[CampaignSpec]]]
    tokens: dict[str, str]
    goal_of: dict[str, tuple[str, str]]
    write_key: str
    summary: TrafficSummary


async def _drive(
    container: Container,
    clock: FixedClock,
    demo: DemoWorkspace,
    days: int,
    visitors_per_day: int,
    rng: random.Random,
    summary: TrafficSummary,
) -> None:
    owner = Principal(demo.workspace_id, Role.OWNER)
    tokens = {
        campaign.spec.advertiser_id: catalog.postback_secret(
            container, owner, ADVERTISERS, campaign.spec.advertiser_id
        )
        for campaign in demo.campaigns
    }
    goal_of = {}
    for campaign in demo.campaigns:
        model = campaign.spec.pricing[0].pays.model.value if campaign.spec.pricing else "cpa"
        name = campaign.spec.name.lower()
        goal_of[campaign.id] = (
            "install" if "cpi" in name else "lead" if "cpl" in name else "sale",
            model,
        )
    context = _Context(
        app=create_app(container),
        clock=clock,
        rng=rng,
        pairs=list(zip(demo.links, demo.campaigns, strict=True)),
        tokens=tokens,
        goal_of=goal_of,
        write_key=accounts.workspace_write_key(container, owner),
        summary=summary,
    )
    start = clock.current
    for day in range(days):
        day_start = start + timedelta(days=day)
        count = int(visitors_per_day * rng.uniform(0.8, 1.25))
        for offset in sorted(rng.uniform(0, 86_000) for _ in range(count)):
            clock.current = day_start + timedelta(seconds=offset)
            await _visitor(context)


async def _visitor(context: _Context) -> None:
    app, clock, rng, pairs = context.app, context.clock, context.rng, context.pairs
    tokens, goal_of, write_key, summary = (
        context.tokens,
        context.goal_of,
        context.write_key,
        context.summary,
    )
    transport = httpx.ASGITransport(app=app, client=(f"198.51.100.{rng.randint(1, 254)}", 40000))
    bot = rng.random() < 0.04
    agent = rng.choice(_BOTS) if bot else _pick(rng, _AGENTS)
    headers = {
        "user-agent": agent,
        "cf-ipcountry": _pick(rng, _COUNTRIES),
        "accept-language": "en-US,en;q=0.9",
    }
    async with httpx.AsyncClient(transport=transport, base_url="http://demo.local") as client:
        journey = rng.sample(pairs, rng.choice((1, 1, 1, 2, 2, 3)))
        last_click = None
        for link, campaign in journey:
            if rng.random() < 0.5:
                await client.get(f"/i/{link.spec.slug}.gif", headers=headers)
                summary.impressions += 1
            params = {"sub1": rng.choice(_SUBS), "sub2": f"ad{rng.randint(1, 4)}"}
            if campaign.spec.channel.value == "paid_search":
                params["gclid"] = f"Cj0K{rng.randint(10**8, 10**9)}"
            response = await client.get(f"/c/{link.spec.slug}", params=params, headers=headers)
            summary.clicks += 1
            summary.bots += bot
            location = response.headers.get("location", "")
            if "pm_clid=" in location:
                last_click = (location.split("pm_clid=")[1].split("&")[0], campaign)
            clock.advance(seconds=rng.uniform(5, 600))
        visitor = client.cookies.get("pm_vid") or f"anon{rng.randint(1, 10**9)}"
        referrer, medium = rng.choice(_ORGANIC)
        page = {"writeKey": write_key, "anonymousId": visitor, "name": "Landing",
                "properties": {"url": "https://shop.northwind.example/tents" + (f"?utm_medium={medium}" if medium else ""),
                               "referrer": referrer}}  # fmt: skip
        await client.post("/v1/page", json=page, headers=headers)
        summary.page_views += 1
        if bot or last_click is None:
            return
        click_id, campaign = last_click
        goal, model = goal_of[campaign.id]
        if rng.random() >= _CONVERSION_RATE.get(model, 0.05):
            return
        clock.advance(minutes=rng.uniform(1, 240))
        value = f"{rng.uniform(30, 240):.2f}" if goal == "sale" else None
        txid = f"ord-{rng.randint(10**7, 10**8)}"
        how = rng.random()
        if how < 0.7:
            params = {
                "token": tokens[campaign.spec.advertiser_id],
                "click_id": click_id,
                "goal": goal,
                "txid": txid,
            }
            if value:
                params["value"] = value
            await client.get("/postback", params=params)
            if rng.random() < 0.05:  # a sender retrying the same postback
                await client.get("/postback", params=params)
                summary.duplicates += 1
            if rng.random() < 0.3:
                clock.advance(hours=rng.uniform(1, 48))
                status = "rejected" if rng.random() < 0.15 else "approved"
                await client.get("/postback", params={**params, "status": status})
                summary.statuses[status] = summary.statuses.get(status, 0) + 1
        elif how < 0.85:
            await client.get(
                "/p.gif",
                params={
                    "goal": goal,
                    "click_id": click_id,
                    "txid": txid,
                    **({"value": value} if value else {}),
                },
            )
        else:
            customer = f"cust-{rng.randint(1, 10**6)}"
            batch = {"writeKey": write_key, "batch": [
                {"type": "identify", "anonymousId": visitor, "userId": customer},
                {"type": "track", "anonymousId": visitor, "userId": customer, "event": goal,
                 "properties": {"click_id": click_id, "order_id": txid, **({"revenue": value} if value else {})}},
            ]}  # fmt: skip
            await client.post("/v1/batch", json=batch)
        summary.conversions += 1
