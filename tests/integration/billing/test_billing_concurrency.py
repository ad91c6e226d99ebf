"""Many writers near a budget and a cap: conversions never spend past them, clicks stay in bound.

The first test drives the real tracker app (create_app over httpx's ASGI transport) from
several threads while the processor commits batches in its own thread. The second has
several threads reserve conversions against one budget at the same moment, each on its own
store connection, to show the reservation is atomic in the database itself.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.schema import billed_events, spend_counters
from perfmark.billing import store
from perfmark.billing.domain.budgets import click_overshoot_bound
from perfmark.billing.services.context import BillingConfig
from perfmark.billing.services.posting import ChargeOutcome, ConversionInfo, charge_conversion
from perfmark.domain.accounts import Role
from perfmark.ids import new_id
from perfmark.money import Money
from perfmark.services import catalog
from perfmark.services.container import Container, Principal
from perfmark.services.demo import seed_demo
from perfmark.web.app import create_app
from perfmark.workers.processor import Processor

from .helpers import BOTH_STORES, CPC, DESKTOP, Rig

WORKERS = 4
CLICKS_PER_WORKER = 30
CONVERSIONS_PER_WORKER = 5
#: The processor commits small batches, so trackers and processor interleave many times.
BATCH_RECORDS = 16
BUDGET = Decimal("40.00")
CAP = 6
CLICK_COST = Decimal("0.80")
#: Between a sender's requests: long enough for the processor to commit batches meanwhile.
PAUSE_S = 0.04
CONVERSION_COST = Decimal("5.00")


def _configure(rig: Rig) -> str:
    """Campaign CPC also buys sales at 5.00, with a 40.00 daily budget and 6 sales a day."""
    campaign = rig.demo.campaigns[CPC].spec
    [goal] = campaign.goal_ids
    rig.update_campaign(
        CPC,
        daily_budget=str(BUDGET),
        caps=[{"limit": str(CAP), "scope": "campaign", "period": "day"}],
        pricing=[
            {"pays": {"model": "cpc", "amount": "0.80"}, "earns": {"model": "cpc", "amount": "0.60"}},
            {"pays": {"model": "cpa", "amount": "5.00"}, "earns": {"model": "cpa", "amount": "3.50"},
             "goal_id": goal},
        ],
    )  # fmt: skip
    return rig.snapshot().advertisers[rig.advertiser_id(CPC)].secret


async def _traffic(app: Any, slug: str, token: str, worker: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    transport = httpx.ASGITransport(app=app)
    headers = {"cf-ipcountry": "US", "user-agent": DESKTOP}
    async with httpx.AsyncClient(transport=transport, base_url="http://tracker") as client:
        for index in range(CLICKS_PER_WORKER):
            answer = await client.get(f"/c/{slug}", headers=headers)
            location = answer.headers["location"]
            seen["fallback" if location.startswith("https://www.northwind") else "landing"] += 1
            if index % (CLICKS_PER_WORKER // CONVERSIONS_PER_WORKER) == 0:
                click_id = httpx.URL(location).params.get("pm_clid")
                if click_id is None:
                    continue
                posted = await client.get("/postback", params={
                    "token": token, "click_id": click_id, "goal": "sale",
                    "txid": f"w{worker}-{index}",
                })  # fmt: skip
                assert posted.status_code == 200, posted.text
                seen["conversions"] += 1
            await asyncio.sleep(PAUSE_S)
    return seen


@BOTH_STORES
def test_trackers_and_the_processor_never_spend_past_the_budget(rig: Rig) -> None:
    token = _configure(rig)
    app = create_app(rig.container)
    slug = rig.demo.links[CPC].spec.slug
    stop = threading.Event()
    processor = Processor(rig.container, batch_records=BATCH_RECORDS)
    rig.impressions(CPC, 1)  # warm the processor up (its first batch loads parsers)
    processor.drain()
    batches: list[int] = []

    failures: list[BaseException] = []

    def process() -> None:
        try:
            while not stop.is_set():
                batches.append(processor.process_batch().read)
                time.sleep(0.01)
        except BaseException as exc:  # surfaced below: a thread's error must fail the test
            failures.append(exc)

    results: list[Counter[str]] = []

    def send(worker: int) -> None:
        results.append(asyncio.run(_traffic(app, slug, token, worker)))

    loop = threading.Thread(target=process)
    loop.start()
    senders = [threading.Thread(target=send, args=(worker,)) for worker in range(WORKERS)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    stop.set()
    loop.join()
    app.state.wal.sync()
    processor.drain()
    for close in app.state.closers:
        close()
    assert failures == []
    total = sum(results, Counter())
    assert total["landing"] + total["fallback"] == WORKERS * CLICKS_PER_WORKER
    assert sum(1 for read in batches if read) >= 3  # the processor really interleaved

    charged = Counter[str]()
    for item in rig.transactions():
        event = item.txn.event.value if item.txn.event else ""
        charged[event] += sum(e.minor for e in item.txn.entries if e.account.kind == "advertiser")
    budget_minor = int(BUDGET * 100)
    # Conversions reserve atomically: never past the budget, nor past the cap.
    statuses = Counter(row["status"] for row in rig.conversions())
    assert statuses["pending"] <= CAP
    assert charged["conversion"] == statuses["pending"] * int(CONVERSION_COST * 100)
    assert sum(statuses.values()) == total["conversions"]  # over_cap ones are recorded too
    # Clicks are charged by the one processor, which reads and moves the counter in the same
    # transaction: the documented bound for one pacer is zero overshoot.
    bound = click_overshoot_bound(1, BATCH_RECORDS, Money(CLICK_COST, "USD"))
    assert bound.amount == 0
    assert charged["click"] + charged["conversion"] <= budget_minor + int(bound.amount * 100)
    with transaction(rig.container.engine) as conn:
        counter = conn.execute(
            select(spend_counters.c.value).where(spend_counters.c.limit_id == "budget:day")
        ).scalar_one()
        decided = conn.execute(select(billed_events)).mappings().all()
    assert counter == charged["click"] + charged["conversion"]
    not_billed = [row for row in decided if row["txn_id"] is None]
    assert total["landing"] == len(decided)  # every tracked click was decided once
    assert not_billed or counter + int(CLICK_COST * 100) > budget_minor
    assert rig.campaign_status(CPC) == "capped"
    assert (
        rig.balance("platform_revenue")
        + rig.balance(f"advertiser:{rig.advertiser_id(CPC)}")
        + rig.balance(f"publisher_payable:{rig.publisher_id(CPC)}")
        == 0
    )
    # Once the trackers see the status, clicks go to the fallback URL.
    capped = create_app(rig.container)
    deadline = time.monotonic() + 5
    location = ""

    async def one_click() -> str:
        transport = httpx.ASGITransport(app=capped)
        async with httpx.AsyncClient(transport=transport, base_url="http://tracker") as client:
            answer = await client.get(f"/c/{slug}", headers={"cf-ipcountry": "US",
                                                             "user-agent": DESKTOP})  # fmt: skip
            return str(answer.headers["location"])

    while time.monotonic() < deadline:
        location = asyncio.run(one_click())
        if location == "https://www.northwind.example/":
            break
        time.sleep(0.1)
    for close in capped.state.closers:
        close()
    assert location == "https://www.northwind.example/"


def _conversion(container: Container, workspace_id: str, campaign: Any, at: Any) -> ConversionInfo:
    return ConversionInfo(
        conversion_id=new_id("cnv"), workspace_id=workspace_id, event_id=new_id("evt"),
        campaign_id=campaign.id, publisher_id="pub_x", advertiser_id=campaign.spec.advertiser_id,
        goal_id=campaign.spec.goal_ids[0], goal_key="sale", ts=at, value=Decimal("10"),
        currency="USD", txid=None, click_id=None, status="pending", data={},
    )  # fmt: skip


@pytest.mark.parametrize("threads", [8])
def test_concurrent_reservations_are_atomic_in_the_store(
    any_container: Container, threads: int
) -> None:
    demo = seed_demo(any_container)
    campaign = demo.campaigns[4]  # CPA 25.00; a 7-sale budget: 175.00
    owner = Principal(demo.workspace_id, Role.OWNER)
    catalog.update_object(any_container, owner, catalog.kind_named("campaigns"), campaign.id,
                          {"daily_budget": "175.00"})  # fmt: skip
    now = any_container.clock.now()
    barrier = threading.Barrier(threads)
    outcomes: list[ChargeOutcome] = []
    lock = threading.Lock()

    def reserve() -> None:
        barrier.wait()
        for _ in range(3):
            with transaction(any_container.engine) as conn:
                ctx = BillingConfig(conn).campaign(demo.workspace_id, campaign.id)
                assert ctx is not None
                conv = _conversion(any_container, demo.workspace_id, campaign, now)
                result = charge_conversion(conn, ctx, conv, now)
            with lock:
                outcomes.append(result.outcome)

    workers = [threading.Thread(target=reserve) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert Counter(outcomes) == {ChargeOutcome.CHARGED: 7, ChargeOutcome.REFUSED: 3 * threads - 7}
    with transaction(any_container.engine) as conn:
        spent = conn.execute(
            select(spend_counters.c.value).where(
                spend_counters.c.campaign_id == campaign.id,
                spend_counters.c.limit_id == "budget:day",
            )
        ).scalar_one()
        charges = store.select_transactions(conn, demo.workspace_id, kinds=["charge"])
    assert spent == 17_500 == sum(item.txn.entries[0].minor for item in charges)
    assert len(charges) == 7
