"""`perfmark simulate`: a synthetic market that sends real traffic while the optimizer acts.

The market has channels (one publisher and one CPC campaign each) with a hidden saturating
response to spend, landing pages with hidden conversion multipliers and sub ids with hidden
quality. Day by day, on a FixedClock: the policy acts at local midnight (the optimizer runs
its budget autopilot and the scheduler's due rules and bandit allocations), then each
active campaign buys `floor(daily budget / CPC)` clicks, sent through the real `/c/<slug>`
endpoint of the ASGI app in-process; the tracker's rotation picks the landing page, and a
click converts with its hidden probability, reported by a real `/postback` 1 minute to 3
hours after the click. The day runs in slices (`slice_minutes`, 3 hours by default): after
each, as `perfmark serve` does continuously, the processor turns the log into the lake, the
scheduler runs the jobs that are due (rules, bandit allocations) and the tracker sees the
changes. Budgets stay daily: the autopilot acts at midnight only. The hidden truth and how
a day's clicks are drawn from it are in `perfmark.simulation.truth`.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import numpy as np

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.kinds import ADVERTISERS, CAMPAIGNS, GOALS, LINKS, OFFERS, PUBLISHERS
from perfmark.billing.services.schedule import run_billing_checks
from perfmark.clock import FixedClock
from perfmark.domain.accounts import Role, WorkspaceSpec
from perfmark.domain.campaigns import CampaignSpec, CampaignStatus
from perfmark.domain.links import LinkStatus, TrackingLinkSpec
from perfmark.domain.offers import GoalKind, GoalSpec, OfferSpec, WeightedUrl
from perfmark.domain.parties import AdvertiserSpec, Channel, PublisherSpec
from perfmark.domain.pricing import Price, PricingModel, PricingRule
from perfmark.ingest.click import ClickTracker
from perfmark.optimize import store
from perfmark.optimize.domain.allocation import AllocationCandidate, allocate_budget
from perfmark.optimize.domain.response_curves import CurveModel, ResponseCurve
from perfmark.optimize.services import allocation, experiments, rules
from perfmark.optimize.services.experiments import DEFAULT_ALLOCATION_INTERVAL_MINUTES
from perfmark.services import catalog
from perfmark.services.accounts import create_workspace
from perfmark.services.container import Container, Principal, build_container
from perfmark.settings import load_settings
from perfmark.simulation.truth import MarketTruth, default_market, plan_clicks
from perfmark.web.app import create_app
from perfmark.workers.processor import Processor
from perfmark.workers.scheduler import run_due_jobs

__all__ = [
    "DaySummary",
    "Policy",
    "SimulationConfig",
    "SimulationResult",
    "exploration_budgets",
    "run_market",
    "simulate",
]

_DAY_SECONDS = 24 * 3600
#: Exploration days spend from this multiple of an even share to that one.
EXPLORATION_RANGE = (0.2, 1.8)
#: The share of rotation every landing page keeps while the bandit learns.
DEFAULT_MIN_SHARE = 0.05
#: How often, within a day, the lake is filled and due jobs run. `perfmark serve` tails the
#: log continuously and its scheduler polls every 30 s; 3 hours keeps a 30-day run near a
#: minute and a half (each bandit allocation is a report over the lake, about 0.25 s).
DEFAULT_SLICE_MINUTES = 180
_ONCE_A_DAY_MINUTES = 24 * 60
_USER_AGENT = (
    b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/124.0 Safari/537.36"
)
_LANDING_HOST = "https://market.example"


class Policy(StrEnum):
    """Who sets budgets and rotation weights."""

    OPTIMIZER = "optimizer"  #: perfmark's autopilot, bandits and rules
    EVEN = "even"  #: the total split evenly, pages rotated evenly, nothing changes
    ORACLE = "oracle"  #: the optimal split of the true curves, only the best page


@dataclass(frozen=True)
class SimulationConfig:
    """How long, how much, under which policy, and what the optimizer may do."""

    days: int = 30
    total_budget: Decimal = Decimal(400)
    policy: Policy = Policy.OPTIMIZER
    seed: int = 7
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    #: optimizer: days of deliberate spend variation before fitting. Three show each curve's
    #: bend at three levels; the pooled posterior and the autopilot's daily moves do the
    #: rest, and each further day at 0.2x-1.8x costs more than it teaches (docs/optimize.md).
    explore_days: int = 3
    max_change_pct: Decimal = Decimal(35)  #: autopilot bound per day
    min_spend_share: float = 0.0  #: optimizer: each campaign keeps this share of the total
    budget_allocation: bool = True
    bandit: bool = True
    min_share: float = DEFAULT_MIN_SHARE
    #: A month-long test with ~10 conversions a day: plain probability matching explores as
    #: if it ran forever. Sharpness 2 with the floor shrinking after 50 conversions cut the
    #: regret from 8.0% to 5.6% over 300 offline seeds with no worse tail (the experiment's
    #: own defaults stay plain Thompson sampling), see docs/optimize.md.
    floor_evidence: int | None = 50  #: conversions after which min_share shrinks
    bandit_sharpness: float = 2.0  #: P(best) ** sharpness (1: plain Thompson sampling)
    #: How often the page bandit reallocates (the experiment's allocation_interval_minutes);
    #: the product's default, hourly. It acts at the end of the slice in which it is due, so
    #: with the default slices every 3 hours.
    bandit_interval_minutes: int = DEFAULT_ALLOCATION_INTERVAL_MINUTES
    #: Minutes between the day's processor drains and scheduler runs; 1440 is once a night.
    slice_minutes: int = DEFAULT_SLICE_MINUTES
    rules: tuple[Mapping[str, Any], ...] = ()  #: rule JSON, created before day 1

    def __post_init__(self) -> None:
        if self.days < 1 or self.total_budget <= 0:
            raise ValueError("a simulation needs at least 1 day and a budget above 0")
        if self.slice_minutes < 1 or _ONCE_A_DAY_MINUTES % self.slice_minutes:
            raise ValueError(
                f"slice_minutes is {self.slice_minutes}; give a divisor of 1440 (60 is hourly, "
                "1440 once a night)"
            )


@dataclass(frozen=True)
class DaySummary:
    """One simulated day, by channel and in total."""

    day: date
    budgets: Mapping[str, Decimal]
    clicks: Mapping[str, int]
    conversions: int
    revenue: Decimal
    cost: Decimal
    expected_conversions: float
    expected_revenue: float


@dataclass(frozen=True)
class SimulationResult:
    """Totals of a run, the days, and the optimizer's rule audit log."""

    policy: Policy
    days: tuple[DaySummary, ...]
    workspace_id: str
    campaign_ids: Mapping[str, str]
    clicks: int
    conversions: int
    revenue: Decimal
    cost: Decimal
    expected_conversions: float
    expected_revenue: float
    bandit_regret: float  #: expected conversions lost against always showing the best page
    even_rotation_regret: float  #: what an even rotation of the same clicks would have lost
    arm_clicks: Mapping[str, int]
    rule_audit: tuple[store.AuditEntry, ...]
    events_processed: int


