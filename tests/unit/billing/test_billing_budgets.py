"""Budgets, caps, prepaid funds and click pacing: periods in a time zone, limits never passed."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.billing.domain.budgets import (
    Budget,
    CampaignLimits,
    Cap,
    CapMetric,
    CapScope,
    ClickPacer,
    CounterKey,
    Funds,
    LimitPeriod,
    Spend,
    Verdict,
    check_spend,
    click_overshoot_bound,
    load_zone,
    period_bucket,
    period_window,
    should_pause,
)
from perfmark.domain.pricing import BillableEvent
from perfmark.errors import ValidationError
from perfmark.money import Money

USD = "USD"


def usd(amount: str) -> Money:
    return Money.of(amount, USD)


def conversion(
    at: datetime, cost: str = "1.00", publisher: str = "pub_a", goal: str = "g"
) -> Spend:
    return Spend(at, BillableEvent.CONVERSION, usd(cost), publisher_id=publisher, goal_id=goal)


# --- periods in a time zone ----------------------------------------------------------------

LATE = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)  # a Saturday evening in UTC


@pytest.mark.parametrize(
    ("zone", "day", "week", "month"),
    [
        ("UTC", "d:2026-01-31", "w:2026-01-26", "m:2026-01"),
        ("America/New_York", "d:2026-01-31", "w:2026-01-26", "m:2026-01"),  # 18:30 Sat
        ("Europe/Berlin", "d:2026-02-01", "w:2026-01-26", "m:2026-02"),  # 00:30 Sun
        ("Asia/Tokyo", "d:2026-02-01", "w:2026-01-26", "m:2026-02"),  # 08:30 Sun
        ("Pacific/Kiritimati", "d:2026-02-01", "w:2026-01-26", "m:2026-02"),  # 13:30 Sun
    ],
)
def test_a_conversion_at_2330_utc_counts_in_the_local_day_week_and_month(
    zone: str, day: str, week: str, month: str
) -> None:
    tz = ZoneInfo(zone)
    assert period_bucket(LimitPeriod.DAY, LATE, tz) == day
    assert period_bucket(LimitPeriod.WEEK, LATE, tz) == week
    assert period_bucket(LimitPeriod.MONTH, LATE, tz) == month
    assert period_bucket(LimitPeriod.TOTAL, LATE, tz) == "total"


def test_week_buckets_follow_the_local_week_and_its_first_day() -> None:
    sunday_night = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # Monday 00:30 in Berlin
    berlin = ZoneInfo("Europe/Berlin")
    assert period_bucket(LimitPeriod.WEEK, sunday_night, UTC) == "w:2026-02-23"
    assert period_bucket(LimitPeriod.WEEK, sunday_night, berlin) == "w:2026-03-02"
    assert period_bucket(LimitPeriod.WEEK, sunday_night, UTC, week_start=6) == "w:2026-03-01"


def test_windows_are_local_midnights_and_dst_days_are_short_or_long() -> None:
    new_york = ZoneInfo("America/New_York")
    spring = period_window(LimitPeriod.DAY, datetime(2026, 3, 8, 12, tzinfo=UTC), new_york)
    assert spring == (
        datetime(2026, 3, 8, 5, tzinfo=UTC),
        datetime(2026, 3, 9, 4, tzinfo=UTC),
    )  # 23 hours
    autumn = period_window(LimitPeriod.DAY, datetime(2026, 11, 1, 12, tzinfo=UTC), new_york)
    assert autumn is not None and autumn[1] - autumn[0] == timedelta(hours=25)
    month = period_window(LimitPeriod.MONTH, LATE, ZoneInfo("Europe/Berlin"))
    assert month == (datetime(2026, 1, 31, 23, tzinfo=UTC), datetime(2026, 2, 28, 23, tzinfo=UTC))
    assert period_window(LimitPeriod.TOTAL, LATE, UTC) is None
    # Santiago skips local midnight when DST starts: the day starts at the jump.
    santiago = ZoneInfo("America/Santiago")
    window = period_window(LimitPeriod.DAY, datetime(2026, 9, 6, 15, tzinfo=UTC), santiago)
    assert window is not None
    assert window[0].astimezone(santiago).replace(tzinfo=None) == datetime(2026, 9, 6, 1, 0)


ZONES = [
    "UTC",
    "America/New_York",
    "America/Santiago",
    "America/St_Johns",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "Pacific/Kiritimati",
]
instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)
EPSILON = timedelta(microseconds=1)


@settings(max_examples=400, deadline=None)
@given(
    at=instants,
    zone=st.sampled_from(ZONES),
    period=st.sampled_from([LimitPeriod.DAY, LimitPeriod.WEEK, LimitPeriod.MONTH]),
    week_start=st.integers(min_value=0, max_value=6),
)
def test_period_windows_contain_the_instant_and_tile_time(
    at: datetime, zone: str, period: LimitPeriod, week_start: int
) -> None:
    tz = ZoneInfo(zone)
    window = period_window(period, at, tz, week_start)
    assert window is not None
    start, end = window
    bucket = period_bucket(period, at, tz, week_start)
    assert start <= at < end
    assert period_bucket(period, start, tz, week_start) == bucket
    assert period_bucket(period, end - EPSILON, tz, week_start) == bucket
    assert period_bucket(period, start - EPSILON, tz, week_start) != bucket
    assert period_bucket(period, end, tz, week_start) != bucket
    if period is LimitPeriod.DAY:  # the wall-clock date is the UTC time plus the offset then
        offset = at.astimezone(tz).utcoffset()
        assert offset is not None
        assert bucket == f"d:{(at.replace(tzinfo=None) + offset).date().isoformat()}"


def test_unknown_time_zones_are_refused_by_name() -> None:
    with pytest.raises(ValidationError) as info:
        load_zone("Mars/Olympus")
    assert "Mars/Olympus" in info.value.message
    with pytest.raises(ValidationError):
        CampaignLimits("cmp", USD, "Nowhere/City")


# --- budgets and caps ----------------------------------------------------------------------


def limits(*caps: Cap, daily: str = "10.00", total: str = "100.00") -> CampaignLimits:
    return CampaignLimits(
        campaign_id="cmp_1",
        currency=USD,
        time_zone="Europe/Berlin",
        budgets=(Budget(LimitPeriod.DAY, usd(daily)), Budget(LimitPeriod.TOTAL, usd(total))),
        caps=caps,
    )


AT = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)  # 2026-02-01 local in Berlin
DAY_KEY = CounterKey("cmp_1", "budget:day", "*", "d:2026-02-01")
TOTAL_KEY = CounterKey("cmp_1", "budget:total", "*", "total")


def test_daily_budget_allows_up_to_the_limit_and_not_a_cent_more() -> None:
    counters = {DAY_KEY: Decimal("9.50"), TOTAL_KEY: Decimal("40")}
    allowed = check_spend(limits(), counters, conversion(AT, "0.50"))
    assert allowed.allowed and allowed.verdict is Verdict.ALLOWED
    assert dict(allowed.increments) == {DAY_KEY: Decimal("0.50"), TOTAL_KEY: Decimal("0.50")}
    refused = check_spend(limits(), counters, conversion(AT, "0.51"))
    assert refused.verdict is Verdict.OVER_BUDGET and refused.limit_id == "budget:day"
    assert refused.increments == ()
    # The same counters belong to yesterday's bucket for a spend an hour earlier (local Jan 31).
    earlier = check_spend(limits(), counters, conversion(AT - timedelta(hours=1), "5"))
    assert earlier.allowed
    total = check_spend(limits(), {TOTAL_KEY: Decimal("99.99")}, conversion(AT, "0.02"))
    assert total.verdict is Verdict.OVER_BUDGET and total.limit_id == "budget:total"


def test_caps_per_publisher_goal_and_campaign() -> None:
    per_publisher = Cap("cap_pub", CapScope.PUBLISHER, LimitPeriod.DAY, CapMetric.COUNT, Decimal(2))
    per_goal = Cap(
        "cap_goal", CapScope.GOAL, LimitPeriod.MONTH, CapMetric.MONEY, Decimal(5), goal_id="g"
    )
    campaign = Cap("cap_all", CapScope.CAMPAIGN, LimitPeriod.WEEK, CapMetric.COUNT, Decimal(100))
    rules = limits(per_publisher, per_goal, campaign)
    full = {CounterKey("cmp_1", "cap_pub", "pub_a", "d:2026-02-01"): Decimal(2)}
    refused = check_spend(rules, full, conversion(AT))
    assert refused.verdict is Verdict.OVER_CAP and refused.limit_id == "cap_pub"
    assert "cap_pub" in refused.message
    other = check_spend(rules, full, conversion(AT, publisher="pub_b"))
    assert other.allowed
    assert dict(other.increments) == {
        DAY_KEY: Decimal("1.00"),
        TOTAL_KEY: Decimal("1.00"),
        CounterKey("cmp_1", "cap_pub", "pub_b", "d:2026-02-01"): Decimal(1),
        CounterKey("cmp_1", "cap_goal", "g", "m:2026-02"): Decimal("1.00"),
        CounterKey("cmp_1", "cap_all", "*", "w:2026-01-26"): Decimal(1),
    }
    # A conversion of another goal is not seen by the goal cap.
    other_goal = check_spend(rules, {}, conversion(AT, goal="h"))
    assert all(key.limit_id != "cap_goal" for key, _ in other_goal.increments)
    # Clicks are not counted by conversion caps, but they do spend the budget.
    click = check_spend(rules, full, Spend(AT, BillableEvent.CLICK, usd("0.30")))
    assert click.allowed and len(click.increments) == 2
    money_full = {CounterKey("cmp_1", "cap_goal", "g", "m:2026-02"): Decimal("4.50")}
    assert check_spend(rules, money_full, conversion(AT, "0.50")).allowed
    assert check_spend(rules, money_full, conversion(AT, "0.51")).limit_id == "cap_goal"


def test_limits_are_validated() -> None:
    with pytest.raises(ValidationError):
        Cap("c", CapScope.CAMPAIGN, LimitPeriod.DAY, CapMetric.COUNT, Decimal("1.5"))
    with pytest.raises(ValidationError):
        Cap("c", CapScope.GOAL, LimitPeriod.DAY, CapMetric.COUNT, Decimal(1), BillableEvent.CLICK)
    with pytest.raises(ValidationError):
        CampaignLimits("cmp", USD, "UTC", budgets=(Budget(LimitPeriod.DAY, Money.of(1, "EUR")),))
    with pytest.raises(ValidationError):
        check_spend(limits(), {}, Spend(AT, BillableEvent.CLICK, Money.of("1", "EUR")))
    with pytest.raises(ValidationError):
        Spend(AT, BillableEvent.CLICK, usd("-1"))


def test_prepaid_funds_and_credit_limits() -> None:
    assert check_spend(limits(), {}, conversion(AT, "1.00"), funds=Funds(usd("1.00"))).allowed
    short = check_spend(limits(), {}, conversion(AT, "1.01"), funds=Funds(usd("1.00")))
    assert short.verdict is Verdict.INSUFFICIENT_FUNDS
    with_credit = Funds(usd("-3.00"), credit_limit=usd("5.00"))
    assert check_spend(limits(), {}, conversion(AT, "2.00"), funds=with_credit).allowed
    assert not check_spend(limits(), {}, conversion(AT, "2.01"), funds=with_credit).allowed
    assert should_pause(Funds(usd("0")))
    assert not should_pause(Funds(usd("0.01")))
    assert not should_pause(Funds(usd("0"), credit_limit=usd("10")))
    assert should_pause(Funds(usd("-10"), credit_limit=usd("10")))


@settings(max_examples=120, deadline=None)
@given(
    spends=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=6 * 24 * 60),  # minutes after the start
            st.decimals(min_value=0, max_value=7, places=2),
            st.sampled_from(["pub_a", "pub_b"]),
        ),
        max_size=60,
    ),
    daily=st.decimals(min_value=0, max_value=20, places=2),
    total=st.decimals(min_value=0, max_value=60, places=2),
    cap=st.integers(min_value=0, max_value=4),
    zone=st.sampled_from(ZONES),
)
def test_budgets_and_caps_are_never_passed_and_never_refuse_needlessly(
    spends: list[tuple[int, Decimal, str]],
    daily: Decimal,
    total: Decimal,
    cap: int,
    zone: str,
) -> None:
    rules = CampaignLimits(
        "cmp_1",
        USD,
        zone,
        budgets=(
            Budget(LimitPeriod.DAY, usd(str(daily))),
            Budget(LimitPeriod.TOTAL, usd(str(total))),
        ),
        caps=(Cap("per_pub", CapScope.PUBLISHER, LimitPeriod.DAY, CapMetric.COUNT, Decimal(cap)),),
    )
    tz = ZoneInfo(zone)
    start = datetime(2026, 3, 5, 20, tzinfo=UTC)
    counters: dict[CounterKey, Decimal] = {}
    accepted: list[tuple[date, Decimal, str]] = []
    for minutes, cost, publisher in sorted(spends):
        at = start + timedelta(minutes=minutes)
        local_day = at.astimezone(tz).date()
        decision = check_spend(rules, counters, conversion(at, str(cost), publisher))
        spent_today = sum((c for d, c, _ in accepted if d == local_day), Decimal(0))
        spent_total = sum((c for _, c, _ in accepted), Decimal(0))
        count = sum(1 for d, _, p in accepted if d == local_day and p == publisher)
        fits = spent_today + cost <= daily and spent_total + cost <= total and count < cap
        assert decision.allowed == fits
        if decision.allowed:
            for key, amount in decision.increments:
                counters[key] = counters.get(key, Decimal(0)) + amount
            accepted.append((local_day, cost, publisher))
    by_day: dict[date, Decimal] = {}
    for day, cost, _ in accepted:
        by_day[day] = by_day.get(day, Decimal(0)) + cost
    assert all(spent <= daily for spent in by_day.values())
    assert sum((c for _, c, _ in accepted), Decimal(0)) <= total


# --- click pacing --------------------------------------------------------------------------


def test_the_overshoot_bound_is_reached_when_every_worker_fills_a_batch_at_once() -> None:
    workers, batch, cpc = 3, 4, 50
    budget = batch * cpc  # each worker alone may spend the whole budget
    pacers = [ClickPacer(budget, batch) for _ in range(workers)]
    for pacer in pacers:
        for _ in range(batch):
            assert pacer.try_spend(cpc)
    shared = sum(pacer.take_flush() for pacer in pacers)
    bound = click_overshoot_bound(workers, batch, Money.from_minor(cpc, USD))
    assert Money.from_minor(shared - budget, USD) == bound == usd("4.00")  # (3-1) * 4 * 0.50
    assert click_overshoot_bound(1, 100, usd("9.99")).is_zero()


@settings(max_examples=150, deadline=None)
@given(
    workers=st.integers(min_value=1, max_value=5),
    batch=st.integers(min_value=1, max_value=6),
    max_cpc=st.integers(min_value=1, max_value=90),
    budget=st.integers(min_value=0, max_value=3000),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_paced_click_spend_stays_within_the_bound(
    workers: int, batch: int, max_cpc: int, budget: int, seed: int
) -> None:
    rng = random.Random(seed)
    pacers = [ClickPacer(budget, batch) for _ in range(workers)]
    shared = 0

    def flush(pacer: ClickPacer) -> None:
        nonlocal shared
        shared += pacer.take_flush()  # atomic add-and-read in the store
        pacer.observe(shared)

    for _ in range(400):
        pacer = rng.choice(pacers)
        if rng.random() < 0.1:
            flush(pacer)  # a timer flush with a part-filled batch
            continue
        pacer.try_spend(rng.randint(0, max_cpc))
        if pacer.must_flush:
            flush(pacer)
    spent = shared + sum(pacer.pending_minor for pacer in pacers)
    bound = click_overshoot_bound(workers, batch, Money.from_minor(max_cpc, USD))
    assert spent <= budget + bound.to_minor()
    if workers == 1:
        assert spent <= budget
