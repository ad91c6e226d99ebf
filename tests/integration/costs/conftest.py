"""Fixtures for cost data: a workspace with the campaigns the sample exports name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from perfmark.adapters.store.kinds import ADVERTISERS, CAMPAIGNS, OFFERS
from perfmark.domain.accounts import Role, WorkspaceSpec
from perfmark.domain.campaigns import CampaignSpec
from perfmark.domain.offers import OfferSpec, WeightedUrl
from perfmark.domain.parties import AdvertiserSpec
from perfmark.services import catalog
from perfmark.services.accounts import create_workspace
from perfmark.services.container import Container, Principal

DATA = Path(__file__).resolve().parents[2] / "data"

#: The sample files' campaigns: perfmark name -> the advertiser's (and campaign's) currency.
SAMPLE_CAMPAIGNS = {
    "Brand - Search": "EUR",
    "Spring Shoes": "EUR",
    "PMax - Catalog": "EUR",
    "Retargeting - Cart": "USD",
    "Prospecting - Lookalike 1%": "USD",
}


@dataclass(frozen=True)
class Seeded:
    """A workspace's owner, its advertisers by currency and its campaign ids by name."""

    container: Container
    owner: Principal
    advertisers: dict[str, str]
    campaigns: dict[str, str]


def seed_workspace(container: Container, name: str = "Costs") -> Seeded:
    """A workspace with an EUR and a USD advertiser and the sample files' campaigns."""
    created = create_workspace(container, WorkspaceSpec(name=name), f"{name.lower()}@example.com")
    owner = Principal(created.workspace.id, Role.OWNER, actor_id=created.owner.id)
    advertisers: dict[str, str] = {}
    offers: dict[str, str] = {}
    for currency in ("EUR", "USD"):
        adv = catalog.create_object(
            container, owner, ADVERTISERS, AdvertiserSpec(name=f"Adv {currency}", currency=currency)
        )
        offer = catalog.create_object(
            container,
            owner,
            OFFERS,
            OfferSpec(
                name=f"Offer {currency}",
                advertiser_id=adv.id,
                landing_pages=(WeightedUrl("a", "https://shop.example/a", 1),),
            ),
        )
        advertisers[currency], offers[currency] = adv.id, offer.id
    campaigns = {}
    for campaign_name, currency in SAMPLE_CAMPAIGNS.items():
        record = catalog.create_object(
            container,
            owner,
            CAMPAIGNS,
            CampaignSpec(
                name=campaign_name,
                advertiser_id=advertisers[currency],
                offer_id=offers[currency],
                currency=currency,
            ),
        )
        campaigns[campaign_name] = record.id
    return Seeded(container, owner, advertisers, campaigns)


@pytest.fixture
def seeded(any_container: Container) -> Seeded:
    """The sample campaigns in a workspace, on SQLite and on PostgreSQL."""
    return seed_workspace(any_container)


@pytest.fixture
def seeded_sqlite(container: Container) -> Seeded:
    """The sample campaigns in a workspace on SQLite only (HTTP and CLI tests)."""
    return seed_workspace(container)


def sample(name: str) -> bytes:
    """The bytes of a file under tests/data."""
    return (DATA / name).read_bytes()
