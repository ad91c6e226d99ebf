"""What billing needs to know about a campaign and its advertiser, built from the config store."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from sqlalchemy import Connection, select

from perfmark.adapters.store.codec import decode_spec
from perfmark.adapters.store.kinds import ADVERTISERS, CAMPAIGNS, PUBLISHERS
from perfmark.adapters.store.resources import ResourceStore
from perfmark.adapters.store.schema import workspaces
from perfmark.billing.domain.approval import AutoApprovalPolicy
from perfmark.billing.domain.budgets import (
    Budget,
    CampaignLimits,
    Cap,
    CapMetric,
    CapScope,
    Funds,
    LimitPeriod,
)
from perfmark.billing.domain.minor_units import minor_exponent
from perfmark.domain.accounts import WorkspaceSpec
from perfmark.domain.campaigns import CampaignSpec
from perfmark.domain.campaigns import Cap as CampaignCap
from perfmark.domain.parties import AdvertiserSpec, BillingMode
from perfmark.domain.pricing import BillableEvent
from perfmark.errors import PerfmarkError
from perfmark.money import Money

__all__ = [
    "TIER_VOLUME_LIMIT",
    "AdvertiserBilling",
    "BillingConfig",
    "CampaignBilling",
    "cap_id_of",
    "limits_of",
]

logger = logging.getLogger("perfmark.billing")

#: The limit id of the counter of conversions per publisher, goal and month (payout tiers).
TIER_VOLUME_LIMIT = "volume"


@dataclass(frozen=True)
class AdvertiserBilling:
    """An advertiser's billing mode, currency and credit limit."""

    advertiser_id: str
    currency: str
    mode: BillingMode
    credit_limit: Decimal | None

    @property
    def funds_checked(self) -> bool:
        """Whether spend must fit the balance: prepaid, or postpaid with a credit limit."""
        return self.mode is BillingMode.PREPAID or self.credit_limit is not None

    @property
    def credit_minor(self) -> int:
        """The credit limit in minor units (0 without one), rounded down: never more credit."""
        if self.credit_limit is None:
            return 0
        scaled = self.credit_limit.scaleb(minor_exponent(self.currency))
        return int(scaled.to_integral_value(rounding=ROUND_FLOOR))

    def funds(self, account_minor: int) -> Funds | None:
        """The domain's Funds for an account balance (debit positive), None when unchecked."""
        if not self.funds_checked:
            return None
        balance = Money.from_minor(-account_minor, self.currency)
        credit = None
        if self.credit_limit is not None:
            credit = Money.from_minor(self.credit_minor, self.currency)
        return Funds(balance, credit)


def cap_id_of(cap: CampaignCap, taken: set[str]) -> str:
    """A stable id for a campaign cap, from what it counts (so its counter survives edits)."""
    parts = [cap.scope.value, cap.period.value, cap.metric.value]
    if cap.publisher_id:
        parts.append(cap.publisher_id)
    if cap.goal_id:
        parts.append(cap.goal_id)
    base = "cap:" + ":".join(parts)
    candidate, index = base, 1
    while candidate in taken:
        index += 1
        candidate = f"{base}#{index}"
    taken.add(candidate)
    return candidate


def limits_of(campaign_id: str, spec: CampaignSpec, time_zone: str) -> CampaignLimits:
    """The domain limits of a campaign: daily and total budgets, its conversion caps."""
    budgets = []
    if spec.daily_budget is not None:
        budgets.append(Budget(LimitPeriod.DAY, Money(spec.daily_budget, spec.currency)))
    if spec.total_budget is not None:
        budgets.append(Budget(LimitPeriod.TOTAL, Money(spec.total_budget, spec.currency)))
    taken: set[str] = set()
    caps = tuple(
        Cap(
            cap_id=cap_id_of(cap, taken),
            scope=CapScope(cap.scope.value),
            period=LimitPeriod(cap.period.value),
            metric=CapMetric(cap.metric.value),
            limit=cap.limit,
            event=BillableEvent.CONVERSION,
            publisher_id=cap.publisher_id,
            goal_id=cap.goal_id,
        )
        for cap in spec.caps
    )
    return CampaignLimits(campaign_id, spec.currency, time_zone, tuple(budgets), caps)


