"""Seed a realistic demo workspace: advertisers, publishers on every channel, campaigns, links."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from perfmark.adapters.store.kinds import ADVERTISERS, CAMPAIGNS, GOALS, LINKS, OFFERS, PUBLISHERS
from perfmark.adapters.store.resources import ResourceKind
from perfmark.domain.accounts import Role, WorkspaceSpec
from perfmark.domain.campaigns import (
    CampaignSpec,
    CampaignStatus,
    Cap,
    TargetingField,
    TargetingRule,
)
from perfmark.domain.links import TrackingLinkSpec
from perfmark.domain.offers import GoalKind, GoalSpec, OfferSpec, WeightedUrl
from perfmark.domain.parties import AdvertiserSpec, BillingMode, Channel, PublisherSpec
from perfmark.domain.pricing import Price, PricingModel, PricingRule
from perfmark.domain.records import Record
from perfmark.services import catalog
from perfmark.services.accounts import create_workspace
from perfmark.services.container import Container, Principal

__all__ = ["DemoWorkspace", "seed_demo"]

DEMO_OWNER_EMAIL = "owner@demo.perfmark.dev"
SpecT = TypeVar("SpecT")


@dataclass(frozen=True)
class DemoWorkspace:
    """What the demo created: the workspace, its owner key and the tracking links."""

    workspace_id: str
    api_key: str
    campaigns: tuple[Record[CampaignSpec], ...]
    links: tuple[Record[TrackingLinkSpec], ...]


def _price(model: PricingModel, amount: str = "0", percent: str = "0") -> Price:
    return Price(model, Decimal(amount), Decimal(percent))


def seed_demo(container: Container, name: str = "Demo workspace") -> DemoWorkspace:
    """Create a workspace with 2 advertisers, 5 publishers, 6 campaigns (six pricing models)."""
    created = create_workspace(container, WorkspaceSpec(name=name), DEMO_OWNER_EMAIL, "Demo Owner")
    owner = Principal(created.workspace.id, Role.OWNER, actor_id=created.owner.id)

    def add(kind: ResourceKind[SpecT], spec: SpecT) -> Record[SpecT]:
        record: Record[SpecT] = catalog.create_object(container, owner, kind, spec)
        return record

    shop = add(ADVERTISERS, AdvertiserSpec(name="Northwind Outdoor", currency="USD"))
    app_co = add(
        ADVERTISERS,
        AdvertiserSpec(
            name="Lumen Apps",
            currency="USD",
            billing_mode=BillingMode.PREPAID,
            postback_param_map={"click_id": "cid", "value": "payout"},
        ),
    )
    publishers = {
        channel: add(PUBLISHERS, PublisherSpec(name=label, channel=channel))
        for channel, label in (
            (Channel.PAID_SEARCH, "SearchBuy Agency"),
            (Channel.PAID_SOCIAL, "Social Reach Ltd"),
            (Channel.AFFILIATE, "CouponHub"),
            (Channel.NATIVE, "StoryNative Network"),
            (Channel.EMAIL, "Inbox Deals"),
        )
    }
    sale = add(
        GOALS,
        GoalSpec(
            name="Purchase",
            key="sale",
            kind=GoalKind.SALE,
            value_from_conversion=True,
            event_names=("Order Completed",),
        ),
    )
    lead = add(
        GOALS,
        GoalSpec(
            name="Newsletter lead",
            key="lead",
            kind=GoalKind.LEAD,
            default_value=Decimal("4.00"),
            event_names=("Signed Up",),
        ),
    )
    install = add(
        GOALS,
        GoalSpec(
            name="App install",
            key="install",
            kind=GoalKind.INSTALL,
            default_value=Decimal("2.50"),
            advertiser_id=app_co.id,
        ),
    )
    tents = add(
        OFFERS,
        OfferSpec(
            name="Ultralight tents",
            advertiser_id=shop.id,
            landing_pages=(
                WeightedUrl(
                    "tents-a",
                    "https://shop.northwind.example/tents?clid={click_id}&s={sub1}",
                    3,
                    "Tents A",
                ),
                WeightedUrl(
                    "tents-b",
                    "https://shop.northwind.example/tents-b?clid={click_id}",
                    1,
                    "Tents B",
                ),
            ),
        ),
    )
    meditation = add(
        OFFERS,
        OfferSpec(
            name="Calm meditation app",
            advertiser_id=app_co.id,
            landing_pages=(
                WeightedUrl("store", "https://apps.lumen.example/calm?clid={click_id}"),
            ),
        ),
    )
    plans = (
        (
            "Tents - search CPC",
            shop,
            tents,
            Channel.PAID_SEARCH,
            (sale,),
            PricingRule(_price(PricingModel.CPC, "0.80"), _price(PricingModel.CPC, "0.60")),
        ),
        (
            "Tents - social CPM",
            shop,
            tents,
            Channel.PAID_SOCIAL,
            (sale,),
            PricingRule(_price(PricingModel.CPM, "6.00"), _price(PricingModel.CPM, "4.50")),
        ),
        (
            "Tents - coupon revshare",
            shop,
            tents,
            Channel.AFFILIATE,
            (sale,),
            PricingRule(
                _price(PricingModel.REVSHARE, percent="12"),
                _price(PricingModel.REVSHARE, percent="8"),
                goal_id=sale.id,
            ),
        ),
        (
            "Newsletter - native CPL",
            shop,
            tents,
            Channel.NATIVE,
            (lead,),
            PricingRule(
                _price(PricingModel.CPL, "4.00"), _price(PricingModel.CPL, "2.80"), goal_id=lead.id
            ),
        ),
        (
            "Tents - email CPA",
            shop,
            tents,
            Channel.EMAIL,
            (sale,),
            PricingRule(
                _price(PricingModel.CPA, "25.00"),
                _price(PricingModel.CPA, "18.00"),
                goal_id=sale.id,
            ),
        ),
        (
            "Calm app - CPI",
            app_co,
            meditation,
            Channel.AFFILIATE,
            (install,),
            PricingRule(
                _price(PricingModel.CPI, "2.50"),
                _price(PricingModel.CPI, "1.70"),
                goal_id=install.id,
            ),
        ),
    )
    campaigns = []
    links = []
    for title, advertiser, offer, channel, goals, rule in plans:
        campaign = add(
            CAMPAIGNS,
            CampaignSpec(
                name=title,
                advertiser_id=advertiser.id,
                offer_id=offer.id,
                channel=channel,
                goal_ids=tuple(goal.id for goal in goals),
                pricing=(rule,),
                currency="USD",
                daily_budget=Decimal("500"),
                total_budget=Decimal("20000"),
                caps=(Cap(limit=Decimal("400")),),
                targeting=(
                    TargetingRule(
                        field=TargetingField.COUNTRY, values=("US", "CA", "GB", "DE", "FR")
                    ),
                ),
                fallback_url="https://www.northwind.example/",
                status=CampaignStatus.ACTIVE,
            ),
        )
        campaigns.append(campaign)
        publisher = publishers[channel]
        links.append(
            add(
                LINKS,
                TrackingLinkSpec(
                    campaign_id=campaign.id,
                    publisher_id=publisher.id,
                    utm_source=publisher.spec.name.lower().replace(" ", "-"),
                    utm_medium=channel.value,
                    utm_campaign=title.lower().replace(" ", "-"),
                ),
            )
        )
    return DemoWorkspace(
        created.workspace.id, created.api_key.secret, tuple(campaigns), tuple(links)
    )
