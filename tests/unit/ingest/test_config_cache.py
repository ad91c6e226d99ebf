"""The tracker's config cache: a change in the store reaches the snapshot within the setting."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import select, update

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.kinds import CAMPAIGNS, LINKS
from perfmark.adapters.store.schema import campaigns
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
