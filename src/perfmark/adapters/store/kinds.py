"""The kinds of workspace-owned objects the store keeps, and the columns each is indexed by."""

from __future__ import annotations

from typing import Any

from perfmark.adapters.store import schema
from perfmark.adapters.store.resources import ResourceKind
from perfmark.domain.accounts import UserSpec
from perfmark.domain.campaigns import CampaignSpec
from perfmark.domain.links import TrackingLinkSpec
from perfmark.domain.offers import GoalSpec, OfferSpec
from perfmark.domain.parties import AdvertiserSpec, PublisherSpec

__all__ = ["ADVERTISERS", "CAMPAIGNS", "GOALS", "KINDS", "LINKS", "OFFERS", "PUBLISHERS", "USERS"]


def _advertiser(spec: AdvertiserSpec) -> dict[str, Any]:
    return {"name": spec.name, "currency": spec.currency}


def _publisher(spec: PublisherSpec) -> dict[str, Any]:
    return {"name": spec.name, "channel": spec.channel.value}


def _offer(spec: OfferSpec) -> dict[str, Any]:
    return {"name": spec.name, "advertiser_id": spec.advertiser_id}


def _goal(spec: GoalSpec) -> dict[str, Any]:
    return {"name": spec.name, "key": spec.key, "advertiser_id": spec.advertiser_id}


def _campaign(spec: CampaignSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "advertiser_id": spec.advertiser_id,
        "offer_id": spec.offer_id,
        "channel": spec.channel.value,
        "status": spec.status.value,
    }


def _link(spec: TrackingLinkSpec) -> dict[str, Any]:
    return {
        "name": spec.slug,
        "campaign_id": spec.campaign_id,
        "publisher_id": spec.publisher_id,
        "slug": spec.slug,
        "status": spec.status.value,
    }


def _user(spec: UserSpec) -> dict[str, Any]:
    return {"name": spec.name, "email": spec.email, "role": spec.role.value}


ADVERTISERS = ResourceKind(
    "advertisers", "advertiser", "adv", schema.advertisers, AdvertiserSpec, _advertiser,
    ("currency",),
)  # fmt: skip
PUBLISHERS = ResourceKind(
    "publishers", "publisher", "pub", schema.publishers, PublisherSpec, _publisher, ("channel",)
)
OFFERS = ResourceKind(
    "offers", "offer", "off", schema.offers, OfferSpec, _offer, ("advertiser_id",)
)
GOALS = ResourceKind(
    "goals", "goal", "goal", schema.goals, GoalSpec, _goal, ("key", "advertiser_id")
)
CAMPAIGNS = ResourceKind(
    "campaigns", "campaign", "cmp", schema.campaigns, CampaignSpec, _campaign,
    ("advertiser_id", "offer_id", "channel", "status"),
)  # fmt: skip
LINKS = ResourceKind(
    "links", "link", "lnk", schema.links, TrackingLinkSpec, _link,
    ("campaign_id", "publisher_id", "slug", "status"),
)  # fmt: skip
USERS = ResourceKind("users", "user", "usr", schema.users, UserSpec, _user, ("role", "email"))

#: Every generic kind, by its plural name as used in API paths.
KINDS: dict[str, ResourceKind[Any]] = {
    kind.name: kind for kind in (ADVERTISERS, PUBLISHERS, OFFERS, GOALS, CAMPAIGNS, LINKS, USERS)
}
