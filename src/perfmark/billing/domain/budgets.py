"""Budgets, caps and prepaid funds: pure decisions over counters, with periods in a time zone.

The store keeps one counter per `CounterKey` (campaign, limit, subject, period bucket) and
applies a decision's increments atomically with the spend it allows (a conversion reserves
its cost in the same statement). Buckets are local calendar periods of the campaign's time
zone, so a conversion at 23:30 UTC counts on the local day it happened on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from perfmark.clock import utc
from perfmark.domain.pricing import BillableEvent
from perfmark.domain.rules import check_currency, check_decimal, check_positive_int
from perfmark.errors import ValidationError
from perfmark.money import Money

__all__ = [
    "Budget",
    "CampaignLimits",
    "Cap",
    "CapMetric",
    "CapScope",
    "ClickPacer",
    "CounterKey",
    "Decision",
    "Funds",
    "LimitPeriod",
    "Spend",
    "Verdict",
    "check_spend",
    "click_overshoot_bound",
    "funds_allow",
    "load_zone",
    "period_bucket",
    "period_window",
    "should_pause",
]


class LimitPeriod(StrEnum):
    """The calendar period a budget or cap counts over (local to the campaign's time zone)."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    TOTAL = "total"  #: the campaign's lifetime


class CapScope(StrEnum):
    """Whose events share one counter."""

    CAMPAIGN = "campaign"  #: one counter for the whole campaign
    PUBLISHER = "publisher"  #: one counter per publisher
    GOAL = "goal"  #: one counter per goal


class CapMetric(StrEnum):
    """What a cap counts."""

    COUNT = "count"  #: events
    MONEY = "money"  #: advertiser cost, in the campaign currency


class Verdict(StrEnum):
    """The outcome of a spend check."""

    ALLOWED = "allowed"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    OVER_BUDGET = "over_budget"
    OVER_CAP = "over_cap"


def load_zone(name: str, *, field: str = "time_zone") -> ZoneInfo:
    """The IANA time zone `name`, or a ValidationError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"{field} {name!r} is not an IANA time zone; use a name such as Europe/Paris or UTC",
            field=field,
        ) from None


def _period_start(period: LimitPeriod, local_day: date, week_start: int) -> date:
    if period is LimitPeriod.DAY:
        return local_day
    if period is LimitPeriod.WEEK:
        return local_day - timedelta(days=(local_day.weekday() - week_start) % 7)
    return local_day.replace(day=1)


def _next_start(period: LimitPeriod, start: date) -> date:
    if period is LimitPeriod.DAY:
        return start + timedelta(days=1)
    if period is LimitPeriod.WEEK:
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def period_bucket(period: LimitPeriod, at: datetime, zone: tzinfo, week_start: int = 0) -> str:
    """The counter bucket of `at`: `d:2026-03-02`, `w:2026-03-02`, `m:2026-03` or `total`.

    A week is named by its first day; `week_start` is 0 for Monday (ISO) through 6 for Sunday.
    """
    if period is LimitPeriod.TOTAL:
        return "total"
    local_day = utc(at).astimezone(zone).date()
    start = _period_start(period, local_day, week_start)
    if period is LimitPeriod.MONTH:
        return f"m:{start.year:04d}-{start.month:02d}"
    return f"{period.value[0]}:{start.isoformat()}"


def period_window(
    period: LimitPeriod, at: datetime, zone: tzinfo, week_start: int = 0
) -> tuple[datetime, datetime] | None:
    """The UTC [start, end) of the local period holding `at` (None for TOTAL).

    A local midnight that a DST change skips starts the period at the change itself.
    """
    if period is LimitPeriod.TOTAL:
        return None
    start_day = _period_start(period, utc(at).astimezone(zone).date(), week_start)
    end_day = _next_start(period, start_day)

    def first_instant(day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)

    return first_instant(start_day), first_instant(end_day)


@dataclass(frozen=True, slots=True)
class Budget:
    """A money budget of the campaign for a period (daily and total are the usual ones)."""

    period: LimitPeriod
    amount: Money

    def __post_init__(self) -> None:
        object.__setattr__(self, "period", LimitPeriod(self.period))
        if self.amount.amount < 0:
            raise ValidationError(f"budget is {self.amount}; it must be 0 or more", field="amount")

    @property
    def limit_id(self) -> str:
        """The name of this budget in counters and decisions (`budget:day`)."""
        return f"budget:{self.period.value}"


@dataclass(frozen=True, slots=True)
class Cap:
    """A count or money cap over events of one kind, with one counter per scope subject.

    `publisher_id` and `goal_id` narrow which events the cap sees; `scope` says whose events
    share a counter (e.g. scope PUBLISHER, goal_id set: each publisher may deliver at most
    `limit` conversions of that goal per period).
    """

    cap_id: str
    scope: CapScope
    period: LimitPeriod
    metric: CapMetric
    limit: Decimal
    event: BillableEvent = BillableEvent.CONVERSION
    publisher_id: str | None = None
    goal_id: str | None = None

    def __post_init__(self) -> None:
        if not self.cap_id:
            raise ValidationError("a cap needs an id", field="cap_id")
        object.__setattr__(self, "scope", CapScope(self.scope))
        object.__setattr__(self, "period", LimitPeriod(self.period))
        object.__setattr__(self, "metric", CapMetric(self.metric))
        object.__setattr__(self, "event", BillableEvent(self.event))
        limit = check_decimal("limit", self.limit)
        if self.metric is CapMetric.COUNT and limit != limit.to_integral_value():
            raise ValidationError(
                f"count cap {self.cap_id} limit is {limit}; a count is a whole number",
                field="limit",
            )
        object.__setattr__(self, "limit", limit)
        if self.goal_id is not None and self.event is not BillableEvent.CONVERSION:
            raise ValidationError(
                f"cap {self.cap_id} names goal {self.goal_id} but counts {self.event.value}s; "
                "only conversions have goals",
                field="goal_id",
            )
        if self.scope is CapScope.GOAL and self.event is not BillableEvent.CONVERSION:
            raise ValidationError(
                f"cap {self.cap_id} is per goal, so it counts conversions", field="scope"
            )

    def applies_to(self, spend: Spend) -> bool:
        """Whether this cap counts `spend`."""
        if spend.event is not self.event:
            return False
        if self.publisher_id is not None and spend.publisher_id != self.publisher_id:
            return False
        if self.goal_id is not None and spend.goal_id != self.goal_id:
            return False
        if self.scope is CapScope.PUBLISHER and spend.publisher_id is None:
            return False
        return not (self.scope is CapScope.GOAL and spend.goal_id is None)

    def subject_of(self, spend: Spend) -> str:
        """The counter subject of `spend` under this cap: `*`, the publisher or the goal."""
        if self.scope is CapScope.PUBLISHER:
            assert spend.publisher_id is not None
            return spend.publisher_id
        if self.scope is CapScope.GOAL:
            assert spend.goal_id is not None
            return spend.goal_id
        return "*"


@dataclass(frozen=True, slots=True)
class CampaignLimits:
    """A campaign's budgets and caps, its currency and the time zone its periods follow."""

    campaign_id: str
    currency: str
    time_zone: str
    budgets: tuple[Budget, ...] = ()
    caps: tuple[Cap, ...] = ()
    week_start: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "currency", check_currency("currency", self.currency))
        load_zone(self.time_zone)
        object.__setattr__(self, "budgets", tuple(self.budgets))
        object.__setattr__(self, "caps", tuple(self.caps))
        if self.week_start not in range(7):
            raise ValidationError(
                f"week_start is {self.week_start}; use 0 (Monday) to 6 (Sunday)",
                field="week_start",
            )
        periods = [budget.period for budget in self.budgets]
        if len(set(periods)) != len(periods):
            raise ValidationError("at most one budget per period", field="budgets")
        for budget in self.budgets:
            if budget.amount.currency != self.currency:
                raise ValidationError(
                    f"the {budget.period.value} budget is in {budget.amount.currency} but the "
                    f"campaign bills in {self.currency}",
                    field="budgets",
                )
        cap_ids = [cap.cap_id for cap in self.caps]
        if len(set(cap_ids)) != len(cap_ids):
            raise ValidationError("cap ids must be unique within a campaign", field="caps")

    @property
    def zone(self) -> ZoneInfo:
        """The campaign's time zone."""
        return load_zone(self.time_zone)


