"""The tracker's config cache: a change in the store reaches the snapshot within the setting."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import Table, select, update

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.kinds import CAMPAIGNS, LINKS
from perfmark.adapters.store.schema import advertisers, campaigns, goals, links, offers, workspaces
from perfmark.domain.accounts import Role
from perfmark.domain.campaigns import CampaignStatus
from perfmark.services import catalog
from perfmark.services.container import Container, Principal
from perfmark.services.demo import seed_demo
from perfmark.services.tracking_config import ConfigCache, load_snapshot

CACHE_TTL_MS = 1000
#: The setting plus scheduling slack on a busy, shared 2-core machine.
ALLOWED_S = 3.0


def test_a_paused_campaign_reaches_the_snapshot_within_the_ttl(container: Container) -> None:
    demo = seed_demo(container)
    owner = Principal(demo.workspace_id, Role.OWNER)
    slug = demo.links[0].spec.slug
    cache = ConfigCache(container.engine, CACHE_TTL_MS)
    cache.start()
    try:
        assert cache.snapshot.links[slug].campaign_status is CampaignStatus.ACTIVE
        version = cache.snapshot.version
        catalog.update_object(
            container, owner, CAMPAIGNS, demo.campaigns[0].id, {"status": "paused"}
        )
        changed_at = time.monotonic()
        while cache.snapshot.links[slug].campaign_status is not CampaignStatus.PAUSED:
            assert time.monotonic() - changed_at < ALLOWED_S, "the change did not arrive"
            time.sleep(0.01)
        assert cache.snapshot.version > version
        catalog.archive_object(container, owner, LINKS, demo.links[1].id)
        archived_at = time.monotonic()
        while demo.links[1].spec.slug in cache.snapshot.links:
            assert time.monotonic() - archived_at < ALLOWED_S
            time.sleep(0.01)
    finally:
        cache.stop()


def test_refresh_is_a_no_op_while_the_version_stands(container: Container) -> None:
    seed_demo(container)
    cache = ConfigCache(container.engine, CACHE_TTL_MS)
    assert cache.refresh() is True
    first = cache.snapshot
    assert cache.refresh() is False and cache.snapshot is first
    assert len(first.links) == 6 and len(first.write_keys) == 1


def test_a_campaign_that_no_longer_loads_leaves_the_other_links_working(
    container: Container, caplog: Any
) -> None:
    demo = seed_demo(container)
    broken = demo.campaigns[0].id
    with transaction(container.engine) as conn:
        data = conn.execute(select(campaigns.c.data).where(campaigns.c.id == broken)).scalar_one()
        stored = json.loads(data) if isinstance(data, str) else dict(data)
        stored["daily_budget"] = "-5"  # as if stored before a rule that now refuses it
        conn.execute(update(campaigns).where(campaigns.c.id == broken).values(data=stored))
    snapshot = load_snapshot(container.engine)
    routes = {link.spec.slug: link.spec.campaign_id for link in demo.links}
    assert not [slug for slug, cid in routes.items() if cid == broken and slug in snapshot.links]
    working = [slug for slug, cid in routes.items() if cid != broken]
    assert working and all(slug in snapshot.links for slug in working)
    assert f"campaign {broken} cannot be loaded" in caplog.text


#: A value per kind that the spec's validation now refuses.
_REFUSED = {
    "link": ("slug", "has space"),
    "goal": ("key", "has space"),
    "advertiser": ("currency", "DOLLARS"),
    "offer": ("landing_pages", []),
    "workspace": ("timezone", "Mars/Olympus_Mons"),
}


def _break_stored(container: Container, table: Table, object_id: str, kind: str) -> None:
    """Store a value the object's spec refuses, as if stored before the rule existed."""
    with transaction(container.engine) as conn:
        data = conn.execute(select(table.c.data).where(table.c.id == object_id)).scalar_one()
        stored = json.loads(data) if isinstance(data, str) else dict(data)
        name, value = _REFUSED[kind]
        stored[name] = value
        conn.execute(update(table).where(table.c.id == object_id).values(data=stored))


def test_a_link_that_no_longer_loads_leaves_the_other_links_working(
    container: Container, caplog: Any
) -> None:
    demo = seed_demo(container)
    broken = demo.links[0]
    _break_stored(container, links, broken.id, "link")
    snapshot = load_snapshot(container.engine)
    assert broken.spec.slug not in snapshot.links
    assert all(link.spec.slug in snapshot.links for link in demo.links[1:])
    assert f"link {broken.id} cannot be loaded" in caplog.text


@pytest.mark.parametrize("kind", ["goal", "advertiser", "offer"])
def test_a_goal_advertiser_or_offer_that_no_longer_loads_leaves_every_link_working(
    container: Container, caplog: Any, kind: str
) -> None:
    demo = seed_demo(container)
    before = load_snapshot(container.engine)
    campaign = demo.campaigns[0].spec
    table, object_id = {
        "goal": (goals, campaign.goal_ids[0]),
        "advertiser": (advertisers, campaign.advertiser_id),
        "offer": (offers, campaign.offer_id),
    }[kind]
    _break_stored(container, table, object_id, kind)
    snapshot = load_snapshot(container.engine)
    assert set(snapshot.links) == set(before.links)
    assert f"{kind} {object_id} cannot be loaded" in caplog.text
    if kind == "goal":
        assert object_id not in {info.goal_id for info in snapshot.goals_by_key.values()}
        assert len(snapshot.goals_by_key) == len(before.goals_by_key) - 1
    elif kind == "advertiser":
        assert object_id not in snapshot.advertisers
        assert len(snapshot.advertisers) == len(before.advertisers) - 1


def test_a_workspace_that_no_longer_loads_keeps_its_links_in_utc(
    container: Container, caplog: Any
) -> None:
    demo = seed_demo(container)
    before = load_snapshot(container.engine)
    _break_stored(container, workspaces, demo.workspace_id, "workspace")
    snapshot = load_snapshot(container.engine)
    assert set(snapshot.links) == set(before.links)
    assert all(str(route.timezone) == "UTC" for route in snapshot.links.values())
    assert demo.workspace_id not in snapshot.workspace_timezones
    assert demo.workspace_id in snapshot.write_keys.values()
    assert f"workspace {demo.workspace_id} cannot be loaded" in caplog.text