@dataclass
class _Market:
    """The seeded workspace, the app and the running totals."""

    container: Container
    clock: FixedClock
    owner: Principal
    truth: MarketTruth
    config: SimulationConfig
    app: Any
    processor: Processor
    token: str
    offer_id: str
    campaign_ids: dict[str, str] = field(default_factory=dict)
    slugs: dict[str, str] = field(default_factory=dict)
    link_ids: dict[str, str] = field(default_factory=dict)
    arm_of_path: dict[str, str] = field(default_factory=dict)
    regret: float = 0.0
    even_regret: float = 0.0
    arm_clicks: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    txid: int = 0
    #: The policy's random stream (the autopilot's and the scheduler's draws).
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    events_processed: int = 0


def _seed_workspace(
    container: Container, truth: MarketTruth, config: SimulationConfig
) -> tuple[Principal, dict[str, str], dict[str, str], dict[str, str], str, str]:
    created = create_workspace(
        container, WorkspaceSpec(name="Market simulation"), "simulator@example.com"
    )
    owner = Principal(created.workspace.id, Role.OWNER, actor_id="simulator")
    advertiser = catalog.create_object(container, owner, ADVERTISERS, AdvertiserSpec("Market Co"))
    token = catalog.postback_secret(container, owner, ADVERTISERS, advertiser.id)
    pages = tuple(
        WeightedUrl(key, f"{_LANDING_HOST}/{key}?clid={{click_id}}", 1, key)
        for key, _ in truth.arms
    )
    offer = catalog.create_object(
        container, owner, OFFERS, OfferSpec("Product", advertiser.id, pages)
    )
    goal = catalog.create_object(
        container,
        owner,
        GOALS,
        GoalSpec("Sale", "sale", GoalKind.SALE, value_from_conversion=True),
    )
    campaign_ids, slugs, link_ids = {}, {}, {}
    share = (config.total_budget / len(truth.channels)).quantize(Decimal("0.01"), ROUND_DOWN)
    channels = list(Channel)
    for index, channel in enumerate(truth.channels):
        publisher = catalog.create_object(
            container,
            owner,
            PUBLISHERS,
            PublisherSpec(f"{channel.name} partner", channels[index % len(channels)]),
        )
        earns = (channel.cpc * Decimal("0.7")).quantize(Decimal("0.0001"))
        campaign = catalog.create_object(
            container,
            owner,
            CAMPAIGNS,
            CampaignSpec(
                name=f"{channel.name} CPC",
                advertiser_id=advertiser.id,
                offer_id=offer.id,
                channel=channels[index % len(channels)],
                goal_ids=(goal.id,),
                pricing=(
                    PricingRule(
                        Price(PricingModel.CPC, channel.cpc), Price(PricingModel.CPC, earns)
                    ),
                ),
                daily_budget=share,
                status=CampaignStatus.ACTIVE,
                fallback_url=f"{_LANDING_HOST}/paused",
            ),
        )
        link = catalog.create_object(
            container,
            owner,
            LINKS,
            TrackingLinkSpec(campaign.id, publisher.id, utm_source=channel.name),
        )
        campaign_ids[channel.name] = campaign.id
        slugs[channel.name] = link.spec.slug
        link_ids[channel.name] = link.id
    return owner, campaign_ids, slugs, link_ids, token, offer.id


