"""Bid recommendations per publisher or sub id of a campaign, for a target CPA or ROAS.

Each segment's conversion rate is shrunk toward the campaign's average by empirical Bayes
(a Beta prior fitted to all the campaign's segments), so a thin segment gets a bid close to
the campaign's and a thick one its own. Conversions are those of the request's goal (lead
quality) and value is their revenue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

import numpy as np

from perfmark.adapters.store.kinds import CAMPAIGNS
from perfmark.domain.campaigns import CampaignSpec
from perfmark.domain.links import SUB_FIELDS
from perfmark.domain.pricing import BillableEvent
from perfmark.domain.records import Record
from perfmark.domain.rules import check_decimal
from perfmark.errors import PerfmarkError, ValidationError
from perfmark.money import Money
from perfmark.optimize.domain.bids import (
    DEFAULT_BID_CREDIBLE_LEVEL,
    BidBasis,
    BidRecommendations,
    SegmentPerformance,
    TargetCpa,
    TargetRoas,
    recommend_bids,
)
from perfmark.optimize.services.metrics import MetricQuery, grouped_metrics, workspace_zone
from perfmark.optimize.services.rules import require_optimizer_reader
from perfmark.services import catalog
from perfmark.services.container import Container, Principal

__all__ = [
    "BidAdvice",
    "BidRequest",
    "BidSegmentKind",
    "parse_bid_request",
    "recommend_campaign_bids",
]

DEFAULT_BID_HISTORY_DAYS = 28


class BidSegmentKind(StrEnum):
    """What a bid is recommended for."""

    PUBLISHER = "publisher"
    SUB_ID = "sub_id"  #: "<publisher id>:<sub id>"


@dataclass(frozen=True)
class BidRequest:
    """Bids for one campaign's publishers or sub ids at a target CPA or ROAS."""

    campaign_id: str
    by: BidSegmentKind = BidSegmentKind.PUBLISHER
    target_cpa: Decimal | None = None
    target_roas: Decimal | None = None
    goal: str | None = None
    history_days: int = DEFAULT_BID_HISTORY_DAYS
    basis: BidBasis | None = None  #: None: CPM when the campaign buys impressions, else CPC
    credible_level: float = DEFAULT_BID_CREDIBLE_LEVEL
    sub_field: str = "sub1"
    publisher_id: str | None = None  #: only this publisher's sub ids


def parse_bid_request(data: Mapping[str, Any]) -> BidRequest:
    """A BidRequest from JSON-like data; exactly one of target_cpa and target_roas."""
    campaign_id = data.get("campaign_id")
    if not isinstance(campaign_id, str) or not campaign_id:
        raise ValidationError("campaign_id is required", field="campaign_id")
    cpa, roas = data.get("target_cpa"), data.get("target_roas")
    if (cpa is None) == (roas is None):
        raise ValidationError(
            'give exactly one of target_cpa (e.g. "40") and target_roas (e.g. "1.5")',
            field="target_cpa",
        )
    try:
        by = BidSegmentKind(data.get("by", "publisher"))
        basis = None if data.get("basis") is None else BidBasis(data["basis"])
    except ValueError:
        raise ValidationError(
            "by must be publisher or sub_id; basis cpc or cpm", field="by"
        ) from None
    days = data.get("history_days", DEFAULT_BID_HISTORY_DAYS)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365:
        raise ValidationError(f"history_days is {days!r}; give 1 to 365", field="history_days")
    level = data.get("credible_level", DEFAULT_BID_CREDIBLE_LEVEL)
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise ValidationError(
            f"credible_level is {level!r}; give a number between 0 and 1", field="credible_level"
        )
    sub_field = data.get("sub_field", "sub1")
    if sub_field not in SUB_FIELDS:
        raise ValidationError(
            f"sub_field {sub_field!r} is unknown; use one of {', '.join(SUB_FIELDS)}",
            field="sub_field",
        )
    goal = data.get("goal")
    if goal is not None and not isinstance(goal, str):
        raise ValidationError(f"goal is {goal!r}; give a goal key", field="goal")
    publisher = data.get("publisher_id")
    return BidRequest(
        campaign_id=campaign_id,
        by=by,
        target_cpa=None
        if cpa is None
        else check_decimal("target_cpa", cpa, exclusive_minimum=True),
        target_roas=None
        if roas is None
        else check_decimal("target_roas", roas, exclusive_minimum=True),
        goal=goal,
        history_days=days,
        basis=basis,
        credible_level=float(level),
        sub_field=str(sub_field),
        publisher_id=publisher if isinstance(publisher, str) and publisher else None,
    )


