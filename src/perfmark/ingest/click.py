"""The click: resolve the link, check the campaign, target, rotate, log, and redirect.

Named steps, each of which can end the request with a typed drop reason. The redirect
never waits on the store: the link comes from the in-memory config snapshot and the
click is appended to this worker's write-ahead log before the answer.

This is the hot path, so the click is written straight to its log record: the JSON that
`TrackedEvent.to_json()` would give, byte for byte, from the parts of it that each link
pre-builds (`LinkRoute.event_members` and the rotation members) and the few values that
vary per click, without building the 56-field event (measured: the event and its
serialization were a third of a click's cost).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring

from perfmark.adapters.useragent import parse_user_agent
from perfmark.adapters.wal_writer import WalWriter
from perfmark.clock import Clock
from perfmark.domain.campaigns import (
    CampaignStatus,
    TargetingField,
    matches_targeting,
)
from perfmark.domain.events import DropReason, EventType
from perfmark.domain.links import EXTERNAL_CLICK_IDS, SUB_FIELDS, UTM_FIELDS
from perfmark.ids import new_id
from perfmark.ingest.hits import Hit
from perfmark.ingest.macros import (
    append_params,
    compile_landing,
    fill_macros,
    same_origin,
    to_uri,
)
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
_SUB_AND_UTM_NAMES = frozenset(_SUB_AND_UTM)
#: Each external click id's place in EXTERNAL_CLICK_IDS, the order a record lists them in.
_EXTERNAL_ORDER = {name: index for index, name in enumerate(EXTERNAL_CLICK_IDS)}
#: The JSON member names of the sub ids and UTMs, each with its leading comma.
_SUB_AND_UTM_KEYS = tuple((name, f',"{name}":') for name in _SUB_AND_UTM)
_HEAD_BOT_MEMBERS = ',"is_bot":true,"bot_reason":"head_request"'
_TYPE_MEMBERS = {
    EventType.CLICK: '","type":"click","ts_ms":',
    EventType.IMPRESSION: '","type":"impression","ts_ms":',
}
_ID_PREFIX = {EventType.CLICK: "clk", EventType.IMPRESSION: "imp"}


@dataclass(slots=True)
class ClickOutcome:
    """How to answer a click: where to send the visitor and what was recorded."""

    status: int
    location: str | None = None
    click_id: str | None = None
    visitor_id: str | None = None
    new_visitor: bool = False
    drop: DropReason | None = None


@dataclass(slots=True)
class _Click:
    """What one click or impression records beyond its link's constant fields."""

    kind: EventType
    event_id: str
    ts_ms: int
    visitor_id: str
    new_visitor: bool
    #: Sub ids and UTMs with a value (the link's fixed value, else the request's), in order.
    subs: dict[str, str]
    language: str | None
    creative: str | None = None
    landing_page: str | None = None
    drop: DropReason | None = None

    @property
    def click_id(self) -> str | None:
        return self.event_id if self.kind is EventType.CLICK else None


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
        click = self._begin(route, hit, now, EventType.CLICK)
        drop = self._check_campaign(route, now) or self._check_targeting(route, hit, click, now)
        if drop is not None:
            return self._fallback(route, hit, click, drop)
        pages = route.landing_pages
        if not pages.total:  # an offer without pages: nowhere to send anyone
            return self._fallback(route, hit, click, DropReason.PAUSED_CAMPAIGN)
        page = pages.index(self.rng.randrange(pages.total))
        creatives = route.creatives
        creative = creatives.index(self.rng.randrange(creatives.total)) if creatives.total else -1
        if page < 0:
            return self._fallback(route, hit, click, DropReason.PAUSED_CAMPAIGN)
        click.landing_page = pages.items[page].key
        members = route.page_members[page]
        if creative >= 0:
            click.creative = creatives.items[creative].key
            members = route.creative_members[creative] + members
        else:
            click.creative = hit.param("creative")
            if click.creative is not None:
                members = f',"creative":{encode_basestring(click.creative)}{members}'
        self.wal.append(self._record(route, hit, click, members))
        self.count(EventType.CLICK, None)
        location = self._landing_url(pages.items[page].url, route, click, hit)
        return ClickOutcome(302, location, click.event_id, click.visitor_id, click.new_visitor)

    def impression(self, slug: str, hit: Hit) -> ClickOutcome:
        """Record an impression of a link's creative (the pixel answers the same either way)."""
        route = self.snapshot().links.get(slug)
        if route is None:
            self.count(EventType.IMPRESSION, DropReason.UNKNOWN_LINK)
            return ClickOutcome(200, drop=DropReason.UNKNOWN_LINK)
        now = self.clock.now()
        click = self._begin(route, hit, now, EventType.IMPRESSION)
        click.creative = hit.param("creative")
        click.drop = drop = self._check_campaign(route, now)
        members = (
            "" if click.creative is None else f',"creative":{encode_basestring(click.creative)}'
        )
        self.wal.append(self._record(route, hit, click, members))
        self.count(EventType.IMPRESSION, drop)
        return ClickOutcome(200, None, None, click.visitor_id, click.new_visitor, drop)

    def _begin(self, route: LinkRoute, hit: Hit, now: datetime, kind: EventType) -> _Click:
        """Mint the event id and resolve the visitor, language, sub ids and UTMs."""
        ts_ms = int(now.timestamp() * 1000)
        event_id = new_id(_ID_PREFIX[kind], now_ms=ts_ms)
        if self.settings.cookieless:
            visitor_id = cookieless_visitor_id(self.secret_key, hit.ip, hit.user_agent, now)
            new_visitor = False
        else:
            cookie = hit.cookies.get(VISITOR_COOKIE)
            new_visitor = not valid_visitor_id(cookie)
            visitor_id = new_visitor_id() if new_visitor or cookie is None else cookie
        # A sub id or UTM is the link's fixed value, else the request's (when not empty).
        subs = dict(route.fixed_subs)
        for name, value in hit.params.items():
            if value and name in _SUB_AND_UTM_NAMES and name not in subs:
                subs[name] = value
        language = primary_language(hit.accept_language)
        return _Click(kind, event_id, ts_ms, visitor_id, new_visitor, subs, language)

    def _record(self, route: LinkRoute, hit: Hit, click: _Click, members: str) -> bytes:
        """The click's log record: exactly `TrackedEvent.to_json()` of the same event."""
        parts = [
            '{"event_id":"', click.event_id, _TYPE_MEMBERS[click.kind], str(click.ts_ms),
            route.event_members, members,
        ]  # fmt: skip
        if click.kind is EventType.CLICK:
            parts += (',"click_id":"', click.event_id, '"')
        parts += (',"visitor_id":', encode_basestring(click.visitor_id))
        subs = click.subs
        if subs:
            for name, key in _SUB_AND_UTM_KEYS:
                value = subs.get(name)
                if value is not None:
                    parts += (key, encode_basestring(value))
        params = hit.params
        external = [name for name in params if name in _EXTERNAL_ORDER and params[name]]
        if external:
            external.sort(key=_EXTERNAL_ORDER.__getitem__)
            pairs = ",".join(
                f"{encode_basestring(name)}:{encode_basestring(params[name])}" for name in external
            )
            parts += (',"external_ids":{', pairs, "}")
        if hit.referrer is not None:
            parts += (',"referrer":', encode_basestring(hit.referrer))
        ip = anonymize_ip(hit.ip, self.settings.ip_anonymization)
        if ip is not None:
            parts += (',"ip":', encode_basestring(ip))
        if hit.user_agent is not None:
            parts += (',"user_agent":', encode_basestring(hit.user_agent))
        if click.language is not None:
            parts += (',"language":', encode_basestring(click.language))
        if hit.country is not None:
            parts += (',"country":', encode_basestring(hit.country))
        if hit.method == "HEAD":
            parts.append(_HEAD_BOT_MEMBERS)
        if click.drop is not None:
            parts += (',"drop_reason":', encode_basestring(click.drop.value))
        parts.append(',"source":"link"}')
        return "".join(parts).encode()

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
        self, route: LinkRoute, hit: Hit, click: _Click, now: datetime
    ) -> DropReason | None:
        if not route.targeting:
            return None
        # The facts the rules may test; the time zone and user agent only when a rule
        # needs them.
        facts: dict[TargetingField, str | None] = {
            TargetingField.COUNTRY: hit.country,
            TargetingField.LANGUAGE: click.language,
        }
        if route.needs_hour:
            facts[TargetingField.HOUR] = str(now.astimezone(route.timezone).hour)
        if route.needs_user_agent and hit.user_agent:
            agent = parse_user_agent(hit.user_agent)
            facts[TargetingField.DEVICE] = agent.device
            facts[TargetingField.OS] = agent.os
            facts[TargetingField.BROWSER] = agent.browser
        return None if matches_targeting(route.targeting, facts) else DropReason.NOT_TARGETED

    def _fallback(
        self, route: LinkRoute, hit: Hit, click: _Click, drop: DropReason
    ) -> ClickOutcome:
        """Send the visitor to the campaign's fallback; log the click as not billable."""
        click.drop = drop  # no landing page or creative was picked
        self.wal.append(self._record(route, hit, click, ""))
        self.count(EventType.CLICK, drop)
        if route.fallback_url is None:
            return ClickOutcome(404, drop=drop, visitor_id=click.visitor_id)
        location = to_uri(fill_macros(route.fallback_url, self._macro_values(route, click)))
        if not same_origin(route.fallback_url, location):
            return ClickOutcome(404, drop=drop)
        return ClickOutcome(302, location, click.event_id, click.visitor_id, False, drop)

    def _macro_values(self, route: LinkRoute, click: _Click) -> dict[str, str | None]:
        return {
            **route.macro_values,
            "click_id": click.click_id,
            "creative": click.creative,
            "landing_page": click.landing_page,
            "visitor_id": click.visitor_id,
            **click.subs,
        }

    def _landing_url(self, template: str, route: LinkRoute, click: _Click, hit: Hit) -> str:
        fixed, passthrough = route.fixed, route.passthrough
        click_id_param = self.settings.click_id_param
        params = hit.params
        # One value per name (the last one sent, as the event records it), in the order the
        # names were first sent (a dict keeps it); the link's fixed values win, and are
        # passed on even when the request does not carry them.
        sent = [name for name in params if name in passthrough and name != click_id_param]
        extra = [(name, value) for name in sent if (value := fixed.get(name) or params[name])]
        if route.fixed_passthrough:
            extra += [(name, value) for name, value in route.fixed_passthrough if name not in sent]
        extra.append((click_id_param, click.event_id))
        values = self._macro_values(route, click) if "{" in template else {}
        prepared = compile_landing(template)
        if prepared is not None:  # the usual URL: filled without parsing, origin kept
            return prepared.fill(values, extra)
        url = to_uri(append_params(fill_macros(template, values), extra))
        if not same_origin(template, url):  # defence in depth: never leave the configured host
            raise ValueError(f"landing URL {url!r} left the configured origin of {template!r}")
        return url
