"""The processor's billing step: post a batch's billable events inside its store transaction.

Called once per batch with the events about to be written to the lake, after the
conversions are stored. Conversions are charged one by one, each reserving its cost
against budgets, caps and funds (past a limit: status `over_cap`, not billed). Clicks and
impressions are charged per (campaign, publisher, kind, budget period) in one transaction
each, up to what the budgets allow; the rest are recorded as not billed. Status changes
approve or reverse the live charge. Everything is idempotent, so a batch redone after a
crash posts nothing twice, and the lake events are stamped with what was really charged.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from perfmark.adapters.store.schema import conversions
from perfmark.adapters.store.tracking import set_conversion_status
from perfmark.billing import store
from perfmark.billing.domain.budgets import Decision, Spend, period_bucket
from perfmark.billing.domain.ledger import AccountKind, Transaction, build_charge
from perfmark.billing.domain.minor_units import round_to_minor
from perfmark.billing.services.context import BillingConfig, CampaignBilling
from perfmark.billing.services.holds import (
    hold_after_charge,
    hold_after_refusal,
    reopen_after_release,
)
from perfmark.billing.services.notices import Notice, Topic, queue_notices
from perfmark.billing.services.posting import (
    ChargeOutcome,
    ChargeResult,
    ChargeState,
    ConversionInfo,
    approve_charge,
    charge_conversion,
    charge_state,
    decide,
    release_reservation,
    reservation_of,
    reserve_and_post,
    reverse_charge,
)
from perfmark.domain.events import ConversionStatus, EventType, TrackedEvent
from perfmark.domain.pricing import BillableEvent
from perfmark.errors import PerfmarkError
from perfmark.money import Money
from perfmark.services.tracking_config import ConfigSnapshot

__all__ = [
    "APPLIED_KEY",
    "BILLING_KEY",
    "RESERVED_KEY",
    "BatchBilling",
    "apply_conversion_change",
    "post_billable_events",
    "record_over_cap",
]

logger = logging.getLogger("perfmark.billing")

#: Set in a status event's properties when the API already posted its ledger effect.
APPLIED_KEY = "billing_applied"
#: Key of a conversion row's data that says why billing refused or could not bill it.
BILLING_KEY = "_billing"
#: Key of a conversion row's data with what its live charge took from the budget and cap
#: counters (`posting.reservation_of`), released when the charge is reversed.
RESERVED_KEY = "_reserved"
_BILLED_STATUSES = frozenset({ConversionStatus.PENDING.value, ConversionStatus.APPROVED.value})
_REVERSING_STATUSES = frozenset({ConversionStatus.REJECTED.value, ConversionStatus.REFUNDED.value})
_TRAFFIC = {EventType.CLICK.value: BillableEvent.CLICK,
            EventType.IMPRESSION.value: BillableEvent.IMPRESSION}  # fmt: skip


@dataclass
class BatchBilling:
    """What billing did with one batch (for logs, metrics and tests)."""

    conversions_charged: int = 0
    conversions_over_cap: int = 0
    conversions_not_billed: int = 0
    traffic_charged: int = 0
    traffic_not_billed: int = 0
    approvals: int = 0
    reversals: int = 0


def _moment(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC)


def _stamp(event: TrackedEvent, txn: Transaction, currency: str) -> None:
    """Put on the lake event what was charged (rounded), so reports add up to the invoices."""
    cost = txn.entry_of_kind(AccountKind.ADVERTISER)
    earned = txn.entry_of_kind(AccountKind.PUBLISHER_PENDING) or txn.entry_of_kind(
        AccountKind.PUBLISHER_PAYABLE
    )
    event.cost = str(Money.from_minor(cost.minor if cost else 0, currency).amount)
    event.payout = str(Money.from_minor(-earned.minor if earned else 0, currency).amount)
    event.billing_currency = currency


def _update_row(
    conn: Connection,
    conv: ConversionInfo,
    now: datetime,
    *,
    status: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> None:
    merged = {**conv.data, **(data or {})}
    if status is not None:
        merged["status"] = status
    set_conversion_status(conn, conv.conversion_id, status or conv.status, now, merged)


def record_over_cap(
    conn: Connection, conv: ConversionInfo, result: ChargeResult, now: datetime
) -> None:
    """Store a refused conversion as over_cap, with the verdict and limit that refused it."""
    decision = result.decision
    reason = {
        "verdict": decision.verdict.value if decision else "",
        "limit": decision.limit_id if decision else None,
        "message": result.message,
    }
    _update_row(conn, conv, now, status=ConversionStatus.OVER_CAP.value, data={BILLING_KEY: reason})


def _charge_and_announce(
    conn: Connection,
    config: BillingConfig,
    ctx: CampaignBilling,
    conv: ConversionInfo,
    now: datetime,
    charges_before: int,
) -> ChargeResult:
    result = charge_conversion(conn, ctx, conv, now, charges_before=charges_before)
    if result.outcome is ChargeOutcome.CHARGED and result.txn is not None:
        txn = result.txn
        stamped = TrackedEvent("", "", 0, "")
        _stamp(stamped, txn, ctx.currency)
        # Later status events are built from the stored data: keep the charged amounts, and
        # what the charge took from the counters so that a reversal can give it back.
        stamps = {
            "cost": stamped.cost,
            "payout": stamped.payout,
            "billing_currency": ctx.currency,
            RESERVED_KEY: reservation_of(result, ctx),
            BILLING_KEY: None,  # charged now: an earlier refusal no longer applies
        }
        _update_row(conn, conv, now, data=stamps)
        state = charge_state(conn, ctx.workspace_id, conv.conversion_id)
        payout = Money.from_minor(state.payout_minor, ctx.currency)
        cost_entry = txn.entry_of_kind(AccountKind.ADVERTISER)
        cost = Money.from_minor(cost_entry.minor if cost_entry else 0, ctx.currency)
        queue_notices(
            conn, config, conv, Notice(Topic.CREATED, conv.status, txn.txn_id, payout, cost), now
        )
        if conv.status == ConversionStatus.APPROVED.value:
            approval = approve_charge(conn, ctx.workspace_id, state, now)
            if approval is not None:
                notice = Notice(Topic.APPROVED, conv.status, approval.txn_id, payout, cost)
                queue_notices(conn, config, conv, notice, now)
        hold_after_charge(conn, ctx, conv.ts, now)
    elif result.outcome is ChargeOutcome.REFUSED and result.decision is not None:
        _hold_after_refusal_once(conn, config, ctx, result.decision, conv.ts, now)
    return result


def _hold_after_refusal_once(
    conn: Connection,
    config: BillingConfig,
    ctx: CampaignBilling,
    decision: Decision,
    at: datetime,
    now: datetime,
) -> None:
    """`hold_after_refusal`, once per campaign, verdict and limit until a reopening.

    Once a campaign is capped (or its advertiser's campaigns paused), every further refusal
    of the same kind re-read the campaign to find it held: a burst of conversions over a
    cap did that once per conversion.
    """
    key = (ctx.campaign_id, decision.verdict.value, decision.limit_id)
    if key in config.refusals_held:
        return
    hold_after_refusal(conn, ctx, decision, at, now)
    config.refusals_held.add(key)


def apply_conversion_change(
    conn: Connection,
    config: BillingConfig,
    conv: ConversionInfo,
    previous: str,
    target: str,
    now: datetime,
) -> ChargeResult | Transaction | None:
    """Post what a status change needs: approve, reverse, or charge (again) the conversion.

    Idempotent: it looks at the conversion's live charge, so applying the same change twice
    posts once. Returns the charge result or the posted follow-up transaction.
    """
    ctx = config.campaign(conv.workspace_id, conv.campaign_id) if conv.campaign_id else None
    if ctx is None:
        return None
    state = charge_state(conn, conv.workspace_id, conv.conversion_id)
    payout = Money.from_minor(state.payout_minor, ctx.currency)
    cost = Money.zero(ctx.currency)
    if state.charge is not None:
        entry = state.charge.entry_of_kind(AccountKind.ADVERTISER)
        cost = Money.from_minor(entry.minor if entry else 0, ctx.currency)
    if target in _REVERSING_STATUSES:
        reversal = reverse_charge(conn, conv.workspace_id, state, now, reason=target)
        if reversal is not None and state.charge is not None:
            freed = release_reservation(conn, ctx, conv.data.get(RESERVED_KEY), state.charge, now)
            if reopen_after_release(conn, ctx, freed, now):
                config.refusals_held.clear()  # a later refusal must hold it again
            queue_notices(conn, config, conv, Notice(Topic.REVERSED, target, reversal.txn_id,
                                                     payout, cost), now)  # fmt: skip
        return reversal
    if target not in _BILLED_STATUSES:
        return None
    if state.charge is not None:
        if target != ConversionStatus.APPROVED.value:
            return None
        approval = approve_charge(conn, conv.workspace_id, state, now)
        if approval is not None:
            queue_notices(conn, config, conv, Notice(Topic.APPROVED, target, approval.txn_id,
                                                     payout, cost), now)  # fmt: skip
        return approval
    if previous in _BILLED_STATUSES:
        return None  # billable before and not charged: unpriced, nothing to do now
    # Back from over_cap or rejected: charged now, and the limits are checked again.
    again = replace(conv, status=target)
    return _charge_and_announce(conn, config, ctx, again, now, state.charges)


def _conversion_rows(conn: Connection, event_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    unique = sorted(set(event_ids))
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        for row in conn.execute(
            select(conversions).where(conversions.c.event_id.in_(chunk))
        ).mappings():
            rows[row["event_id"]] = dict(row)
    return rows


def _clear_price(event: TrackedEvent) -> None:
    event.cost = None
    event.payout = None


def _bill_new_conversion(
    conn: Connection,
    config: BillingConfig,
    event: TrackedEvent,
    row: dict[str, Any],
    now: datetime,
    summary: BatchBilling,
    *,
    has_history: bool,
) -> None:
    conv = ConversionInfo.from_row(row)
    ctx = config.campaign(conv.workspace_id, conv.campaign_id) if conv.campaign_id else None
    if ctx is None:
        return
    # Only a conversion with ledger history (an earlier run of this batch, which crashed
    # before its checkpoint, charged it) needs that history read; `_bill_conversions` asks
    # once for the whole batch which conversions have any.
    state = (
        charge_state(conn, conv.workspace_id, conv.conversion_id)
        if has_history
        else ChargeState(live=None, approval=None, charges=0)
    )
    if state.charge is not None:  # charged by an earlier run of this batch
        _stamp(event, state.charge, ctx.currency)
        return
    if state.charges or conv.status not in _BILLED_STATUSES:
        if conv.status == ConversionStatus.OVER_CAP.value:
            event.status = conv.status  # decided by an earlier run of this batch
        return
    result = _charge_and_announce(conn, config, ctx, conv, now, 0)
    if result.outcome is ChargeOutcome.CHARGED:
        if result.txn is not None:
            _stamp(event, result.txn, ctx.currency)
        summary.conversions_charged += 1
    elif result.outcome is ChargeOutcome.REFUSED:
        record_over_cap(conn, conv, result, now)
        event.status = ConversionStatus.OVER_CAP.value
        summary.conversions_over_cap += 1
    else:
        _clear_price(event)
        reason = {"verdict": result.outcome.value, "message": result.message}
        _update_row(conn, conv, now, data={"cost": None, "payout": None, BILLING_KEY: reason})
        if result.outcome is ChargeOutcome.FAILED:
            logger.warning("conversion %s not billed: %s", conv.conversion_id, result.message)
        summary.conversions_not_billed += 1


def _bill_status_event(
    conn: Connection,
    config: BillingConfig,
    event: TrackedEvent,
    row: dict[str, Any],
    now: datetime,
    summary: BatchBilling,
) -> None:
    if event.properties.get(APPLIED_KEY):
        return  # the API posted its ledger effect when it changed the status
    conv = ConversionInfo.from_row(row)
    previous, target = event.previous_status or "", event.status or ""
    outcome = apply_conversion_change(conn, config, conv, previous, target, now)
    if isinstance(outcome, ChargeResult):
        if outcome.outcome is ChargeOutcome.REFUSED:
            if conv.status == target:  # only if no later change of this batch moved it on
                record_over_cap(conn, conv, outcome, now)
                event.status = ConversionStatus.OVER_CAP.value
            summary.conversions_over_cap += 1
        elif outcome.outcome is ChargeOutcome.CHARGED:
            summary.conversions_charged += 1
    elif isinstance(outcome, Transaction):
        if target in _REVERSING_STATUSES:
            summary.reversals += 1
        else:
            summary.approvals += 1


def _bill_conversions(
    conn: Connection,
    config: BillingConfig,
    events: Sequence[TrackedEvent],
    now: datetime,
    summary: BatchBilling,
) -> None:
    wanted = [
        event.event_id
        if event.type == EventType.CONVERSION.value
        else str(event.properties.get("conversion_event_id") or "")
        for event in events
    ]
    rows = _conversion_rows(conn, [event_id for event_id in wanted if event_id])
    remaining = Counter(wanted)
    with_history = store.conversions_with_transactions(
        conn,
        [
            (row["workspace_id"], row["id"])
            for event in events
            if event.type == EventType.CONVERSION.value
            and (row := rows.get(event.event_id)) is not None
        ],
    )
    for event, conversion_event_id in zip(events, wanted, strict=True):
        remaining[conversion_event_id] -= 1
        row = rows.get(conversion_event_id)
        if row is None:
            continue
        try:
            with conn.begin_nested():
                if event.type == EventType.CONVERSION.value:
                    history = (row["workspace_id"], row["id"]) in with_history
                    _bill_new_conversion(
                        conn, config, event, row, now, summary, has_history=history
                    )
                else:
                    _bill_status_event(conn, config, event, row, now, summary)
        except PerfmarkError as exc:
            # A rule refused a posting (e.g. a negative margin): keep the batch going and
            # say so on the conversion; its ledger effect was rolled back as a whole.
            logger.warning("conversion %s: billing refused: %s", conversion_event_id, exc.message)
            conv = ConversionInfo.from_row(row)
            failure = {"verdict": "error", "message": exc.message}
            _update_row(conn, conv, now, data={BILLING_KEY: failure})
        if remaining[conversion_event_id]:  # a later event of it must see these changes
            fresh = _conversion_rows(conn, [conversion_event_id]).get(conversion_event_id)
            if fresh is not None:
                rows[conversion_event_id] = fresh


def _traffic_groups(
    config: BillingConfig, events: Sequence[TrackedEvent]
) -> dict[tuple[str, ...], list[TrackedEvent]]:
    groups: dict[tuple[str, ...], list[TrackedEvent]] = {}
    for event in events:
        if event.type not in _TRAFFIC or event.cost is None or event.is_bot or event.drop_reason:
            continue
        ctx = config.campaign(event.workspace_id, event.campaign_id or "")
        if ctx is None:
            _clear_price(event)
            continue
        limits = ctx.limits
        buckets = tuple(
            period_bucket(budget.period, _moment(event.ts_ms), limits.zone, limits.week_start)
            for budget in limits.budgets
        )
        key = (event.workspace_id, ctx.campaign_id, event.publisher_id or "", event.type, *buckets)
        groups.setdefault(key, []).append(event)
    return groups


def _bill_traffic_group(
    conn: Connection,
    config: BillingConfig,
    ctx: CampaignBilling,
    group: list[TrackedEvent],
    now: datetime,
    summary: BatchBilling,
) -> None:
    group.sort(key=lambda event: (event.ts_ms, event.event_id))
    decided = store.billed_decisions(conn, [event.event_id for event in group])
    fresh = [event for event in group if event.event_id not in decided]
    for event in group:
        if event.event_id in decided and decided[event.event_id] is None:
            _clear_price(event)
            event.status = ConversionStatus.OVER_CAP.value
    if not fresh:
        return
    kind = _TRAFFIC[fresh[0].type]
    publisher_id = fresh[0].publisher_id or "unknown"
    costs = [Decimal(event.cost or "0") for event in fresh]
    payouts = [Decimal(event.payout or "0") for event in fresh]
    at = _moment(fresh[0].ts_ms)

    def spend(count: int) -> Spend:
        total = Money.from_minor(round_to_minor(Money(sum(costs[:count], Decimal(0)),
                                                      ctx.currency)), ctx.currency)  # fmt: skip
        return Spend(at, kind, total, fresh[0].publisher_id, None, count)

    fits = len(fresh)
    if not decide(conn, ctx, spend(fits)).allowed:
        low, high = 0, fits  # the largest count that fits: spend grows with the count
        while low < high:
            middle = (low + high + 1) // 2
            if decide(conn, ctx, spend(middle)).allowed:
                low = middle
            else:
                high = middle - 1
        fits = low
    txn_id: str | None = None
    if fits:
        cost = Money(sum(costs[:fits], Decimal(0)), ctx.currency)
        payout = Money(sum(payouts[:fits], Decimal(0)), ctx.currency)
        if payout > cost and not ctx.spec.allow_negative_margin:
            payout = cost  # priced before the campaign refused a loss: cap, as quote_event does
        charge = build_charge(
            advertiser_id=ctx.advertiser.advertiser_id,
            publisher_id=publisher_id,
            cost=cost,
            payout=payout,
            event=kind,
            reference=fresh[0].event_id,
            occurred_at=now,
            campaign_id=ctx.campaign_id,
            quantity=fits,
            allow_negative_margin=ctx.spec.allow_negative_margin,
            txn_id=store.next_txn_id(now),
        )
        meta = store.PostingMeta(
            ctx.workspace_id, None, ctx.advertiser.advertiser_id, publisher_id, at
        )
        decision, posted = reserve_and_post(conn, ctx, spend(fits), charge, meta, now)
        if posted:
            txn_id = charge.txn_id
        else:
            fits = 0
            if not decision.allowed:
                _hold_after_refusal_once(conn, config, ctx, decision, at, now)
    if fits < len(fresh):
        refusal = decide(conn, ctx, spend(fits + 1))
        if not refusal.allowed:
            _hold_after_refusal_once(conn, config, ctx, refusal, at, now)
    elif fits:
        hold_after_charge(conn, ctx, at, now)
    decisions: dict[str, str | None] = {}
    for index, event in enumerate(fresh):
        decisions[event.event_id] = txn_id if index < fits else None
        if index >= fits:
            _clear_price(event)
            event.status = ConversionStatus.OVER_CAP.value
    store.record_billed(conn, ctx.workspace_id, ctx.campaign_id, decisions, now)
    summary.traffic_charged += fits
    summary.traffic_not_billed += len(fresh) - fits


def post_billable_events(
    conn: Connection,
    events: Sequence[TrackedEvent],
    snapshot: ConfigSnapshot,
    now: datetime,
) -> BatchBilling:
    """Charge, reserve, approve and reverse for one processor batch (see the module docstring).

    Runs inside the batch's store transaction; `events` are the batch's lake events, which
    are updated in place (charged amounts, over_cap) before they are written.
    """
    zones: Mapping[str, str] = {ws: zone.key for ws, zone in snapshot.workspace_timezones.items()}
    config = BillingConfig(conn, snapshot.campaigns, zones)
    summary = BatchBilling()
    changes = [
        event
        for event in events
        if event.type in (EventType.CONVERSION.value, EventType.CONVERSION_STATUS.value)
    ]
    if changes:
        _bill_conversions(conn, config, changes, now, summary)
    for key, group in _traffic_groups(config, events).items():
        ctx = config.campaign(key[0], key[1])
        assert ctx is not None
        _bill_traffic_group(conn, config, ctx, group, now, summary)
    return summary