@dataclass(frozen=True, slots=True)
class Spend:
    """A proposed billable event (or batch): when, what, what it costs, for whom."""

    at: datetime
    event: BillableEvent
    cost: Money
    publisher_id: str | None = None
    goal_id: str | None = None
    count: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", utc(self.at))
        object.__setattr__(self, "event", BillableEvent(self.event))
        check_positive_int("count", self.count)
        if self.cost.amount < 0:
            raise ValidationError(f"cost is {self.cost}; it must be 0 or more", field="cost")


@dataclass(frozen=True, slots=True)
class CounterKey:
    """One counter in the store: a limit of a campaign, for one subject, in one period bucket."""

    campaign_id: str
    limit_id: str
    subject: str
    bucket: str


@dataclass(frozen=True, slots=True)
class Funds:
    """An advertiser's prepaid balance (negative: owed) and credit limit (None: prepaid only)."""

    balance: Money
    credit_limit: Money | None = None

    def __post_init__(self) -> None:
        if self.credit_limit is not None:
            if self.credit_limit.currency != self.balance.currency:
                raise ValidationError(
                    "credit limit and balance must be in the same currency", field="credit_limit"
                )
            if self.credit_limit.amount < 0:
                raise ValidationError(
                    f"credit limit is {self.credit_limit}; it must be 0 or more",
                    field="credit_limit",
                )

    @property
    def available(self) -> Money:
        """What may still be spent: balance plus credit limit."""
        if self.credit_limit is None:
            return self.balance
        return self.balance + self.credit_limit