def _seed_tracker_rotation(app: Any, seed: int) -> None:
    # The tracker draws landing pages from its own Random; seed it so a run is repeatable.
    for middleware in getattr(app, "user_middleware", []):
        clicks = getattr(middleware, "kwargs", {}).get("clicks")
        if isinstance(clicks, ClickTracker):
            clicks.rng = random.Random(seed)


async def _get(app: Any, path: str, params: Mapping[str, str]) -> tuple[int, str]:
    """One GET through the ASGI app in-process; the status and the Location header."""
    status = 0
    location = ""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": urlencode(params).encode(),
        "root_path": "",
        "headers": [
            (b"host", b"market.local"),
            (b"user-agent", _USER_AGENT),
            (b"cf-ipcountry", b"US"),
            (b"accept-language", b"en-US"),
        ],
        "client": ("198.51.100.20", 40000),
        "server": ("market.local", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Mapping[str, Any]) -> None:
        nonlocal status, location
        if message["type"] == "http.response.start":
            status = message["status"]
            for name, value in message.get("headers", []):
                if name == b"location":
                    location = value.decode("latin-1")

    await app(scope, receive, send)
    return status, location


@dataclass
class _DayTotals:
    clicks: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    conversions: int = 0
    revenue: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    expected_conversions: float = 0.0
    expected_revenue: float = 0.0