@dataclass(frozen=True)
class BidAdvice:
    """The recommended bids, today's bids beside them, and the data period."""

    request: BidRequest
    recommendations: BidRecommendations
    current_bids: Mapping[str, Decimal | None]
    first_day: date
    last_day: date
    notes: tuple[str, ...]


def _basis(spec: CampaignSpec, wanted: BidBasis | None) -> BidBasis:
    if wanted is not None:
        return wanted
    events = {rule.event for rule in spec.pricing}
    return (
        BidBasis.CPM
        if BillableEvent.IMPRESSION in events and BillableEvent.CLICK not in events
        else BidBasis.CPC
    )


def _current_bid(spec: CampaignSpec, publisher_id: str, basis: BidBasis) -> Decimal | None:
    event = BillableEvent.IMPRESSION if basis is BidBasis.CPM else BillableEvent.CLICK
    general = None
    for rule in spec.pricing:
        if rule.event is not event:
            continue
        if rule.publisher_id == publisher_id:
            return rule.pays.amount
        if rule.publisher_id is None:
            general = rule.pays.amount
    return general


def recommend_campaign_bids(
    container: Container,
    principal: Principal,
    request: BidRequest,
    *,
    rng: np.random.Generator | None = None,
) -> BidAdvice:
    """Break-even bids per segment at the target, with credible intervals and shrinkage."""
    require_optimizer_reader(principal)
    try:
        campaign: Record[CampaignSpec] = catalog.get_object(
            container, principal, CAMPAIGNS, request.campaign_id
        )
    except PerfmarkError:
        raise ValidationError(
            f"campaign_id {request.campaign_id!r} names no campaign in this workspace",
            field="campaign_id",
        ) from None
    spec = campaign.spec
    basis = _basis(spec, request.basis)
    zone = workspace_zone(container, principal.workspace_id)
    last = container.clock.now().astimezone(zone).date() - timedelta(days=1)
    first = last - timedelta(days=request.history_days - 1)
    dimensions = (
        ("publisher",)
        if request.by is BidSegmentKind.PUBLISHER
        else ("publisher", request.sub_field)
    )
    filters: dict[str, tuple[str, ...]] = {"campaign": (campaign.id,)}
    if request.publisher_id:
        filters["publisher"] = (request.publisher_id,)
    groups = grouped_metrics(
        container,
        MetricQuery(
            workspace_id=principal.workspace_id,
            start=first,
            end=last,
            dimensions=dimensions,
            metrics=("impressions", "clicks", "conversions", "revenue"),
            filters=filters,
            goal=request.goal,
            currency=spec.currency,
        ),
    )
    notes: list[str] = []
    segments = []
    for key, values in sorted(groups.items()):
        if not all(key):
            continue
        clicks = max(int(values["clicks"]), 0)
        impressions = max(int(values["impressions"]), 0)
        trials = impressions if basis is BidBasis.CPM else clicks
        conversions = max(int(values["conversions"]), 0)
        if conversions > trials:
            notes.append(
                f"{':'.join(key)}: {conversions} conversions from {trials} "
                f"{'impressions' if basis is BidBasis.CPM else 'clicks'}; capped"
            )
            conversions = trials
        value = max(values["revenue"], Decimal(0)) if conversions else Decimal(0)
        segments.append(SegmentPerformance(":".join(key), clicks, conversions, value, impressions))
    if len(segments) < 2:
        raise ValidationError(
            f"campaign {campaign.id} has {len(segments)} {request.by.value}(s) with traffic "
            f"from {first} to {last}; bids need at least 2 to learn the campaign's average",
            field="campaign_id",
        )
    target: TargetCpa | TargetRoas
    if request.target_cpa is not None:
        target = TargetCpa(Money(request.target_cpa, spec.currency))
    else:
        assert request.target_roas is not None
        target = TargetRoas(request.target_roas, spec.currency)
    recommendations = recommend_bids(
        segments,
        target,
        rng=rng or np.random.default_rng(),
        basis=basis,
        credible_level=request.credible_level,
    )
    current = {
        segment.segment: _current_bid(spec, segment.segment.split(":", 1)[0], basis)
        for segment in segments
    }
    return BidAdvice(request, recommendations, current, first, last, tuple(notes))
