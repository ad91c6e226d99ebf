"""The tracker's config cache: a change in the store reaches the snapshot within the setting."""

from __future__ import annotations

import time

from perfmark.adapters.store.kinds import CAMPAIGNS, LINKS
from perfmark.domain.accounts import Role
from perfmark.domain.campaigns import CampaignStatus
from perfmark.services import catalog
from perfmark.services.container import Container, Principal
from perfmark.services.demo import seed_demo
from perfmark.services.tracking_config import ConfigCache

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
