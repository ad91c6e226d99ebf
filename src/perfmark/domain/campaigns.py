"""Campaigns: what is bought on which channel, at what price, within which budget and targeting."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from perfmark.domain.offers import WeightedUrl, check_weighted
from perfmark.domain.parties import Channel, check_channel
from perfmark.domain.pricing import BillableEvent, Price, PricingRule
from perfmark.domain.rules import (
    check_currency,
    check_decimal,
    check_http_url,
    check_name,
    check_positive_int,
)
from perfmark.errors import IllegalTransitionError, ValidationError

__all__ = [
    "ALLOWED_TRANSITIONS",
    "BillingAttribution",
    "CampaignSpec",
    "CampaignStatus",
    "Cap",
    "CapMetric",
    "CapPeriod",
    "CapScope",
    "Schedule",
    "TargetingField",
    "TargetingRule",
    "VisitorFacts",
    "check_transition",
    "matches_targeting",
]


class CampaignStatus(StrEnum):
    """Where a campaign is in its life."""

    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    CAPPED = "capped"  #: a budget or cap is exhausted for the current period
    ENDED = "ended"  #: final


#: The legal status changes; anything else is refused with IllegalTransitionError.
ALLOWED_TRANSITIONS: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    CampaignStatus.DRAFT: frozenset({CampaignStatus.ACTIVE, CampaignStatus.ENDED}),
    CampaignStatus.ACTIVE: frozenset(
        {CampaignStatus.PAUSED, CampaignStatus.CAPPED, CampaignStatus.ENDED}
    ),
    CampaignStatus.PAUSED: frozenset({CampaignStatus.ACTIVE, CampaignStatus.ENDED}),
    CampaignStatus.CAPPED: frozenset(
        {CampaignStatus.ACTIVE, CampaignStatus.PAUSED, CampaignStatus.ENDED}
    ),
    CampaignStatus.ENDED: frozenset(),
}


def check_transition(current: CampaignStatus, new: CampaignStatus) -> None:
    """Refuse a status change the lifecycle does not allow (a no-op change is allowed)."""
    current, new = _status(current), _status(new)
    if current == new:
        return
    allowed = ALLOWED_TRANSITIONS[current]
    if new not in allowed:
        options = ", ".join(sorted(allowed)) or "none (ended is final)"
        raise IllegalTransitionError(
            f"a {current.value} campaign cannot become {new.value}; allowed: {options}",
            field="status",
        )


def _status(value: str) -> CampaignStatus:
    try:
        return CampaignStatus(value)
    except ValueError:
        raise ValidationError(
            f"status {value!r} is unknown; use one of {', '.join(CampaignStatus)}", field="status"
        ) from None


class CapScope(StrEnum):
    """What a cap counts over."""

    CAMPAIGN = "campaign"
    PUBLISHER = "publisher"  #: per publisher of the campaign (or one publisher when named)
    GOAL = "goal"  #: per goal of the campaign (or one goal when named)


class CapPeriod(StrEnum):
    """The window a cap resets on, in the workspace's time zone."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    TOTAL = "total"


class CapMetric(StrEnum):
    """Whether a cap limits a count of conversions or an amount of spend."""

    COUNT = "count"
    MONEY = "money"


@dataclass(frozen=True)
class Cap:
    """A limit on conversions or spend per period."""

    limit: Decimal
    scope: CapScope = CapScope.CAMPAIGN
    period: CapPeriod = CapPeriod.DAY
    metric: CapMetric = CapMetric.COUNT
    publisher_id: str | None = None
    goal_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "limit", check_decimal("limit", self.limit, exclusive_minimum=True)
        )
        for name, enum in (("scope", CapScope), ("period", CapPeriod), ("metric", CapMetric)):
            try:
                object.__setattr__(self, name, enum(getattr(self, name)))
            except ValueError:
                raise ValidationError(
                    f"cap {name} {getattr(self, name)!r} is unknown; use one of "
                    + ", ".join(member.value for member in enum),
                    field=name,
                ) from None
        if self.metric is CapMetric.COUNT and self.limit != self.limit.to_integral_value():
            raise ValidationError(
                f"a count cap needs a whole number, not {self.limit}", field="limit"
            )
        if self.publisher_id and self.scope is not CapScope.PUBLISHER:
            raise ValidationError("publisher_id is only for publisher caps", field="publisher_id")
        if self.goal_id and self.scope is not CapScope.GOAL:
            raise ValidationError("goal_id is only for goal caps", field="goal_id")


