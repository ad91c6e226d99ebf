"""Helpers for the ingest tests: a hand-built config snapshot and trackers over a real log."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from perfmark.adapters.wal import WalReader, WalWriter
from perfmark.clock import FixedClock
from perfmark.domain.campaigns import CampaignStatus, Schedule, TargetingRule
from perfmark.domain.events import DropReason, TrackedEvent, decode_event
from perfmark.domain.links import DEFAULT_PASSTHROUGH
from perfmark.domain.offers import WeightedUrl
from perfmark.ingest.click import ClickTracker
from perfmark.ingest.conversions import ConversionTracker
from perfmark.ingest.segment import SegmentTracker
from perfmark.services.tracking_config import (
    AdvertiserAuth,
    ConfigSnapshot,
    GoalInfo,
    LinkRoute,
    Rotation,
    token_digest,
)
from perfmark.settings import Settings
from perfmark.web.tracking import TrackingLayer

WORKSPACE = "ws_01aaaaaaaaaaaaaaaaaaaaaaaa"
OTHER_WORKSPACE = "ws_01bbbbbbbbbbbbbbbbbbbbbbbb"
ADVERTISER = "adv_01aaaaaaaaaaaaaaaaaaaaaaaa"
MMP_ADVERTISER = "adv_01cccccccccccccccccccccccc"
SECRET = "adv-secret-token-1"
MMP_SECRET = "mmp-secret-token-2"
WRITE_KEY = "wk_test_key_1"
LANDING = "https://lp.example.com/offer?c={click_id}&s1={sub1}"
FALLBACK = "https://fallback.example.org/more"
SECRET_KEY = "test-secret-key"
BASE = "http://track.test"


def route(**changes: Any) -> LinkRoute:
    """A live link on an active campaign, with the given fields changed."""
    base = LinkRoute(
        link_id="lnk_01aaaaaaaaaaaaaaaaaaaaaaaa",
        slug="abc12345",
        workspace_id=WORKSPACE,
        campaign_id="cmp_01aaaaaaaaaaaaaaaaaaaaaaaa",
        publisher_id="pub_01aaaaaaaaaaaaaaaaaaaaaaaa",
        advertiser_id=ADVERTISER,
        offer_id="off_01aaaaaaaaaaaaaaaaaaaaaaaa",
        channel="affiliate",
        link_active=True,
        campaign_status=CampaignStatus.ACTIVE,
        schedule=Schedule(),
        targeting=(),
        needs_user_agent=False,
        landing_pages=Rotation.of((WeightedUrl("main", LANDING),)),
        creatives=Rotation.of(()),
        fallback_url=FALLBACK,
        fixed={},
        passthrough=frozenset(DEFAULT_PASSTHROUGH),
        timezone=ZoneInfo("UTC"),
    )
    if "targeting" in changes:
        rules: tuple[TargetingRule, ...] = changes["targeting"]
        changes.setdefault(
            "needs_user_agent", any(r.field.value in ("device", "os", "browser") for r in rules)
        )
    return replace(base, **changes)


GOALS = {
    "sale": GoalInfo("goal_01aaaaaaaaaaaaaaaaaaaaaaaa", WORKSPACE, "sale", "0", "USD", True),
    "lead": GoalInfo("goal_01bbbbbbbbbbbbbbbbbbbbbbbb", WORKSPACE, "lead", "4.00", "USD", False),
    "install": GoalInfo(
        "goal_01cccccccccccccccccccccccc", WORKSPACE, "install", "2.50", "EUR", False
    ),
}


def snapshot(*routes: LinkRoute) -> ConfigSnapshot:
    """A config snapshot with these links, three goals, two advertisers and a write key."""
    advertisers = {
        ADVERTISER: AdvertiserAuth(ADVERTISER, WORKSPACE, SECRET, {}),
        MMP_ADVERTISER: AdvertiserAuth(
            MMP_ADVERTISER,
            WORKSPACE,
            MMP_SECRET,
            # An MMP install postback: its own names for click id, event, revenue, install id.
            {
                "click_id": "clickid",
                "goal": "event_name",
                "value": "event_revenue",
                "currency": "event_revenue_currency",
                "txid": "install_id",
            },
        ),
    }
    by_event = {(WORKSPACE, key): goal for key, goal in GOALS.items()}
    by_event[(WORKSPACE, "Order Completed")] = GOALS["sale"]
    by_event[(WORKSPACE, "Signed Up")] = GOALS["lead"]
    return ConfigSnapshot(
        version=1,
        links={r.slug: r for r in routes} if routes else {"abc12345": route()},
        goals_by_key={(WORKSPACE, key): goal for key, goal in GOALS.items()},
        goals_by_event=by_event,
        advertisers=advertisers,
        advertisers_by_token={token_digest(a.secret): a for a in advertisers.values()},
        write_keys={WRITE_KEY: WORKSPACE},
    )


@dataclass
class Rig:
    """Trackers writing to a real log in a temporary directory, with counted outcomes."""

    settings: Settings
    clock: FixedClock
    wal_dir: Path
    config: ConfigSnapshot
    wal: WalWriter
    counts: list[tuple[str, DropReason | None]] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    client_ip: str = "203.0.113.9"

    def count(self, event_type: str, drop: DropReason | None) -> None:
        self.counts.append((str(event_type), drop))

    def drops(self) -> list[DropReason]:
        return [drop for _type, drop in self.counts if drop is not None]

    def clicks(self) -> ClickTracker:
        return ClickTracker(
            self.settings, SECRET_KEY, lambda: self.config, self.wal, self.clock, self.count,
            self.rng,
        )  # fmt: skip

    def conversions(self) -> ConversionTracker:
        return ConversionTracker(
            self.settings, lambda: self.config, self.wal, self.clock, self.count
        )

    def segment(self) -> SegmentTracker:
        return SegmentTracker(self.settings, lambda: self.config, self.wal, self.clock, self.count)

    def events(self) -> list[TrackedEvent]:
        """Every event appended so far, in order, read back from the log files."""
        reader = WalReader(self.wal_dir, consumer="test")
        batch = reader.read_batch(reader.load_checkpoint(), max_records=1_000_000)
        return [decode_event(record.payload) for record in batch.records]

    def layer(self) -> TrackingLayer:
        """The tracking layer alone (anything it does not answer gets a 418)."""

        async def not_tracking(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 418, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        return TrackingLayer(
            not_tracking,
            settings=self.settings,
            clicks=self.clicks(),
            conversions=self.conversions(),
            segment=self.segment(),
        )

    def raw_get(self, path: str, query: bytes) -> int:
        """A GET with a query string of raw bytes (no client would send them as-is); the status."""
        scope = {
            "type": "http", "method": "GET", "path": path, "query_string": query,
            "headers": [], "client": (self.client_ip, 4321),
        }  # fmt: skip
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        asyncio.run(self.layer()(scope, receive, send))
        status: int = sent[0]["status"]
        return status

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One HTTP request to the tracking layer alone (anything else answers 418)."""
        layer = self.layer()

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=layer, client=(self.client_ip, 4321))
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(send())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """A GET to the tracking layer."""
        return self.request("GET", path, **kwargs)


RigFactory = Callable[..., Rig]
