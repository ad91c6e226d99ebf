"""Fixtures for the optimizer: a seeded workspace, events written to its lake, the API app."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any

import pytest
from fastapi import FastAPI

from perfmark.adapters.lake import LakeWriter
from perfmark.adapters.store.kinds import ADVERTISERS, CAMPAIGNS, GOALS, LINKS, OFFERS, PUBLISHERS
from perfmark.clock import FixedClock
from perfmark.domain.accounts import Role, WorkspaceSpec
from perfmark.domain.campaigns import CampaignSpec, CampaignStatus
from perfmark.domain.events import TrackedEvent
from perfmark.domain.links import TrackingLinkSpec
from perfmark.domain.offers import GoalKind, GoalSpec, OfferSpec, WeightedUrl
from perfmark.domain.parties import AdvertiserSpec, Channel, PublisherSpec
from perfmark.domain.pricing import Price, PricingModel, PricingRule
from perfmark.optimize.api import build_optimize_router
from perfmark.services import catalog
from perfmark.services.accounts import create_workspace
from perfmark.services.container import Container, Principal, build_container
from perfmark.settings import lake_directory, load_settings
from perfmark.web.app import create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

#: The morning the tests look at the data from: the lake holds the 10 days before it.
NOW = datetime(2026, 1, 11, tzinfo=UTC)
_ids = count(1)


@dataclass(frozen=True)
class Seeded:
    """A workspace with 3 CPC campaigns, 2 publishers, links, goals and an owner key."""

    container: Container
    owner: Principal
    api_key: str
    campaigns: dict[str, str]  #: "good", "bad", "other" -> id
    publishers: dict[str, str]  #: "p1", "p2" -> id
    links: dict[str, str]  #: "good/p1", "bad/p1", "bad/p2", "bad/p2-top" -> id
    advertiser_id: str
    offer_id: str

    @property
    def workspace_id(self) -> str:
        return self.owner.workspace_id


def seed_workspace(container: Container) -> Seeded:
    """Campaigns at CPC 1.00 (daily budget 100), lp-a/lp-b pages, goals sale and qualified."""
    created = create_workspace(container, WorkspaceSpec(name="Optimize"), "opt@example.com")
    owner = Principal(created.workspace.id, Role.OWNER, actor_id=created.owner.id)

    def add(kind: Any, spec: Any) -> str:
        return str(catalog.create_object(container, owner, kind, spec).id)

    advertiser = add(ADVERTISERS, AdvertiserSpec("Adv"))
    pages = (
        WeightedUrl("lp-a", "https://shop.example/a", 1),
        WeightedUrl("lp-b", "https://shop.example/b", 1),
    )
    offer = add(OFFERS, OfferSpec("Offer", advertiser, pages))
    sale = add(GOALS, GoalSpec("Sale", "sale", GoalKind.SALE, value_from_conversion=True))
    add(GOALS, GoalSpec("Qualified lead", "qualified", GoalKind.CUSTOM))
    publishers = {
        "p1": add(PUBLISHERS, PublisherSpec("P1", Channel.NATIVE)),
        "p2": add(PUBLISHERS, PublisherSpec("P2", Channel.AFFILIATE)),
    }
    campaigns = {}
    for name in ("good", "bad", "other"):
        campaigns[name] = add(CAMPAIGNS, CampaignSpec(
            name=name, advertiser_id=advertiser, offer_id=offer, goal_ids=(sale,),
            pricing=(PricingRule(Price(PricingModel.CPC, Decimal("1.00")),
                                 Price(PricingModel.CPC, Decimal("0.70"))),),
            daily_budget=Decimal("100"), total_budget=Decimal("10000"),
            landing_pages=pages if name == "good" else (), status=CampaignStatus.ACTIVE,
        ))  # fmt: skip
    links = {
        "good/p1": add(LINKS, TrackingLinkSpec(campaigns["good"], publishers["p1"])),
        "bad/p1": add(LINKS, TrackingLinkSpec(campaigns["bad"], publishers["p1"])),
        "bad/p2": add(LINKS, TrackingLinkSpec(campaigns["bad"], publishers["p2"])),
        "bad/p2-top": add(LINKS, TrackingLinkSpec(campaigns["bad"], publishers["p2"], sub1="top")),
    }
    return Seeded(container, owner, created.api_key.secret, campaigns, publishers, links,
                  advertiser, offer)  # fmt: skip


def click(
    seeded: Seeded,
    campaign: str,
    publisher: str,
    when: datetime,
    *,
    cost: str = "1.00",
    **fields: Any,
) -> TrackedEvent:
    """A priced click as the processor writes it."""
    return TrackedEvent(
        event_id=f"clk_{next(_ids):08d}", type="click", ts_ms=int(when.timestamp() * 1000),
        workspace_id=seeded.workspace_id, campaign_id=seeded.campaigns[campaign],
        publisher_id=seeded.publishers[publisher], advertiser_id=seeded.advertiser_id,
        offer_id=seeded.offer_id, visitor_id=f"v{next(_ids)}", cost=cost, payout="0.70",
        billing_currency="USD", **fields,
    )  # fmt: skip


def conversion(
    seeded: Seeded, campaign: str, publisher: str, when: datetime, *, goal: str = "sale",
    value: str | None = "50.00", **fields: Any,
) -> TrackedEvent:  # fmt: skip
    """An approved conversion one minute after its click."""
    return TrackedEvent(
        event_id=f"cnv_{next(_ids):08d}", type="conversion", ts_ms=int(when.timestamp() * 1000),
        workspace_id=seeded.workspace_id, campaign_id=seeded.campaigns[campaign],
        publisher_id=seeded.publishers[publisher], advertiser_id=seeded.advertiser_id,
        offer_id=seeded.offer_id, goal_key=goal, goal_id=f"goal_{goal}", value=value,
        currency="USD" if value is not None else None, status="approved",
        visitor_id=f"v{next(_ids)}", click_ts_ms=int((when - timedelta(minutes=1)).timestamp() * 1000),
        **fields,
    )  # fmt: skip


def traffic(
    seeded: Seeded, campaign: str, publisher: str, day: datetime, clicks: int, conversions: int,
    *, value: str = "50.00", goal: str = "sale", **fields: Any,
) -> list[TrackedEvent]:  # fmt: skip
    """`clicks` clicks at 1.00 and `conversions` conversions spread over one day."""
    events = [
        click(seeded, campaign, publisher, day + timedelta(minutes=10 + i), **fields)
        for i in range(clicks)
    ]
    events += [
        conversion(seeded, campaign, publisher, day + timedelta(hours=12, minutes=i), goal=goal,
                   value=value, **fields)
        for i in range(conversions)
    ]  # fmt: skip
    return events


def write_lake(container: Container, events: list[TrackedEvent]) -> None:
    """Write events to the container's lake as one processor batch would."""
    LakeWriter(lake_directory(container.settings)).write(f"b{next(_ids)}", events)


@pytest.fixture
def clock() -> FixedClock:
    """The tests' clock: the morning after the lake's data."""
    return FixedClock(NOW)


@pytest.fixture
def seeded(container: Container) -> Seeded:
    """The seeded workspace on SQLite."""
    return seed_workspace(container)


@pytest.fixture(scope="session")
def optimize_app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """One app for the session, with the optimizer's routes mounted under /api."""
    home = tmp_path_factory.mktemp("optimize_app")
    app = create_app(build_container(load_settings({"PERFMARK_HOME": str(home)})))
    if not any(getattr(route, "path", "") == "/api/rules" for route in app.routes):
        app.include_router(build_optimize_router(), prefix="/api")
    return app


@pytest.fixture
def api(optimize_app: FastAPI, container: Container, seeded: Seeded) -> Iterator[TestClient]:
    """A client with the seeded workspace owner's key."""
    optimize_app.state.container = container
    with TestClient(optimize_app, headers={"Authorization": f"Bearer {seeded.api_key}"}) as client:
        yield client