async def _drive_day(
    market: _Market,
    day: int,
    day_start: datetime,
    budgets: Mapping[str, Decimal],
    active: Mapping[str, bool],
) -> _DayTotals:
    """The day's clicks and postbacks in time order, slice by slice (see `_between_slices`)."""
    totals = _DayTotals()
    plans: list[tuple[float, int, dict[str, Any]]] = []
    for index, channel in enumerate(market.truth.channels):
        if active[channel.name]:
            plans.extend(
                plan_clicks(
                    channel, budgets[channel.name], seed=market.config.seed, day=day, index=index
                )
            )
    plans.sort(key=lambda item: (item[0], item[1]))
    pending: list[tuple[float, int, dict[str, str]]] = []
    slice_seconds = market.config.slice_minutes * 60
    position = 0
    for end in range(slice_seconds, _DAY_SECONDS + 1, slice_seconds):
        while position < len(plans) and plans[position][0] < end:
            second, _index, click = plans[position]
            position += 1
            while pending and pending[0][0] <= second:
                await _postback(market, day_start, heapq.heappop(pending))
            await _click(market, day_start, second, click, totals, pending)
        while pending and pending[0][0] < end:
            await _postback(market, day_start, heapq.heappop(pending))
        if end < _DAY_SECONDS:
            _between_slices(market, day_start + timedelta(seconds=end))
    while pending:  # none: clicks end at CLICK_HOURS, postbacks follow within hours
        await _postback(market, day_start, heapq.heappop(pending))
    return totals


async def _click(
    market: _Market,
    day_start: datetime,
    second: float,
    click: Mapping[str, Any],
    totals: _DayTotals,
    pending: list[tuple[float, int, dict[str, str]]],
) -> None:
    """One click through the tracker; a conversion is queued for its postback's time."""
    arms = dict(market.truth.arms)
    best = market.truth.best_arm[1]
    mean_arm = sum(arms.values()) / len(arms)
    channel = click["channel"]
    market.clock.current = day_start + timedelta(seconds=second)
    status, location = await _get(
        market.app, f"/c/{market.slugs[channel.name]}", {"sub1": click["sub"]}
    )
    if status != 302 or not location.startswith(_LANDING_HOST):
        return
    parts = urlsplit(location)
    arm = market.arm_of_path.get(parts.path)
    click_id = parse_qs(parts.query).get("pm_clid", [""])[0]
    if arm is None or not click_id:
        return
    totals.clicks[channel.name] += 1
    totals.cost += channel.cpc
    market.arm_clicks[arm] += 1
    chance = click["marginal"] * click["sub_multiplier"]
    totals.expected_conversions += chance * arms[arm]
    totals.expected_revenue += chance * arms[arm] * channel.value_mean
    market.regret += chance * (best - arms[arm])
    market.even_regret += chance * (best - mean_arm)
    if click["draw"] < chance * arms[arm]:
        market.txid += 1
        value = Decimal(repr(click["value"])).quantize(Decimal("0.01"))
        params = {
            "token": market.token,
            "click_id": click_id,
            "goal": "sale",
            "txid": f"sim-{market.txid}",
            "value": str(value),
        }
        # Posted after its click (the delay is at least a minute), never ahead of it.
        heapq.heappush(pending, (second + click["delay"], market.txid, params))
        totals.conversions += 1
        totals.revenue += value


def _between_slices(market: _Market, at: datetime) -> None:
    """What `perfmark serve` does all day: fill the lake, run due jobs, refresh the tracker."""
    market.clock.current = at
    # Batches as `Processor.run` reads them; the rollups are rebuilt by the nightly drain
    # (reports read the raw events of dates without a fresh rollup, so they stay exact).
    while (batch := market.processor.process_batch()).read:
        market.events_processed += batch.written
    if market.config.policy is Policy.OPTIMIZER:
        run_due_jobs(market.container, at, rng=market.rng)
        market.app.state.config_cache.refresh()


async def _postback(
    market: _Market, day_start: datetime, item: tuple[float, int, dict[str, str]]
) -> None:
    market.clock.current = day_start + timedelta(seconds=item[0])
    status, _location = await _get(market.app, "/postback", item[2])
    if status != 200:
        raise RuntimeError(f"the postback was refused with HTTP {status}: {item[2]}")


