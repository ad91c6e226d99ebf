"""The SQL store on SQLite and PostgreSQL: CRUD, cursors, filters, archive, versions, conflicts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert, select

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.kinds import (
    ADVERTISERS,
    CAMPAIGNS,
    GOALS,
    LINKS,
    OFFERS,
    PUBLISHERS,
)
from perfmark.adapters.store.resources import ResourceStore, read_config_version
from perfmark.adapters.store.schema import workspaces
from perfmark.clock import FixedClock
from perfmark.domain.accounts import Role, WorkspaceSpec
from perfmark.domain.campaigns import CampaignSpec, CampaignStatus, Cap, TargetingField
from perfmark.domain.links import TrackingLinkSpec
from perfmark.domain.offers import GoalSpec, OfferSpec, WeightedUrl
from perfmark.domain.parties import AdvertiserSpec, Channel, PublisherSpec
from perfmark.domain.pricing import Price, PricingModel, PricingRule
from perfmark.errors import ConflictError, IllegalTransitionError, NotFoundError, ValidationError
from perfmark.services import catalog
from perfmark.services.accounts import create_workspace
from perfmark.services.container import Container, Principal

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _workspace(conn: Any, name: str) -> str:
    workspace_id = f"ws_{name}"
    conn.execute(
        insert(workspaces).values(
            id=workspace_id,
            name=name,
            data={"name": name},
            created_at=NOW,
            updated_at=NOW,
            version=1,
        )
    )
    return workspace_id


def _owner(container: Container, name: str = "Store") -> Principal:
    created = create_workspace(container, WorkspaceSpec(name=name), f"{name.lower()}@example.com")
    return Principal(created.workspace.id, Role.OWNER, actor_id=created.owner.id)


def _offer_spec(advertiser_id: str) -> OfferSpec:
    return OfferSpec(
        name="Tents",
        advertiser_id=advertiser_id,
        landing_pages=(WeightedUrl("a", "https://shop.example/a?c={click_id}", 3),),
    )


def _graph(container: Container, owner: Principal) -> dict[str, str]:
    """An advertiser, offer, goal, publisher, campaign and link; their ids by kind."""
    adv = catalog.create_object(
        container, owner, ADVERTISERS, AdvertiserSpec(name="Acme", currency="EUR")
    )
    off = catalog.create_object(container, owner, OFFERS, _offer_spec(adv.id))
    goal = catalog.create_object(
        container, owner, GOALS, GoalSpec(name="Sale", key="sale", currency="EUR")
    )
    pub = catalog.create_object(
        container, owner, PUBLISHERS, PublisherSpec(name="Coupons", channel=Channel.AFFILIATE)
    )
    cmp = catalog.create_object(
        container,
        owner,
        CAMPAIGNS,
        CampaignSpec(
            name="Spring",
            advertiser_id=adv.id,
            offer_id=off.id,
            currency="EUR",
            goal_ids=(goal.id,),
            pricing=(
                PricingRule(
                    Price(PricingModel.CPA, Decimal("12.30")),
                    Price(PricingModel.CPA, Decimal("9.10")),
                    goal_id=goal.id,
                ),
            ),
            daily_budget=Decimal("100.10"),
            caps=(Cap(limit=Decimal("5")),),
        ),
    )
    lnk = catalog.create_object(
        container, owner, LINKS, TrackingLinkSpec(campaign_id=cmp.id, publisher_id=pub.id)
    )
    return {
        "advertiser": adv.id,
        "offer": off.id,
        "goal": goal.id,
        "publisher": pub.id,
        "campaign": cmp.id,
        "link": lnk.id,
    }


def test_insert_get_round_trips_the_spec_exactly(any_container: Container) -> None:
    owner = _owner(any_container)
    ids = _graph(any_container, owner)
    store = ResourceStore(CAMPAIGNS)
    with transaction(any_container.engine) as conn:
        record = store.get(conn, owner.workspace_id, ids["campaign"])
    assert record is not None
    spec = record.spec
    assert isinstance(spec, CampaignSpec)
    # Decimals keep their exact digits (no float on the way through JSON).
    assert spec.daily_budget == Decimal("100.10")
    assert str(spec.daily_budget) == "100.10"
    assert str(spec.pricing[0].pays.amount) == "12.30"
    assert spec.pricing[0].pays.model is PricingModel.CPA
    assert spec.goal_ids == (ids["goal"],)
    assert spec.status is CampaignStatus.DRAFT
    assert record.version == 1
    assert record.created_at == NOW and record.created_at.tzinfo is not None
    assert record.updated_at == NOW
    assert record.archived_at is None
    assert record.workspace_id == owner.workspace_id


def test_get_of_another_workspace_is_none(any_container: Container) -> None:
    first = _owner(any_container, "First")
    second = _owner(any_container, "Second")
    ids = _graph(any_container, first)
    with transaction(any_container.engine) as conn:
        for kind, key in ((ADVERTISERS, "advertiser"), (CAMPAIGNS, "campaign"), (LINKS, "link")):
            assert ResourceStore(kind).get(conn, second.workspace_id, ids[key]) is None
            assert ResourceStore(kind).get(conn, first.workspace_id, ids[key]) is not None
    with pytest.raises(NotFoundError):
        catalog.get_object(any_container, second, CAMPAIGNS, ids["campaign"])


def test_cursor_pagination_walks_every_item_exactly_once(any_container: Container) -> None:
    owner = _owner(any_container)
    other = _owner(any_container, "Other")
    created = [
        catalog.create_object(
            any_container, owner, PUBLISHERS, PublisherSpec(name=f"P{i}", channel=Channel.EMAIL)
        ).id
        for i in range(11)
    ]
    catalog.create_object(any_container, other, PUBLISHERS, PublisherSpec(name="Not mine"))
    for limit in (1, 3, 4, 11, 50):
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = catalog.list_objects(
                any_container, owner, PUBLISHERS, cursor=cursor, limit=limit
            )
            assert len(page.items) <= limit
            seen.extend(item.id for item in page.items)
            pages += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == sorted(created), f"limit={limit}"
        # A last page that is exactly full needs no extra empty page.
        assert pages == -(-len(created) // limit)


def test_filters_select_on_indexed_columns(any_container: Container) -> None:
    owner = _owner(any_container)
    by_channel: dict[Channel, list[str]] = {}
    for i, channel in enumerate([Channel.EMAIL, Channel.NATIVE, Channel.EMAIL, Channel.DISPLAY]):
        record = catalog.create_object(
            any_container, owner, PUBLISHERS, PublisherSpec(name=f"P{i}", channel=channel)
        )
        by_channel.setdefault(channel, []).append(record.id)
    page = catalog.list_objects(any_container, owner, PUBLISHERS, filters={"channel": "email"})
    assert [r.id for r in page.items] == sorted(by_channel[Channel.EMAIL])
    page = catalog.list_objects(any_container, owner, PUBLISHERS, filters={"channel": "other"})
    assert page.items == ()
    with transaction(any_container.engine) as conn:
        both = ResourceStore(PUBLISHERS).list(
            conn, owner.workspace_id, filters={"channel": ["native", "display"]}
        )
    assert sorted(r.id for r in both.items) == sorted(
        by_channel[Channel.NATIVE] + by_channel[Channel.DISPLAY]
    )
    with pytest.raises(ValidationError) as excinfo:
        catalog.list_objects(any_container, owner, PUBLISHERS, filters={"name": "P1"})
    assert excinfo.value.field == "name"


def test_campaign_filters_by_status_and_advertiser(any_container: Container) -> None:
    owner = _owner(any_container)
    ids = _graph(any_container, owner)
    second_adv = catalog.create_object(
        any_container, owner, ADVERTISERS, AdvertiserSpec(name="Beta", currency="EUR")
    )
    second_offer = catalog.create_object(any_container, owner, OFFERS, _offer_spec(second_adv.id))
    other = catalog.create_object(
        any_container,
        owner,
        CAMPAIGNS,
        CampaignSpec(
            name="Beta run",
            advertiser_id=second_adv.id,
            offer_id=second_offer.id,
            currency="EUR",
            status=CampaignStatus.ACTIVE,
        ),
    )

    def listed(**filters: str) -> list[str]:
        page = catalog.list_objects(any_container, owner, CAMPAIGNS, filters=filters)
        return [r.id for r in page.items]

    assert listed(status="active") == [other.id]
    assert listed(status="draft") == [ids["campaign"]]
    assert listed(advertiser_id=ids["advertiser"]) == [ids["campaign"]]
    assert listed(advertiser_id=second_adv.id, status="draft") == []


def test_archive_hides_from_lists_and_ends_campaigns(
    any_container: Container, clock: FixedClock
) -> None:
    owner = _owner(any_container)
    ids = _graph(any_container, owner)
    before = read_config_version_of(any_container)
    clock.advance(hours=1)
    archived = catalog.archive_object(any_container, owner, CAMPAIGNS, ids["campaign"])
    assert archived.archived_at == clock.now()
    assert archived.spec.status is CampaignStatus.ENDED
    assert archived.version == 2
    assert read_config_version_of(any_container) == before + 1
    assert catalog.list_objects(any_container, owner, CAMPAIGNS).items == ()
    everything = catalog.list_objects(any_container, owner, CAMPAIGNS, include_archived=True)
    assert [r.id for r in everything.items] == [ids["campaign"]]
    # Archiving twice is a no-op that returns the archived object.
    again = catalog.archive_object(any_container, owner, CAMPAIGNS, ids["campaign"])
    assert again.version == 2 and again.archived_at == archived.archived_at
    # Still readable by id, for history.
    fetched = catalog.get_object(any_container, owner, CAMPAIGNS, ids["campaign"])
    assert fetched.archived
    # An archived object cannot change, and cannot be referenced by new objects.
    with pytest.raises(ValidationError):
        catalog.update_object(any_container, owner, CAMPAIGNS, ids["campaign"], {"name": "X"})
    with pytest.raises(ValidationError) as excinfo:
        catalog.create_object(
            any_container,
            owner,
            LINKS,
            TrackingLinkSpec(campaign_id=ids["campaign"], publisher_id=ids["publisher"]),
        )
    assert excinfo.value.field == "campaign_id"


def read_config_version_of(container: Container) -> int:
    with transaction(container.engine) as conn:
        return read_config_version(conn)


def test_config_version_counts_every_change(any_container: Container) -> None:
    assert read_config_version_of(any_container) == 0
    owner = _owner(any_container)
    # The workspace row and its owner user: two changes.
    assert read_config_version_of(any_container) == 2
    adv = catalog.create_object(any_container, owner, ADVERTISERS, AdvertiserSpec(name="A"))
    assert read_config_version_of(any_container) == 3
    catalog.update_object(any_container, owner, ADVERTISERS, adv.id, {"name": "B"})
    assert read_config_version_of(any_container) == 4
    # Reads change nothing.
    catalog.get_object(any_container, owner, ADVERTISERS, adv.id)
    catalog.list_objects(any_container, owner, ADVERTISERS)
    assert read_config_version_of(any_container) == 4
    catalog.archive_object(any_container, owner, ADVERTISERS, adv.id)
    assert read_config_version_of(any_container) == 5


def test_update_bumps_version_and_keeps_created_at(
    any_container: Container, clock: FixedClock
) -> None:
    owner = _owner(any_container)
    adv = catalog.create_object(any_container, owner, ADVERTISERS, AdvertiserSpec(name="A"))
    clock.advance(minutes=5)
    updated = catalog.update_object(
        any_container, owner, ADVERTISERS, adv.id, {"name": "Renamed", "credit_limit": "250.00"}
    )
    assert updated.version == 2
    assert updated.created_at == NOW
    assert updated.updated_at == clock.now()
    fetched = catalog.get_object(any_container, owner, ADVERTISERS, adv.id)
    assert fetched.spec.name == "Renamed"
    assert fetched.spec.credit_limit == Decimal("250.00")
    assert fetched.spec.currency == "USD"  # untouched fields stay
    assert fetched.version == 2 and fetched.updated_at == clock.now()
    # The indexed name column follows the spec.
    with transaction(any_container.engine) as conn:
        name = conn.execute(
            select(ADVERTISERS.table.c.name).where(ADVERTISERS.table.c.id == adv.id)
        ).scalar_one()
    assert name == "Renamed"


def test_stale_version_is_a_conflict(any_container: Container) -> None:
    owner = _owner(any_container)
    adv = catalog.create_object(any_container, owner, ADVERTISERS, AdvertiserSpec(name="A"))
    store = ResourceStore(ADVERTISERS)
    with transaction(any_container.engine) as conn:
        first = store.replace(conn, adv, replace(adv.spec, name="First writer"), NOW)
    assert first.version == 2
    with (
        pytest.raises(ConflictError, match="changed by another request"),
        transaction(any_container.engine) as conn,
    ):
        store.replace(conn, adv, replace(adv.spec, name="Second writer"), NOW)
    fetched = catalog.get_object(any_container, owner, ADVERTISERS, adv.id)
    assert fetched.spec.name == "First writer" and fetched.version == 2


def test_duplicate_slug_is_a_conflict_across_workspaces(any_container: Container) -> None:
    first = _owner(any_container, "First")
    second = _owner(any_container, "Second")
    ids_first = _graph(any_container, first)
    ids_second = _graph(any_container, second)
    catalog.update_object(any_container, first, LINKS, ids_first["link"], {"status": "paused"})
    first_link = catalog.get_object(any_container, first, LINKS, ids_first["link"])
    slug = first_link.spec.slug
    for owner, ids in ((first, ids_first), (second, ids_second)):
        with pytest.raises(ConflictError, match="slug"):
            catalog.create_object(
                any_container,
                owner,
                LINKS,
                TrackingLinkSpec(
                    campaign_id=ids["campaign"], publisher_id=ids["publisher"], slug=slug
                ),
            )
    # The failed insert left the transaction usable and stored nothing.
    assert len(catalog.list_objects(any_container, second, LINKS).items) == 1
    with transaction(any_container.engine) as conn:
        found = ResourceStore(LINKS).find_by(conn, "slug", slug)
    assert found is not None and found.id == ids_first["link"]


def test_goal_key_is_unique_per_workspace_only(any_container: Container) -> None:
    first = _owner(any_container, "First")
    second = _owner(any_container, "Second")
    catalog.create_object(any_container, first, GOALS, GoalSpec(name="Lead", key="lead"))
    with pytest.raises(ConflictError, match="key"):
        catalog.create_object(any_container, first, GOALS, GoalSpec(name="Lead 2", key="lead"))
    other = catalog.create_object(any_container, second, GOALS, GoalSpec(name="Lead", key="lead"))
    assert other.workspace_id == second.workspace_id


def test_references_must_exist_in_the_same_workspace(any_container: Container) -> None:
    first = _owner(any_container, "First")
    second = _owner(any_container, "Second")
    ids = _graph(any_container, first)
    with pytest.raises(ValidationError) as excinfo:
        catalog.create_object(any_container, second, OFFERS, _offer_spec(ids["advertiser"]))
    assert excinfo.value.field == "advertiser_id"
    assert ids["advertiser"] in excinfo.value.message


def test_foreign_keys_are_enforced_by_the_database(any_container: Container) -> None:
    """Below the service's checks, the schema itself refuses a dangling reference."""
    with transaction(any_container.engine) as conn:
        workspace_id = _workspace(conn, "raw")
    with pytest.raises(ConflictError), transaction(any_container.engine) as conn:
        ResourceStore(OFFERS).insert(conn, workspace_id, _offer_spec("adv_missing"), NOW)