@dataclass(frozen=True)
class CampaignBilling:
    """A campaign with its limits, counter units and advertiser: everything a posting needs."""

    campaign_id: str
    workspace_id: str
    spec: CampaignSpec
    limits: CampaignLimits
    advertiser: AdvertiserBilling
    #: limit id -> (period, limit in counter units, counts money?)
    limit_table: Mapping[str, tuple[LimitPeriod, int, bool]] = field(default_factory=dict)
    #: Limits whose exhaustion stops the whole campaign (budgets, unnarrowed campaign caps).
    campaign_wide: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls, campaign_id: str, workspace_id: str, spec: CampaignSpec, time_zone: str,
        advertiser: AdvertiserBilling,
    ) -> CampaignBilling:  # fmt: skip
        """Derive the limits and their counter units from the campaign spec."""
        limits = limits_of(campaign_id, spec, time_zone)
        exponent = minor_exponent(spec.currency)
        table: dict[str, tuple[LimitPeriod, int, bool]] = {}
        wide: set[str] = set()
        for budget in limits.budgets:
            amount = budget.amount.amount.scaleb(exponent).to_integral_value(ROUND_FLOOR)
            table[budget.limit_id] = (budget.period, int(amount), True)
            wide.add(budget.limit_id)
        for cap in limits.caps:
            money = cap.metric is CapMetric.MONEY
            limit = cap.limit.scaleb(exponent) if money else cap.limit
            table[cap.cap_id] = (cap.period, int(limit.to_integral_value(ROUND_FLOOR)), money)
            if cap.scope is CapScope.CAMPAIGN and not (cap.publisher_id or cap.goal_id):
                wide.add(cap.cap_id)
        return cls(campaign_id, workspace_id, spec, limits, advertiser, table, frozenset(wide))

    @property
    def currency(self) -> str:
        """The currency the campaign bills in."""
        return self.spec.currency

    @property
    def holds_earnings(self) -> bool:
        """Whether conversion earnings wait in the publisher's pending account (hold_days > 0)."""
        return self.spec.hold_days > 0

    @property
    def auto_approve_limit(self) -> Money | None:
        """The campaign's auto-approval value limit, in its currency (None: no limit)."""
        limit = self.spec.auto_approve_max_value
        return None if limit is None else Money(limit, self.currency)

    @property
    def policy(self) -> AutoApprovalPolicy:
        """Auto-approval: approve once the hold period is over, up to the value limit."""
        return AutoApprovalPolicy(
            hold_days=self.spec.hold_days,
            approve_after_hold=True,
            max_auto_value=self.auto_approve_limit,
        )

    def needs_manual_approval(self, value: Money | None) -> bool:
        """Whether a conversion of this value (campaign currency) waits for a person.

        Its earning is then held in the publisher's pending account even without a hold
        period. A conversion without a value never passes the limit.
        """
        limit = self.auto_approve_limit
        return limit is not None and value is not None and value > limit

    def to_units(self, limit_id: str, amount: Decimal) -> int:
        """A decision's increment in the counter's integer units (minor units or a count)."""
        if limit_id not in self.limit_table or not self.limit_table[limit_id][2]:
            return int(amount)
        return int(amount.scaleb(minor_exponent(self.currency)))

    def from_units(self, limit_id: str, units: int) -> Decimal:
        """A stored counter as the domain's Decimal (major units for money)."""
        if limit_id not in self.limit_table or not self.limit_table[limit_id][2]:
            return Decimal(units)
        return Decimal(units).scaleb(-minor_exponent(self.currency))


