"""Read models of the dashboard pages: overview, campaigns with metrics, partners, links."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from perfmark.adapters.store.kinds import ADVERTISERS, CAMPAIGNS, GOALS, LINKS, OFFERS, PUBLISHERS
from perfmark.adapters.store.resources import ResourceKind
from perfmark.billing.domain.postbacks import validate_postback_template
from perfmark.dashboard.cache import kept_report
from perfmark.domain.accounts import WRITE_ROLES, Role
from perfmark.domain.campaigns import CampaignSpec
from perfmark.domain.links import TrackingLinkSpec, tracking_url
from perfmark.domain.parties import AdvertiserSpec, PublisherSpec
from perfmark.domain.records import InvalidRecord, Record
from perfmark.errors import ForbiddenError, ValidationError
from perfmark.reports.api import scoped_filters
from perfmark.reports.domain.request import ReportRequest, parse_report_request
from perfmark.reports.service import ReportResult
from perfmark.services import catalog
from perfmark.services.accounts import get_workspace
from perfmark.services.container import Container, Principal

__all__ = [
    "ALLOWED_PERIOD_DAYS",
    "CampaignRow",
    "EditorOptions",
    "Kpi",
    "LinkRow",
    "Listing",
    "Overview",
    "PartnerRow",
    "Period",
    "OwnPublisher",
    "advertiser_rows",
    "campaign_rows",
    "editor_options",
    "kpi_metrics",
    "link_rows",
    "own_publisher",
    "overview",
    "period_ending_today",
    "publisher_rows",
    "require_roles",
    "set_own_postback_template",
    "staff_roles",
]

#: The period lengths the pages offer, in days (the overview defaults to the first).
ALLOWED_PERIOD_DAYS = (7, 14, 30, 90)
TOP_CAMPAIGNS = 5
#: Lists on one page: enough for a workspace's campaigns and partners, small enough to render.
LIST_LIMIT = 200
#: How old the figures a page shows may be while newer ones are computed (seconds).
PAGE_STALE_S = 30.0

_Row = TypeVar("_Row")


@dataclass(frozen=True)
class Listing(Generic[_Row]):
    """A list page's rows, the currency of their figures, and the objects it had to leave out.

    `invalid` names the objects whose stored data no longer passes validation: the page says
    so, rather than hiding them or failing as a whole.
    """

    rows: tuple[_Row, ...]
    currency: str  #: empty for lists without figures
    invalid: tuple[InvalidRecord, ...] = ()


_LABELS = {
    "cost": "Spend",
    "revenue": "Revenue",
    "conversions": "Conversions",
    "cpa": "CPA",
    "roas": "ROAS",
    "clicks": "Clicks",
    "conversion_rate": "Conversion rate",
    "payout": "Earnings",
}
_MONEY = frozenset({"cost", "revenue", "cpa", "payout"})
_ADVERTISER_KPIS = ("cost", "revenue", "conversions", "cpa", "roas")
_PUBLISHER_KPIS = ("clicks", "conversions", "conversion_rate", "payout")
_CAMPAIGN_METRICS = ("clicks", "conversions", "cost", "revenue", "cpa", "roas")
_PUBLISHER_METRICS = ("clicks", "conversions", "conversions_approved", "payout")
_ADVERTISER_METRICS = ("clicks", "conversions", "conversions_approved", "cost", "revenue")


def staff_roles() -> frozenset[Role]:
    """Roles that see the whole workspace (owner, admin, analyst)."""
    return frozenset({Role.OWNER, Role.ADMIN, Role.ANALYST})


def require_roles(principal: Principal, roles: frozenset[Role], what: str) -> None:
    """Refuse a page or action to roles it is not for, naming who may use it."""
    if principal.role not in roles:
        raise ForbiddenError(
            f"the {principal.role.value} role cannot open {what}; it is for "
            + ", ".join(sorted(role.value for role in roles))
        )


@dataclass(frozen=True)
class Period:
    """A range of local days in a time zone, inclusive at both ends."""

    start: date
    end: date
    timezone: str

    @property
    def days(self) -> int:
        """How many days the period covers."""
        return (self.end - self.start).days + 1

    def each_day(self) -> list[date]:
        """Every day of the period, in order."""
        return [self.start + timedelta(days=offset) for offset in range(self.days)]


def period_ending_today(container: Container, principal: Principal, days: int) -> Period:
    """The last `days` local days of the workspace's time zone, today included."""
    if days not in ALLOWED_PERIOD_DAYS:
        raise ValidationError(
            f"days {days} is not offered; use one of {', '.join(map(str, ALLOWED_PERIOD_DAYS))}",
            field="days",
        )
    timezone = get_workspace(container, principal.workspace_id).spec.timezone
    today = container.clock.now().astimezone(ZoneInfo(timezone)).date()
    return Period(today - timedelta(days=days - 1), today, timezone)