@dataclass(frozen=True)
class Schedule:
    """When a campaign runs: an optional start and end (UTC instants)."""

    starts_at: datetime | None = None
    ends_at: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("starts_at", "ends_at"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValidationError(
                    f"{name} {value.isoformat()} has no time zone; add one such as Z or +02:00",
                    field=name,
                )
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError("ends_at must be after starts_at", field="ends_at")

    def is_running(self, now: datetime) -> bool:
        """Whether `now` falls inside the schedule."""
        if self.starts_at is not None and now < self.starts_at:
            return False
        return self.ends_at is None or now < self.ends_at


class TargetingField(StrEnum):
    """What a targeting rule looks at."""

    COUNTRY = "country"  #: ISO 3166-1 alpha-2, upper case
    DEVICE = "device"  #: desktop, mobile, tablet, bot, other
    OS = "os"  #: family name as ua-parser reports it, e.g. "Android", "iOS", "Windows"
    BROWSER = "browser"  #: family name, e.g. "Chrome", "Safari"
    LANGUAGE = "language"  #: primary language subtag, e.g. "en"
    HOUR = "hour"  #: hour of day 0-23 in the workspace's time zone


#: The facts about one request that targeting can test, as text (None when unknown).
VisitorFacts = Mapping[TargetingField, str | None]


@dataclass(frozen=True)
class TargetingRule:
    """Traffic must (or must not, when `exclude`) have one of `values` for `field`."""

    field: TargetingField
    values: tuple[str, ...]
    exclude: bool = False

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "field", TargetingField(self.field))
        except ValueError:
            raise ValidationError(
                f"targeting field {self.field!r} is unknown; use one of "
                + ", ".join(TargetingField),
                field="targeting",
            ) from None
        if isinstance(self.values, str):  # "US" would otherwise become ("U", "S")
            raise ValidationError(
                f"targeting values for {self.field} is {self.values!r}; give a list of values",
                field="targeting",
            )
        if not self.values:
            raise ValidationError(
                f"targeting on {self.field} needs at least one value", field="targeting"
            )
        normalized = tuple(_normalize(self.field, str(value)) for value in self.values)
        object.__setattr__(self, "values", normalized)

    def matches(self, facts: VisitorFacts) -> bool:
        """Whether a visitor with these facts passes the rule."""
        return self.admits(facts.get(self.field))

    def admits(self, actual: str | None) -> bool:
        """Whether a visitor whose value for the rule's field is `actual` passes the rule."""
        hit = actual is not None and _normalize(self.field, actual) in self.values
        return not hit if self.exclude else hit


def _normalize(field: TargetingField, value: str) -> str:
    if field is TargetingField.COUNTRY:
        return value.strip().upper()
    if field is TargetingField.HOUR:
        try:
            hour = int(value)
        except ValueError:
            raise ValidationError(
                f"targeting hour {value!r} is not a whole hour 0-23", field="targeting"
            ) from None
        if not 0 <= hour <= 23:
            raise ValidationError(f"targeting hour {hour} is outside 0-23", field="targeting")
        return str(hour)
    return value.strip().lower()


def matches_targeting(rules: tuple[TargetingRule, ...], facts: VisitorFacts) -> bool:
    """A visitor is targeted when every rule passes (no rules: everyone)."""
    return all(rule.matches(facts) for rule in rules)


def _shown(price: Price) -> str:
    parts = []
    if price.amount or not price.percent:
        parts.append(f"{price.amount}")
    if price.percent:
        parts.append(f"{price.percent}% of the value")
    return f"{price.model.value} " + " + ".join(parts)


class BillingAttribution(StrEnum):
    """The deterministic rule billing uses to credit a conversion to one click."""

    LAST_CLICK = "last_click"
    FIRST_CLICK = "first_click"