def _stored_time_zone(workspace_id: str, data: Any) -> str:
    """The stored workspace's time zone; UTC when it is gone or no longer loads.

    A workspace stored before a rule it breaks existed must not stop every batch of the
    processor: its periods follow UTC, as its links do in the tracker, until it is edited.
    """
    if data is None:
        return "UTC"
    try:
        return decode_spec(WorkspaceSpec, data).timezone
    except PerfmarkError as error:
        logger.error("workspace %s cannot be loaded for billing, periods follow UTC: %s",
                     workspace_id, error)  # fmt: skip
        return "UTC"


def _advertiser_billing(advertiser_id: str, spec: AdvertiserSpec) -> AdvertiserBilling:
    return AdvertiserBilling(advertiser_id, spec.currency, spec.billing_mode, spec.credit_limit)


@dataclass
class BillingConfig:
    """Campaign billing views built on demand on one connection, cached for its lifetime.

    The processor passes the specs of its config snapshot (already decoded); the API and
    jobs read them from the store.
    """

    conn: Connection
    campaign_specs: Mapping[str, CampaignSpec] | None = None
    time_zones: Mapping[str, str] | None = None
    _campaigns: dict[str, CampaignBilling | None] = field(default_factory=dict)
    _advertisers: dict[str, AdvertiserBilling | None] = field(default_factory=dict)
    _zones: dict[str, str] = field(default_factory=dict)
    _templates: dict[str, str | None] = field(default_factory=dict)
    #: (campaign, verdict, limit) whose refusal already held the campaign on this connection:
    #: later refusals of the same kind find it held and skip re-reading it. Cleared when a
    #: reversal reopens a campaign.
    refusals_held: set[tuple[str, str, str | None]] = field(default_factory=set)

    def publisher_template(self, workspace_id: str, publisher_id: str) -> str | None:
        """The publisher's postback URL template, if it set one."""
        if publisher_id not in self._templates:
            record = ResourceStore(PUBLISHERS).get(self.conn, workspace_id, publisher_id)
            self._templates[publisher_id] = (
                None if record is None else record.spec.postback_url_template
            )
        return self._templates[publisher_id]

    def advertiser(self, workspace_id: str, advertiser_id: str) -> AdvertiserBilling | None:
        """The advertiser's billing view, or None when it does not exist."""
        if advertiser_id not in self._advertisers:
            record = ResourceStore(ADVERTISERS).get(self.conn, workspace_id, advertiser_id)
            self._advertisers[advertiser_id] = (
                None if record is None else _advertiser_billing(advertiser_id, record.spec)
            )
        return self._advertisers[advertiser_id]

    def time_zone(self, workspace_id: str) -> str:
        """The workspace's IANA time zone, which budget and cap periods follow."""
        if self.time_zones is not None and workspace_id in self.time_zones:
            return self.time_zones[workspace_id]
        if workspace_id not in self._zones:
            data: Any = self.conn.execute(
                select(workspaces.c.data).where(workspaces.c.id == workspace_id)
            ).scalar_one_or_none()
            self._zones[workspace_id] = _stored_time_zone(workspace_id, data)
        return self._zones[workspace_id]

    def campaign(self, workspace_id: str, campaign_id: str) -> CampaignBilling | None:
        """The campaign's billing view, or None when it is unknown in this workspace."""
        if campaign_id in self._campaigns:
            return self._campaigns[campaign_id]
        spec = (self.campaign_specs or {}).get(campaign_id)
        if spec is None:
            record = ResourceStore(CAMPAIGNS).get(self.conn, workspace_id, campaign_id)
            spec = None if record is None else record.spec
        built = None
        if spec is not None:
            advertiser = self.advertiser(workspace_id, spec.advertiser_id)
            if advertiser is not None:
                built = CampaignBilling.build(
                    campaign_id, workspace_id, spec, self.time_zone(workspace_id), advertiser
                )
        self._campaigns[campaign_id] = built
        return built