def test_illegal_status_transition_is_refused(any_container: Container) -> None:
    owner = _owner(any_container)
    ids = _graph(any_container, owner)
    with pytest.raises(IllegalTransitionError):
        catalog.update_object(
            any_container, owner, CAMPAIGNS, ids["campaign"], {"status": "paused"}
        )
    for status in ("active", "paused", "active", "ended"):
        record = catalog.update_object(
            any_container, owner, CAMPAIGNS, ids["campaign"], {"status": status}
        )
        assert record.spec.status.value == status
    with pytest.raises(IllegalTransitionError):
        catalog.update_object(
            any_container, owner, CAMPAIGNS, ids["campaign"], {"status": "active"}
        )
    assert catalog.get_object(any_container, owner, CAMPAIGNS, ids["campaign"]).version == 5


def test_update_revalidates_the_merged_spec(any_container: Container) -> None:
    owner = _owner(any_container)
    ids = _graph(any_container, owner)
    with pytest.raises(ValidationError) as excinfo:
        catalog.update_object(
            any_container, owner, CAMPAIGNS, ids["campaign"], {"total_budget": "50"}
        )
    # daily_budget 100.10 is now above total_budget 50.
    assert excinfo.value.field == "daily_budget"
    with pytest.raises(ValidationError) as excinfo:
        catalog.update_object(
            any_container, owner, CAMPAIGNS, ids["campaign"], {"advertiser_id": "adv_x"}
        )
    assert excinfo.value.field == "advertiser_id"
    record = catalog.update_object(
        any_container,
        owner,
        CAMPAIGNS,
        ids["campaign"],
        {"targeting": [{"field": "country", "values": ["de", "fr"]}]},
    )
    assert record.spec.targeting[0].field is TargetingField.COUNTRY
    assert record.spec.targeting[0].values == ("DE", "FR")
    assert record.spec.daily_budget == Decimal("100.10")


def test_portal_roles_see_only_their_own_objects(any_container: Container) -> None:
    owner = _owner(any_container)
    ids = _graph(any_container, owner)
    other_adv = catalog.create_object(any_container, owner, ADVERTISERS, AdvertiserSpec(name="Z"))
    advertiser = Principal(owner.workspace_id, Role.ADVERTISER, advertiser_id=ids["advertiser"])
    listed = catalog.list_objects(any_container, advertiser, ADVERTISERS)
    assert [r.id for r in listed.items] == [ids["advertiser"]]
    with pytest.raises(NotFoundError):
        catalog.get_object(any_container, advertiser, ADVERTISERS, other_adv.id)
    publisher = Principal(owner.workspace_id, Role.PUBLISHER, publisher_id=ids["publisher"])
    assert [r.id for r in catalog.list_objects(any_container, publisher, LINKS).items] == [
        ids["link"]
    ]