def _set_budgets(market: _Market, budgets: Mapping[str, Decimal]) -> None:
    for name, budget in budgets.items():
        campaign_id = market.campaign_ids[name]
        catalog.update_object(
            market.container,
            market.owner,
            CAMPAIGNS,
            campaign_id,
            {"daily_budget": str(max(budget, Decimal("0.01")))},
        )


def exploration_budgets(names: list[str], total: Decimal, day: int) -> dict[str, Decimal]:
    """Spends from 0.2x to 1.8x of an even share, rotated daily: the total stays the same.

    A wide range shows each curve's bend: a channel that saturates early looks flat (and
    worthless) when it is only ever tried near an even share.
    """
    count = len(names)
    low, high = EXPLORATION_RANGE
    steps = [low + (high - low) * i / (count - 1) for i in range(count)] if count > 1 else [1.0]
    share = total / count
    return {
        name: (share * Decimal(repr(steps[(i + day) % count]))).quantize(Decimal("0.01"))
        for i, name in enumerate(names)
    }


def _oracle_budgets(market: _Market) -> dict[str, Decimal]:
    candidates = [
        AllocationCandidate(
            c.name,
            ResponseCurve.exact(CurveModel.HILL, (c.ymax, c.ec50, c.shape), campaign_id=c.name),
        )
        for c in market.truth.channels
    ]
    result = allocate_budget(candidates, market.config.total_budget)
    return {row.campaign_id: row.spend for row in result.campaigns}


def _statuses(market: _Market) -> dict[str, bool]:
    """Whether each channel is buying traffic today (campaign and link active)."""
    active = {}
    for name, campaign_id in market.campaign_ids.items():
        campaign = catalog.get_object(market.container, market.owner, CAMPAIGNS, campaign_id)
        link = catalog.get_object(market.container, market.owner, LINKS, market.link_ids[name])
        active[name] = (
            campaign.spec.status is CampaignStatus.ACTIVE and link.spec.status is LinkStatus.ACTIVE
        )
    return active


def _morning(market: _Market, day: int, now: datetime, rng: np.random.Generator) -> None:
    """The policy acts at local midnight, before the day's traffic."""
    config = market.config
    # Billing caps a campaign when its daily budget is spent; its scheduled check reopens it
    # when the day rolls over (as `perfmark serve` does).
    run_billing_checks(market.container)
    if config.policy is Policy.EVEN:
        return
    if config.policy is Policy.ORACLE:
        if day == 0:
            _set_budgets(market, _oracle_budgets(market))
            best_key = market.truth.best_arm[0]
            page = {
                "key": best_key,
                "url": f"{_LANDING_HOST}/{best_key}?clid={{click_id}}",
                "weight": 1,
                "name": best_key,
            }
            catalog.update_object(
                market.container, market.owner, OFFERS, market.offer_id, {"landing_pages": [page]}
            )
        return
    if config.budget_allocation:
        if day < config.explore_days:
            names = [channel.name for channel in market.truth.channels]
            _set_budgets(market, exploration_budgets(names, config.total_budget, day))
        else:
            active = [cid for name, cid in market.campaign_ids.items() if _statuses(market)[name]]
            if active:
                # Like the bandit's floor: a campaign starved of budget could never show
                # that its curve was misjudged, so each keeps a small share.
                floor = (config.total_budget * Decimal(repr(config.min_spend_share))).quantize(
                    Decimal("0.01"), ROUND_DOWN
                )
                request = allocation.BudgetRequest(
                    total_budget=config.total_budget,
                    campaign_ids=tuple(active),
                    min_spend=dict.fromkeys(active, floor),
                )
                allocation.apply_budget_autopilot(
                    market.container,
                    market.owner,
                    request,
                    max_change_pct=config.max_change_pct,
                    rng=rng,
                )
    run_due_jobs(market.container, now, rng=rng)