def kpi_metrics(principal: Principal) -> tuple[str, ...]:
    """The KPI tiles a role sees: publishers see their traffic and earnings, not spend."""
    return _PUBLISHER_KPIS if principal.role is Role.PUBLISHER else _ADVERTISER_KPIS


def _request(
    principal: Principal,
    period: Period,
    metrics: tuple[str, ...],
    dimensions: tuple[str, ...] = (),
    *,
    compare: bool = False,
    order_by: str | None = None,
    limit: int = LIST_LIMIT,
    filters: dict[str, str] | None = None,
) -> ReportRequest:
    return parse_report_request(
        principal.workspace_id,
        start=period.start,
        end=period.end,
        timezone=period.timezone,
        dimensions=dimensions,
        metrics=metrics,
        filters=scoped_filters(principal, dict(filters or {})),
        compare=compare,
        order_by=order_by,
        limit=limit,
    )


def _report(
    container: Container,
    principal: Principal,
    period: Period,
    metrics: tuple[str, ...],
    dimensions: tuple[str, ...] = (),
    **options: Any,
) -> ReportResult:
    """A page's report, kept over the lake; after new events the figures from before (at
    most PAGE_STALE_S old) are shown while one background thread computes the new ones."""
    return _kept(container, principal, period, metrics, dimensions, **options)[0]


def _kept(
    container: Container,
    principal: Principal,
    period: Period,
    metrics: tuple[str, ...],
    dimensions: tuple[str, ...] = (),
    *,
    stale_for_s: float = PAGE_STALE_S,
    **options: Any,
) -> tuple[ReportResult, str]:
    """As `_report`, with the lake version the figures were computed at."""
    request = _request(principal, period, metrics, dimensions, **options)
    return kept_report(container, request, stale_for_s=stale_for_s)


@dataclass(frozen=True)
class Kpi:
    """One tile: a metric's value over the period, the previous period's and the change."""

    metric: str
    label: str
    value: Decimal | int | None
    previous: Decimal | int | None
    change: Decimal | None
    money: bool


@dataclass(frozen=True)
class Overview:
    """The overview page: KPI tiles, a daily trend and the top campaigns."""

    period: Period
    currency: str
    kpis: tuple[Kpi, ...]
    trend_days: tuple[str, ...]
    trend: dict[str, tuple[Decimal | int, ...]]
    top_campaigns: tuple[dict[str, Any], ...]
    top_metrics: tuple[str, ...]
    #: The lake version the figures were computed at ("" when its reports disagree).
    data_version: str = ""


def overview(
    container: Container, principal: Principal, period: Period, *, stale_for_s: float = PAGE_STALE_S
) -> Overview:
    """KPIs with their change against the previous period, the trend by day, top campaigns."""
    metrics = kpi_metrics(principal)
    # One report by day gives the trend, and its totals (with compare) give the tiles.
    daily, daily_version = _kept(
        container, principal, period, metrics, ("day",), compare=True, stale_for_s=stale_for_s
    )
    previous = daily.previous_totals or {}
    kpis = tuple(
        Kpi(
            metric=name,
            label=_LABELS[name],
            value=daily.totals.get(name),
            previous=previous.get(name),
            change=daily.totals.get(f"{name}_change"),
            money=name in _MONEY,
        )
        for name in metrics
    )
    by_day = {row["day"]: row for row in daily.rows}
    days = tuple(day.isoformat() for day in period.each_day())
    trend = {
        name: tuple(by_day.get(day, {}).get(name) or 0 for day in days)
        for name in metrics
        if name not in ("cpa", "roas", "conversion_rate")
    }
    top_metrics = (
        ("clicks", "conversions", "payout")
        if principal.role is Role.PUBLISHER
        else ("conversions", "cost", "revenue", "roas")
    )
    top, top_version = _kept(
        container,
        principal,
        period,
        top_metrics,
        ("campaign",),
        order_by="conversions",
        limit=TOP_CAMPAIGNS,
        stale_for_s=stale_for_s,
    )
    return Overview(
        period=period,
        currency=daily.currency,
        kpis=kpis,
        trend_days=days,
        trend=trend,
        top_campaigns=top.rows,
        top_metrics=top_metrics,
        data_version=daily_version if daily_version == top_version else "",
    )


