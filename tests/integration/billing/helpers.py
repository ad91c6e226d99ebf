"""The billing rig: the demo workspace, the trackers on a real log, the processor, the store."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from sqlalchemy import select

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.kinds import ADVERTISERS, CAMPAIGNS, PUBLISHERS
from perfmark.adapters.store.schema import (
    conversions,
)
from perfmark.adapters.wal import WalWriter
from perfmark.billing import store
from perfmark.clock import FixedClock
from perfmark.domain.accounts import Role
from perfmark.domain.events import DropReason
from perfmark.ingest.click import ClickOutcome, ClickTracker
from perfmark.ingest.conversions import ConversionTracker
from perfmark.ingest.hits import Hit
from perfmark.services import catalog
from perfmark.services.container import Container, Principal, build_container
from perfmark.services.demo import DemoWorkspace, seed_demo
from perfmark.services.tracking_config import ConfigSnapshot, load_snapshot
from perfmark.settings import load_settings, wal_directory
from perfmark.workers.processor import Processor

DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
#: The demo campaigns, by index: 0 CPC 0.80/0.60, 1 CPM 6.00/4.50, 2 revshare 12%/8%,
#: 3 CPL 4.00/2.80, 4 CPA 25.00/18.00 (all Northwind, postpaid), 5 CPI 2.50/1.70 (Lumen,
#: prepaid). Each has a daily budget of 500, a total of 20000 and a cap of 400 a day.
CPC, CPM, REVSHARE, CPL, CPA, CPI = range(6)


@dataclass
class Rig:
    """The pipeline of one data directory, with helpers to configure and inspect billing."""

    container: Container
    clock: FixedClock
    demo: DemoWorkspace
    wal: WalWriter
    drops: Counter[str]

    @property
    def workspace_id(self) -> str:
        return self.demo.workspace_id

    @property
    def owner(self) -> Principal:
        return Principal(self.workspace_id, Role.OWNER, actor_id="test")

    def count(self, event_type: str, drop: DropReason | None) -> None:
        if drop is not None:
            self.drops[f"{event_type}:{drop}"] += 1

    def snapshot(self) -> ConfigSnapshot:
        return load_snapshot(self.container.engine)

    def tracker(self) -> ClickTracker:
        config = self.snapshot()
        return ClickTracker(
            self.container.settings, "k", lambda: config, self.wal, self.clock, self.count
        )

    def click(self, index: int = CPC, **params: str) -> ClickOutcome:
        """One click on the demo link of campaign `index`."""
        hit = Hit(params=params, country="US", user_agent=DESKTOP)
        return self.tracker().click(self.demo.links[index].spec.slug, hit)

    def clicks(self, index: int, count: int) -> list[str]:
        tracker = self.tracker()
        ids = []
        for _ in range(count):
            hit = Hit(country="US", user_agent=DESKTOP)
            outcome = tracker.click(self.demo.links[index].spec.slug, hit)
            assert outcome.click_id, outcome
            ids.append(outcome.click_id)
        return ids

    def impressions(self, index: int, count: int) -> None:
        tracker = self.tracker()
        for _ in range(count):
            tracker.impression(self.demo.links[index].spec.slug, Hit(user_agent=DESKTOP))

    def campaign_id(self, index: int) -> str:
        return self.demo.campaigns[index].id

    def advertiser_id(self, index: int) -> str:
        return self.demo.campaigns[index].spec.advertiser_id

    def publisher_id(self, index: int) -> str:
        return self.demo.links[index].spec.publisher_id

    def postback(self, index: int = CPA, **params: str) -> str:
        """A server-to-server conversion postback from the campaign's advertiser."""
        config = self.snapshot()
        advertiser = config.advertisers[self.advertiser_id(index)]
        names = dict(advertiser.param_map)
        renamed = {names.get(key, key): value for key, value in params.items()}
        query = urlencode({"token": advertiser.secret, **renamed})
        tracker = ConversionTracker(
            self.container.settings, lambda: config, self.wal, self.clock, self.count
        )
        pairs = parse_qsl(query)
        return tracker.postback(Hit(params=dict(pairs)), query, b"", {})

    def convert(self, index: int = CPA, **params: str) -> str:
        """A click on campaign `index` and a conversion postback for it."""
        outcome = self.click(index)
        assert outcome.click_id, outcome
        params.setdefault("goal", {CPL: "lead", CPI: "install"}.get(index, "sale"))
        event_id = self.postback(index, click_id=outcome.click_id, **params)
        self.clock.advance(milliseconds=1)  # conversions listed by time keep their order
        return event_id

    def process(self, **options: Any) -> Processor:
        processor = Processor(self.container, count=self.count, **options)
        processor.drain()
        return processor

    def update_campaign(self, index: int, **changes: Any) -> None:
        catalog.update_object(
            self.container, self.owner, CAMPAIGNS, self.campaign_id(index), changes
        )

    def update_advertiser(self, index: int, **changes: Any) -> None:
        catalog.update_object(
            self.container, self.owner, ADVERTISERS, self.advertiser_id(index), changes
        )

    def update_publisher(self, index: int, **changes: Any) -> None:
        catalog.update_object(
            self.container, self.owner, PUBLISHERS, self.publisher_id(index), changes
        )

    def campaign_status(self, index: int) -> str:
        return str(catalog.get_object(self.container, self.owner, CAMPAIGNS,
                                      self.campaign_id(index)).spec.status.value)  # fmt: skip

    def transactions(self) -> list[store.StoredTransaction]:
        with transaction(self.container.engine) as conn:
            return store.select_transactions(conn, self.workspace_id)

    def conversions(self) -> list[dict[str, Any]]:
        with transaction(self.container.engine) as conn:
            rows = conn.execute(select(conversions).order_by(conversions.c.ts, conversions.c.id))
            return [dict(row) for row in rows.mappings()]

    def rows(self, table: Any) -> list[dict[str, Any]]:
        with transaction(self.container.engine) as conn:
            return [dict(row) for row in conn.execute(select(table)).mappings()]

    def balance(self, account: str, currency: str = "USD") -> int:
        with transaction(self.container.engine) as conn:
            return store.account_balance(conn, self.workspace_id, account, currency)

    def charged_minor(self, campaign_index: int) -> int:
        """What the campaign's advertiser was charged for it, net of reversals."""
        total = 0
        for item in self.transactions():
            if item.txn.campaign_id == self.campaign_id(campaign_index):
                total += sum(e.minor for e in item.txn.entries if e.account.kind == "advertiser")
        return total


#: Tests whose SQL matters most run on PostgreSQL too.
BOTH_STORES = pytest.mark.parametrize("rig", ["sqlite", "postgres"], indirect=True)


def make_rig(tmp_path: Path, clock: FixedClock, database_url: str | None = None) -> Rig:
    """A seeded demo workspace with its own data directory (and the given store)."""
    environment = {"PERFMARK_HOME": str(tmp_path / "home")}
    if database_url is not None:
        environment["PERFMARK_DATABASE_URL"] = database_url
    container = build_container(load_settings(environment), clock=clock)
    demo = seed_demo(container)
    wal = WalWriter(wal_directory(container.settings), "t0", fsync_interval_ms=1000)
    return Rig(container, clock, demo, wal, Counter())