def _setup_optimizer(market: _Market) -> None:
    config = market.config
    if config.policy is not Policy.OPTIMIZER:
        return
    for rule in config.rules:
        rules.create_rule(market.container, market.owner, rule)
    if config.bandit:
        # The campaigns rotate their offer's pages: one experiment learns from all their traffic.
        experiments.create_experiment(
            market.container,
            market.owner,
            {
                "name": "landing pages of the offer",
                "arm_kind": "landing_page",
                "offer_id": market.offer_id,
                "arms": [key for key, _ in market.truth.arms],
                "allocation": True,
                "min_share": config.min_share,
                "floor_evidence": config.floor_evidence,
                "sharpness": config.bandit_sharpness,
                "allocation_interval_minutes": config.bandit_interval_minutes,
            },
        )


def run_market(
    container: Container, clock: FixedClock, truth: MarketTruth, config: SimulationConfig
) -> SimulationResult:
    """Run the market on a container whose clock is `clock` (a fresh store is expected)."""
    clock.current = config.start
    owner, campaign_ids, slugs, link_ids, token, offer_id = _seed_workspace(
        container, truth, config
    )
    app = create_app(container)
    _seed_tracker_rotation(app, config.seed)
    market = _Market(
        container=container,
        clock=clock,
        owner=owner,
        truth=truth,
        config=config,
        app=app,
        processor=Processor(container),
        token=token,
        offer_id=offer_id,
        campaign_ids=campaign_ids,
        slugs=slugs,
        link_ids=link_ids,
        arm_of_path={f"/{key}": key for key, _ in truth.arms},
        rng=np.random.default_rng(config.seed),
    )
    days: list[DaySummary] = []
    try:
        _setup_optimizer(market)
        for day in range(config.days):
            day_start = config.start + timedelta(days=day)
            clock.current = day_start
            _morning(market, day, day_start, market.rng)
            app.state.config_cache.refresh()  # the tracker sees the morning's changes now
            active = _statuses(market)
            budgets = {
                name: catalog.get_object(container, owner, CAMPAIGNS, cid).spec.daily_budget
                or Decimal(0)
                for name, cid in campaign_ids.items()
            }
            totals = asyncio.run(_drive_day(market, day, day_start, budgets, active))
            clock.current = day_start + timedelta(days=1)
            market.events_processed += market.processor.drain()
            days.append(
                DaySummary(
                    day=day_start.date(),
                    budgets={n: b if active[n] else Decimal(0) for n, b in budgets.items()},
                    clicks=dict(totals.clicks),
                    conversions=totals.conversions,
                    revenue=totals.revenue,
                    cost=totals.cost,
                    expected_conversions=totals.expected_conversions,
                    expected_revenue=totals.expected_revenue,
                )
            )
    finally:
        for close in app.state.closers:
            close()
    with transaction(container.engine) as conn:
        audit = store.list_audit(conn, owner.workspace_id, source="rule", limit=1000)
    return SimulationResult(
        policy=config.policy,
        days=tuple(days),
        workspace_id=owner.workspace_id,
        campaign_ids=campaign_ids,
        clicks=sum(sum(d.clicks.values()) for d in days),
        conversions=sum(d.conversions for d in days),
        revenue=sum((d.revenue for d in days), Decimal(0)),
        cost=sum((d.cost for d in days), Decimal(0)),
        expected_conversions=math.fsum(d.expected_conversions for d in days),
        expected_revenue=math.fsum(d.expected_revenue for d in days),
        bandit_regret=market.regret,
        even_rotation_regret=market.even_regret,
        arm_clicks=dict(market.arm_clicks),
        rule_audit=tuple(audit),
        events_processed=market.events_processed,
    )


def simulate(
    truth: MarketTruth | None = None,
    config: SimulationConfig | None = None,
    *,
    home: Path | None = None,
) -> SimulationResult:
    """Run a market in a fresh data directory (a temporary one unless `home` is given)."""
    truth = truth or default_market()
    config = config or SimulationConfig()
    with tempfile.TemporaryDirectory(prefix="perfmark-market-") as scratch:
        directory = home or Path(scratch)
        clock = FixedClock(config.start)
        container = build_container(load_settings({"PERFMARK_HOME": str(directory)}), clock=clock)
        try:
            return run_market(container, clock, truth, config)
        finally:
            container.engine.dispose()