@dataclass(frozen=True)
class CampaignSpec:
    """A campaign: advertiser, offer, channel, goals, pricing, budget, caps, targeting, rotation."""

    name: str
    advertiser_id: str
    offer_id: str
    channel: Channel = Channel.AFFILIATE
    goal_ids: tuple[str, ...] = ()
    pricing: tuple[PricingRule, ...] = ()
    currency: str = "USD"
    daily_budget: Decimal | None = None
    total_budget: Decimal | None = None
    caps: tuple[Cap, ...] = ()
    schedule: Schedule = Schedule()
    targeting: tuple[TargetingRule, ...] = ()
    landing_pages: tuple[WeightedUrl, ...] = ()
    creatives: tuple[WeightedUrl, ...] = ()
    fallback_url: str | None = None
    attribution_window_days: int = 30
    billing_attribution: BillingAttribution = BillingAttribution.LAST_CLICK
    hold_days: int = 0
    #: Accept pricing where the publisher can earn more than the advertiser pays (the
    #: platform books the difference as a loss). Off: such pricing is refused when saved.
    allow_negative_margin: bool = False
    #: Conversions worth more than this (campaign currency) wait for a person's approval:
    #: their earning is held and never auto-approved. None: no value limit.
    auto_approve_max_value: Decimal | None = None
    status: CampaignStatus = CampaignStatus.DRAFT

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", check_name("name", self.name))
        object.__setattr__(self, "channel", check_channel(self.channel))
        object.__setattr__(self, "currency", check_currency("currency", self.currency))
        for name in ("daily_budget", "total_budget"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_decimal(name, value, exclusive_minimum=True))
        if (
            self.daily_budget is not None
            and self.total_budget is not None
            and self.daily_budget > self.total_budget
        ):
            raise ValidationError(
                f"daily_budget {self.daily_budget} is above total_budget {self.total_budget}",
                field="daily_budget",
            )
        object.__setattr__(self, "goal_ids", tuple(dict.fromkeys(self.goal_ids)))
        object.__setattr__(self, "pricing", tuple(self.pricing))
        self._check_pricing()
        object.__setattr__(self, "caps", tuple(self.caps))
        object.__setattr__(self, "targeting", tuple(self.targeting))
        object.__setattr__(
            self, "landing_pages", check_weighted("landing_pages", tuple(self.landing_pages))
        )
        object.__setattr__(self, "creatives", check_weighted("creatives", tuple(self.creatives)))
        if self.fallback_url is not None:
            check_http_url("fallback_url", self.fallback_url)
        check_positive_int("attribution_window_days", self.attribution_window_days)
        check_positive_int("hold_days", self.hold_days, allow_zero=True)
        if not isinstance(self.allow_negative_margin, bool):
            raise ValidationError(
                f"allow_negative_margin is {self.allow_negative_margin!r}; use true or false",
                field="allow_negative_margin",
            )
        if self.auto_approve_max_value is not None:
            object.__setattr__(
                self,
                "auto_approve_max_value",
                check_decimal("auto_approve_max_value", self.auto_approve_max_value),
            )
        self._check_margin()
        try:
            object.__setattr__(
                self, "billing_attribution", BillingAttribution(self.billing_attribution)
            )
        except ValueError:
            raise ValidationError(
                f"billing_attribution {self.billing_attribution!r} is unknown; use one of "
                + ", ".join(BillingAttribution),
                field="billing_attribution",
            ) from None
        object.__setattr__(self, "status", _status(self.status))

    def _check_margin(self) -> None:
        """Refuse pricing whose payout can pass the charge, unless a loss is accepted."""
        if self.allow_negative_margin:
            return
        for rule in self.pricing:
            for earns in (rule.earns, *(tier.earns for tier in rule.tiers)):
                if earns.amount > rule.pays.amount or earns.percent > rule.pays.percent:
                    what = f"goal {rule.goal_id}" if rule.goal_id else f"{rule.event.value}s"
                    who = f" for publisher {rule.publisher_id}" if rule.publisher_id else ""
                    raise ValidationError(
                        f"pricing of {what}{who}: the publisher earns {_shown(earns)} but the "
                        f"advertiser pays {_shown(rule.pays)}, so a payout can exceed the "
                        "charge; lower the payout (tiers included) or set "
                        "allow_negative_margin to true to accept the loss",
                        field="pricing",
                    )

    def _check_pricing(self) -> None:
        seen: set[tuple[BillableEvent, str | None, str | None]] = set()
        for rule in self.pricing:
            if rule.goal_id is not None and rule.goal_id not in self.goal_ids:
                raise ValidationError(
                    f"pricing names goal {rule.goal_id}, which is not in goal_ids; add it there",
                    field="pricing",
                )
            key = (rule.event, rule.goal_id, rule.publisher_id)
            if key in seen:
                raise ValidationError(
                    f"pricing has two rules for {rule.event.value} goal={rule.goal_id} "
                    f"publisher={rule.publisher_id}; keep one",
                    field="pricing",
                )
            seen.add(key)