@dataclass(frozen=True)
class CampaignRow:
    """A campaign in the list, with its metrics over the period."""

    record: Record[CampaignSpec]
    advertiser_name: str
    metrics: dict[str, Any]


def _names(container: Container, principal: Principal, kind: Any) -> dict[str, str]:
    page = catalog.list_objects(container, principal, kind, limit=LIST_LIMIT, include_archived=True)
    return {record.id: record.spec.name for record in page.items}


def campaign_rows(
    container: Container, principal: Principal, period: Period, *, status: str | None = None
) -> Listing[CampaignRow]:
    """The caller's campaigns with clicks, conversions, spend, revenue, CPA and ROAS."""
    require_roles(principal, staff_roles() | {Role.ADVERTISER}, "campaigns")
    filters = {"status": status} if status else None
    page = catalog.list_objects(container, principal, CAMPAIGNS, filters=filters, limit=LIST_LIMIT)
    report = _report(container, principal, period, _CAMPAIGN_METRICS, ("campaign",))
    by_campaign = {row["campaign"]: row for row in report.rows}
    advertisers = _names(container, principal, ADVERTISERS)
    rows = tuple(
        CampaignRow(
            record=record,
            advertiser_name=advertisers.get(record.spec.advertiser_id, record.spec.advertiser_id),
            metrics={name: by_campaign.get(record.id, {}).get(name) for name in _CAMPAIGN_METRICS},
        )
        for record in page.items
    )
    return Listing(rows, report.currency, page.invalid)


@dataclass(frozen=True)
class PartnerRow:
    """An advertiser or publisher with its figures over the period."""

    id: str
    name: str
    currency: str
    detail: str
    metrics: dict[str, Any]


#: The spec of a partner kind: advertisers and publishers are listed the same way.
_PartySpec = TypeVar("_PartySpec", AdvertiserSpec, PublisherSpec)


def _partner_rows(
    container: Container,
    principal: Principal,
    period: Period,
    kind: ResourceKind[_PartySpec],
    metrics: tuple[str, ...],
    detail: Callable[[_PartySpec], str],
) -> Listing[PartnerRow]:
    """The caller's partners of one kind, each with its figures (report by `kind.singular`)."""
    page = catalog.list_objects(container, principal, kind, limit=LIST_LIMIT)
    report = _report(container, principal, period, metrics, (kind.singular,))
    by_id = {row[kind.singular]: row for row in report.rows}
    rows = tuple(
        PartnerRow(
            id=record.id,
            name=record.spec.name,
            currency=record.spec.currency,
            detail=detail(record.spec),
            metrics={name: by_id.get(record.id, {}).get(name) for name in metrics},
        )
        for record in page.items
        if isinstance(record.spec, kind.spec_type)
    )
    return Listing(rows, report.currency, page.invalid)


def publisher_rows(
    container: Container, principal: Principal, period: Period
) -> Listing[PartnerRow]:
    """Publishers (a publisher user: only itself) with clicks, conversions and earnings."""
    require_roles(principal, staff_roles() | {Role.PUBLISHER}, "publishers and payouts")
    return _partner_rows(
        container,
        principal,
        period,
        PUBLISHERS,
        _PUBLISHER_METRICS,
        lambda spec: spec.channel.value,
    )


def advertiser_rows(
    container: Container, principal: Principal, period: Period
) -> Listing[PartnerRow]:
    """Advertisers (an advertiser user: only itself) with conversions, spend and revenue."""
    require_roles(principal, staff_roles() | {Role.ADVERTISER}, "advertisers and invoices")
    return _partner_rows(
        container,
        principal,
        period,
        ADVERTISERS,
        _ADVERTISER_METRICS,
        lambda spec: spec.billing_mode.value,
    )


@dataclass(frozen=True)
class LinkRow:
    """A tracking link with the URL to paste and its campaign's name."""

    record: Record[TrackingLinkSpec]
    url: str
    campaign_name: str
    publisher_name: str


