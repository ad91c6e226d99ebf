"""The click: resolve the link, check the campaign, target, rotate, log, and redirect.

Named steps, each of which can end the request with a typed drop reason. The redirect
never waits on the store: the link comes from the in-memory config snapshot and the
click is appended to this worker's write-ahead log before the answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from perfmark.adapters.useragent import parse_user_agent
from perfmark.adapters.wal_writer import WalWriter
from perfmark.clock import Clock
from perfmark.domain.campaigns import CampaignStatus, Visitor, matches_targeting
from perfmark.domain.events import DropReason, EventType, TrackedEvent
from perfmark.domain.links import EXTERNAL_CLICK_IDS, SUB_FIELDS, UTM_FIELDS
from perfmark.ids import new_id
from perfmark.ingest.hits import Hit
from perfmark.ingest.macros import append_params, fill_macros, same_origin
from perfmark.ingest.visitor import (
    VISITOR_COOKIE,
    anonymize_ip,
    cookieless_visitor_id,
    new_visitor_id,
    primary_language,
    valid_visitor_id,
)
from perfmark.services.tracking_config import ConfigSnapshot, LinkRoute
from perfmark.settings import Settings

__all__ = ["ClickOutcome", "ClickTracker"]

_SUB_AND_UTM = SUB_FIELDS + UTM_FIELDS


@dataclass(slots=True)
class ClickOutcome:
    """How to answer a click: where to send the visitor and what was recorded."""

    status: int
    location: str | None = None
    click_id: str | None = None
    visitor_id: str | None = None
    new_visitor: bool = False
    drop: DropReason | None = None


class ClickTracker:
    """Turns a click on `/c/<slug>` into a logged event and a redirect."""

    def __init__(
        self,
        settings: Settings,
        secret_key: str,
        snapshot: Callable[[], ConfigSnapshot],
        wal: WalWriter,
        clock: Clock,
        count: Callable[[str, DropReason | None], None],
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.secret_key = secret_key
        self.snapshot = snapshot
        self.wal = wal
        self.clock = clock
        self.count = count
        self.rng = rng or random.Random()

    def click(self, slug: str, hit: Hit) -> ClickOutcome:
        """Handle one click."""
        route = self.snapshot().links.get(slug)
        if route is None:
            self.count(EventType.CLICK, DropReason.UNKNOWN_LINK)
            return ClickOutcome(404, drop=DropReason.UNKNOWN_LINK)
        now = self.clock.now()
        event = self._base_event(route, hit, now)
        drop = self._check_campaign(route, now) or self._check_targeting(route, hit, event, now)
        if drop is not None:
            return self._fallback(route, event, drop)
        page = route.landing_pages.pick(self.rng.randrange(route.landing_pages.total))
        creative = (
            route.creatives.pick(self.rng.randrange(route.creatives.total))
            if route.creatives.items
            else None
        )
        if page is None:
            return self._fallback(route, event, DropReason.PAUSED_CAMPAIGN)
        event.landing_page = page.key
        event.creative = creative.key if creative else hit.param("creative")
        self.wal.append(event.to_json())
        self.count(EventType.CLICK, None)
        location = self._landing_url(page.url, route, event, hit)
        return ClickOutcome(302, location, event.click_id, event.visitor_id, self._is_new(hit))

    def impression(self, slug: str, hit: Hit) -> ClickOutcome:
        """Record an impression of a link's creative (the pixel answers the same either way)."""
        route = self.snapshot().links.get(slug)
        if route is None:
            self.count(EventType.IMPRESSION, DropReason.UNKNOWN_LINK)
            return ClickOutcome(200, drop=DropReason.UNKNOWN_LINK)
        now = self.clock.now()
        event = self._base_event(route, hit, now, EventType.IMPRESSION)
        event.creative = hit.param("creative")
        drop = self._check_campaign(route, now)
        event.drop_reason = drop.value if drop else None
        self.wal.append(event.to_json())
        self.count(EventType.IMPRESSION, drop)
        return ClickOutcome(200, None, None, event.visitor_id, self._is_new(hit), drop)

    def _is_new(self, hit: Hit) -> bool:
        return not self.settings.cookieless and not valid_visitor_id(
            hit.cookies.get(VISITOR_COOKIE)
        )

    def _visitor_id(self, hit: Hit, now: datetime) -> str:
        if self.settings.cookieless:
            return cookieless_visitor_id(self.secret_key, hit.ip, hit.user_agent, now)
        cookie = hit.cookies.get(VISITOR_COOKIE)
        return cookie if cookie is not None and valid_visitor_id(cookie) else new_visitor_id()

    def _base_event(
        self, route: LinkRoute, hit: Hit, now: datetime, kind: EventType = EventType.CLICK
    ) -> TrackedEvent:
        prefix = "clk" if kind is EventType.CLICK else "imp"
        event_id = new_id(prefix, now_ms=int(now.timestamp() * 1000))
        event = TrackedEvent(
            event_id=event_id,
            type=kind.value,
            ts_ms=int(now.timestamp() * 1000),
            workspace_id=route.workspace_id,
            campaign_id=route.campaign_id,
            publisher_id=route.publisher_id,
            advertiser_id=route.advertiser_id,
            offer_id=route.offer_id,
            link_id=route.link_id,
            channel=route.channel,
            click_id=event_id if kind is EventType.CLICK else None,
            visitor_id=self._visitor_id(hit, now),
            referrer=hit.referrer,
            ip=anonymize_ip(hit.ip, self.settings.ip_anonymization),
            user_agent=hit.user_agent,
            language=primary_language(hit.accept_language),
            country=hit.country,
            source="link",
        )
        params = hit.params
        for name in _SUB_AND_UTM:
            value = route.fixed.get(name) or params.get(name)
            if value:
                setattr(event, name, value)
        external = {name: params[name] for name in EXTERNAL_CLICK_IDS if params.get(name)}
        if external:
            event.external_ids = external
        if hit.method == "HEAD":
            event.is_bot, event.bot_reason = True, "head_request"
        return event

    def _check_campaign(self, route: LinkRoute, now: datetime) -> DropReason | None:
        if not route.link_active or route.campaign_status is not CampaignStatus.ACTIVE:
            return (
                DropReason.CAPPED
                if route.campaign_status is CampaignStatus.CAPPED
                else DropReason.PAUSED_CAMPAIGN
            )
        if not route.schedule.is_running(now):
            return DropReason.PAUSED_CAMPAIGN
        return None

    def _check_targeting(
        self, route: LinkRoute, hit: Hit, event: TrackedEvent, now: datetime
    ) -> DropReason | None:
        if not route.targeting:
            return None
        visitor = Visitor(
            country=event.country,
            language=event.language,
            hour=now.astimezone(route.timezone).hour,
        )
        if route.needs_user_agent and hit.user_agent:
            agent = parse_user_agent(hit.user_agent)
            visitor = Visitor(
                country=visitor.country,
                language=visitor.language,
                hour=visitor.hour,
                device=agent.device,
                os=agent.os,
                browser=agent.browser,
            )
        return None if matches_targeting(route.targeting, visitor) else DropReason.NOT_TARGETED

    def _fallback(self, route: LinkRoute, event: TrackedEvent, drop: DropReason) -> ClickOutcome:
        """Send the visitor to the campaign's fallback; log the click as not billable."""
        event.drop_reason = drop.value
        self.wal.append(event.to_json())
        self.count(EventType.CLICK, drop)
        if route.fallback_url is None:
            return ClickOutcome(404, drop=drop, visitor_id=event.visitor_id)
        location = fill_macros(route.fallback_url, self._macro_values(route, event))
        if not same_origin(route.fallback_url, location):
            return ClickOutcome(404, drop=drop)
        return ClickOutcome(302, location, event.click_id, event.visitor_id, False, drop)

    def _macro_values(self, route: LinkRoute, event: TrackedEvent) -> dict[str, str | None]:
        values: dict[str, str | None] = {
            "click_id": event.click_id,
            "campaign_id": route.campaign_id,
            "publisher_id": route.publisher_id,
            "link_id": route.link_id,
            "offer_id": route.offer_id,
            "creative": event.creative,
            "landing_page": event.landing_page,
            "visitor_id": event.visitor_id,
        }
        for name in _SUB_AND_UTM:
            values[name] = getattr(event, name)
        return values

    def _landing_url(self, template: str, route: LinkRoute, event: TrackedEvent, hit: Hit) -> str:
        url = fill_macros(template, self._macro_values(route, event))
        fixed = route.fixed
        extra = [
            (name, fixed.get(name, value))
            for name, value in hit.ordered_params
            if name in route.passthrough and value and name != self.settings.click_id_param
        ]
        extra.append((self.settings.click_id_param, event.click_id or ""))
        url = append_params(url, extra)
        if not same_origin(template, url):  # defence in depth: never leave the configured host
            raise ValueError(f"landing URL {url!r} left the configured origin of {template!r}")
        return url