def funds_allow(funds: Funds, cost: Money) -> bool:
    """Whether `cost` fits in the available funds (balance + credit limit)."""
    return cost <= funds.available


def should_pause(funds: Funds) -> bool:
    """Whether a campaign must pause: nothing left to spend (zero balance, no credit left)."""
    return funds.available.amount <= 0


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on a spend, the limit that refused it, and the counter increments to apply."""

    verdict: Verdict
    limit_id: str | None = None
    message: str = ""
    increments: tuple[tuple[CounterKey, Decimal], ...] = ()

    @property
    def allowed(self) -> bool:
        """Whether the spend may go ahead."""
        return self.verdict is Verdict.ALLOWED


def _over(current: Decimal, amount: Decimal, limit: Decimal) -> bool:
    return current + amount > limit


# Messages show amounts in a fixed form (money at the currency's minor units, counts as whole
# numbers), so a verdict reads the same whether its counters came from the store (37.90) or
# from exact arithmetic (37.9).
def _count(value: Decimal) -> str:
    return str(int(value)) if value == value.to_integral_value() else str(value)


def _money_of(currency: str) -> Callable[[Decimal], str]:
    def shown(value: Decimal) -> str:
        return str(Money(value, currency))

    return shown


def check_spend(
    limits: CampaignLimits,
    counters: Mapping[CounterKey, Decimal],
    spend: Spend,
    *,
    funds: Funds | None = None,
) -> Decision:
    """Decide whether `spend` may go ahead given the current counters (missing counters are 0).

    Checked in this order, the first refusal wins: funds, budgets (in the given order), caps
    (in the given order). Reaching a limit exactly is allowed; passing it is not. Pass the
    cost as it will be charged (rounded to minor units).
    """
    if spend.cost.currency != limits.currency:
        raise ValidationError(
            f"spend is in {spend.cost.currency} but campaign {limits.campaign_id} bills in "
            f"{limits.currency}; convert it first",
            field="cost",
        )
    if funds is not None and not funds_allow(funds, spend.cost):
        return Decision(
            Verdict.INSUFFICIENT_FUNDS,
            "funds",
            f"cost {spend.cost} exceeds the {funds.available} the advertiser has available",
        )
    zone = limits.zone
    increments: list[tuple[CounterKey, Decimal]] = []
    for budget in limits.budgets:
        key = CounterKey(
            limits.campaign_id,
            budget.limit_id,
            "*",
            period_bucket(budget.period, spend.at, zone, limits.week_start),
        )
        current = counters.get(key, Decimal(0))
        if _over(current, spend.cost.amount, budget.amount.amount):
            spent = Money(current, limits.currency)
            return Decision(
                Verdict.OVER_BUDGET,
                budget.limit_id,
                f"the {budget.period.value} budget {budget.amount} has {spent} spent; "
                f"{spend.cost} more would pass it",
            )
        increments.append((key, spend.cost.amount))
    for cap in limits.caps:
        if not cap.applies_to(spend):
            continue
        key = CounterKey(
            limits.campaign_id,
            cap.cap_id,
            cap.subject_of(spend),
            period_bucket(cap.period, spend.at, zone, limits.week_start),
        )
        amount = Decimal(spend.count) if cap.metric is CapMetric.COUNT else spend.cost.amount
        current = counters.get(key, Decimal(0))
        if _over(current, amount, cap.limit):
            shown = _count if cap.metric is CapMetric.COUNT else _money_of(limits.currency)
            return Decision(
                Verdict.OVER_CAP,
                cap.cap_id,
                f"cap {cap.cap_id} ({cap.metric.value} per {cap.period.value}) is at "
                f"{shown(current)} of {shown(cap.limit)}; {shown(amount)} more would pass it",
            )
        increments.append((key, amount))
    return Decision(Verdict.ALLOWED, increments=tuple(increments))


def click_overshoot_bound(workers: int, flush_batch_clicks: int, max_unit_cost: Money) -> Money:
    """The most click (or impression) spend can pass a budget when paced by `ClickPacer`s.

    With W workers that each accept an event only if (last seen shared total + own unflushed
    spend + cost) fits the budget, and flush (add to the shared counter and read the new
    total atomically) at least every B events, spend never passes the budget by more than
    (W - 1) * B * max unit cost. Why: take the worker j whose last flush is the latest; every
    event flushed before it is in the total j saw, and j's own unflushed events fit the
    budget above that total; each other worker holds at most B unflushed events. The bound
    is reached when every worker starts from the same total and fills a batch.
    """
    check_positive_int("workers", workers)
    check_positive_int("flush_batch_clicks", flush_batch_clicks)
    return max_unit_cost * ((workers - 1) * flush_batch_clicks)


@dataclass
class ClickPacer:
    """One worker's pacing of click spend against a shared counter, in minor units.

    The worker calls `try_spend` per click, and when `must_flush` (or on a timer) adds
    `take_flush()` to the shared counter atomically and passes the new total to `observe`.
    """

    budget_minor: int
    flush_batch_clicks: int
    seen_total_minor: int = 0
    pending_minor: int = 0
    pending_clicks: int = 0

    @property
    def must_flush(self) -> bool:
        """Whether the batch is full: flush before accepting another click."""
        return self.pending_clicks >= self.flush_batch_clicks

    def try_spend(self, cost_minor: int) -> bool:
        """Accept a click of `cost_minor` if it fits the budget as this worker sees it."""
        if self.must_flush:
            raise RuntimeError("flush the full batch before accepting another click")
        if self.seen_total_minor + self.pending_minor + cost_minor > self.budget_minor:
            return False
        self.pending_minor += cost_minor
        self.pending_clicks += 1
        return True

    def take_flush(self) -> int:
        """The unflushed spend to add to the shared counter; resets the local batch."""
        pending = self.pending_minor
        self.pending_minor = 0
        self.pending_clicks = 0
        return pending

    def observe(self, shared_total_minor: int) -> None:
        """Record the shared total returned by the atomic increment (or a read)."""
        self.seen_total_minor = shared_total_minor