def link_rows(
    container: Container, principal: Principal, *, campaign_id: str | None = None
) -> Listing[LinkRow]:
    """Tracking links: a campaign's (staff), or a publisher user's own."""
    filters = {"campaign_id": campaign_id} if campaign_id else None
    page = catalog.list_objects(container, principal, LINKS, filters=filters, limit=LIST_LIMIT)
    if principal.role is Role.PUBLISHER:
        # A publisher may not list campaigns; the names of its own links' campaigns it may see.
        staff = Principal(principal.workspace_id, Role.ANALYST, actor_id=principal.actor_id)
        campaigns = _names(container, staff, CAMPAIGNS)
        publishers = {principal.publisher_id or "": "you"}
    else:
        campaigns = _names(container, principal, CAMPAIGNS)
        publishers = _names(container, principal, PUBLISHERS)
    base = container.settings.base_url
    rows = tuple(
        LinkRow(
            record=record,
            url=tracking_url(base, record.spec.slug),
            campaign_name=campaigns.get(record.spec.campaign_id, record.spec.campaign_id),
            publisher_name=publishers.get(record.spec.publisher_id, record.spec.publisher_id),
        )
        for record in page.items
    )
    return Listing(rows, "", page.invalid)


@dataclass(frozen=True)
class EditorOptions:
    """The choices of the campaign editor: advertisers, offers, goals and publishers by id."""

    advertisers: dict[str, str]
    offers: tuple[tuple[str, str, str], ...]  #: (id, name, advertiser id)
    goals: tuple[tuple[str, str, str], ...]  #: (id, name, key)
    publishers: dict[str, str]
    editable: bool


def editor_options(container: Container, principal: Principal) -> EditorOptions:
    """What the editor offers; read-only roles get the names they need to read a campaign."""
    require_roles(principal, staff_roles() | {Role.ADVERTISER}, "campaigns")
    # Goals are named on every campaign; a portal user may read the names of the workspace's
    # goals (not their settings), and publishers only when staff.
    reader = Principal(principal.workspace_id, Role.ANALYST, actor_id=principal.actor_id)
    goals = catalog.list_objects(container, reader, GOALS, limit=LIST_LIMIT).items
    offers = catalog.list_objects(container, principal, OFFERS, limit=LIST_LIMIT).items
    return EditorOptions(
        advertisers=_names(container, principal, ADVERTISERS),
        offers=tuple((o.id, o.spec.name, o.spec.advertiser_id) for o in offers),
        goals=tuple((g.id, g.spec.name, g.spec.key) for g in goals),
        publishers=(
            _names(container, principal, PUBLISHERS) if principal.role in staff_roles() else {}
        ),
        editable=principal.role in WRITE_ROLES,
    )


@dataclass(frozen=True)
class OwnPublisher:
    """A publisher user's own postback settings: the URL template and its signing secret."""

    record: Record[PublisherSpec]
    secret: str


def _acting_for(principal: Principal) -> tuple[Principal, str]:
    """Owner rights limited to the publisher user's own publisher, for its postback settings."""
    require_roles(principal, frozenset({Role.PUBLISHER}), "postback settings")
    if not principal.publisher_id:
        raise ForbiddenError("this publisher user is not bound to a publisher")
    acting = Principal(principal.workspace_id, Role.ADMIN, actor_id=principal.actor_id)
    return acting, principal.publisher_id


def own_publisher(container: Container, principal: Principal) -> OwnPublisher:
    """The signed-in publisher's postback settings (its secret signs postbacks sent to it)."""
    acting, publisher_id = _acting_for(principal)
    record: Record[PublisherSpec] = catalog.get_object(container, acting, PUBLISHERS, publisher_id)
    secret = catalog.postback_secret(container, acting, PUBLISHERS, publisher_id)
    return OwnPublisher(record, secret)


def set_own_postback_template(
    container: Container, principal: Principal, template: str
) -> Record[PublisherSpec]:
    """Let a publisher user change one field of its own publisher: the postback URL template."""
    acting, publisher_id = _acting_for(principal)
    template = template.strip()
    if template:
        validate_postback_template(template, field="postback_url_template")
    changes = {"postback_url_template": template or None}
    record: Record[PublisherSpec] = catalog.update_object(
        container, acting, PUBLISHERS, publisher_id, changes
    )
    return record
