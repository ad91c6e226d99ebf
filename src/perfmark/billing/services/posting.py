"""Charges with atomic budget, cap and funds reservation; approvals and reversals of a charge.

A spend is decided by the domain (`check_spend`) over the stored counters and balance, then
reserved by conditional UPDATEs in a savepoint together with the ledger posting: either the
counters move and the charge is posted, or neither happens. A concurrent writer that took
the last unit makes a conditional UPDATE miss, and the spend is decided again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection

from perfmark.billing import store
from perfmark.billing.domain.budgets import (
    CounterKey,
    Decision,
    LimitPeriod,
    Spend,
    Verdict,
    check_spend,
    period_bucket,
)
from perfmark.billing.domain.ledger import (
    AccountKind,
    Transaction,
    TransactionKind,
    advertiser_account,
    build_approval,
    build_charge,
    build_reversal,
    is_on_hold,
)
from perfmark.billing.domain.minor_units import round_to_minor
from perfmark.billing.domain.pricing import Quote, RateNotFoundError, RateTable, quote_event
from perfmark.billing.services.context import TIER_VOLUME_LIMIT, CampaignBilling
from perfmark.clock import utc
from perfmark.costs.store import select_rates
from perfmark.domain.pricing import BillableEvent
from perfmark.errors import NotFoundError, PerfmarkError
from perfmark.money import Money

__all__ = [
    "ChargeOutcome",
    "ChargeResult",
    "ChargeState",
    "ConversionInfo",
    "RESERVE_ATTEMPTS",
    "approve_charge",
    "charge_conversion",
    "charge_state",
    "decide",
    "release_reservation",
    "reservation_of",
    "reserve_and_post",
    "reverse_charge",
]

#: How often a spend is decided again when a concurrent writer took the counter meanwhile.
RESERVE_ATTEMPTS = 4


class ChargeOutcome(StrEnum):
    """What happened to a conversion's charge."""

    CHARGED = "charged"
    REFUSED = "refused"  #: over a budget, a cap or the funds: recorded as over_cap
    UNPRICED = "unpriced"  #: the campaign has no price for this goal: nothing to bill
    FAILED = "failed"  #: a pricing error (no exchange rate, negative margin): not billed


@dataclass(frozen=True)
class ConversionInfo:
    """The stored conversion as billing reads it."""

    conversion_id: str
    workspace_id: str
    event_id: str
    campaign_id: str | None
    publisher_id: str | None
    advertiser_id: str | None
    goal_id: str | None
    goal_key: str
    ts: datetime
    value: Decimal | None
    currency: str | None
    txid: str | None
    click_id: str | None
    status: str
    data: Mapping[str, Any]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ConversionInfo:
        """From a `conversions` row."""
        value = row["value"]
        return cls(
            conversion_id=row["id"],
            workspace_id=row["workspace_id"],
            event_id=row["event_id"],
            campaign_id=row["campaign_id"],
            publisher_id=row["publisher_id"],
            advertiser_id=row["advertiser_id"],
            goal_id=row["goal_id"],
            goal_key=row["goal_key"],
            ts=utc(row["ts"]),
            value=None if value is None else Decimal(str(value)).normalize(),
            currency=row["currency"],
            txid=row["txid"],
            click_id=row["click_id"],
            status=row["status"],
            data=row["data"] or {},
        )

    @property
    def subs(self) -> tuple[str, ...]:
        """sub1..sub5 of the click, as recorded on the conversion."""
        return tuple(str(self.data.get(f"sub{index}") or "") for index in range(1, 6))


@dataclass(frozen=True)
class ChargeResult:
    """The outcome of charging one conversion."""

    outcome: ChargeOutcome
    txn: Transaction | None = None
    decision: Decision | None = None
    quote: Quote | None = None
    message: str = ""


class _KeyRecorder(Mapping[CounterKey, Decimal]):
    """Counters that are all zero and remember which keys were asked for.

    `check_spend` derives the counter keys of a spend itself; running it once over this
    mapping tells which counters to read, without repeating its key rules here.
    """

    def __init__(self) -> None:
        self.asked: list[CounterKey] = []

    def __getitem__(self, key: CounterKey) -> Decimal:
        self.asked.append(key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[CounterKey]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _advertiser_key(ctx: CampaignBilling) -> str:
    return advertiser_account(ctx.advertiser.advertiser_id).key


def decide(conn: Connection, ctx: CampaignBilling, spend: Spend) -> Decision:
    """The domain's verdict on `spend` given the stored counters and the advertiser's balance."""
    recorder = _KeyRecorder()
    check_spend(ctx.limits, recorder, spend)
    stored = store.read_counters(conn, recorder.asked)
    counters = {key: ctx.from_units(key.limit_id, stored.get(key, 0)) for key in recorder.asked}
    balance = store.account_balance(conn, ctx.workspace_id, _advertiser_key(ctx), ctx.currency)
    return check_spend(ctx.limits, counters, spend, funds=ctx.advertiser.funds(balance))


def reserve_and_post(
    conn: Connection,
    ctx: CampaignBilling,
    spend: Spend,
    txn: Transaction,
    meta: store.PostingMeta,
    now: datetime,
    extra_counters: tuple[tuple[CounterKey, int], ...] = (),
) -> tuple[Decision, bool]:
    """Decide, reserve the counters and funds, and post `txn`, all or nothing.

    Returns the decision and whether `txn` was posted (False also when it was already).
    """
    ceilings = {_advertiser_key(ctx): ctx.advertiser.credit_minor}
    if not ctx.advertiser.funds_checked:
        ceilings = {}
    decision = decide(conn, ctx, spend)
    for _attempt in range(RESERVE_ATTEMPTS):
        if not decision.allowed:
            return decision, False
        savepoint = conn.begin_nested()
        try:
            missed = next(
                (
                    key.limit_id
                    for key, amount in decision.increments
                    if not store.add_to_counter(
                        conn,
                        ctx.workspace_id,
                        key,
                        ctx.to_units(key.limit_id, amount),
                        ctx.limit_table[key.limit_id][1],
                        now,
                    )
                ),
                None,
            )
            if missed is None:
                for key, units in extra_counters:
                    store.add_to_counter(conn, ctx.workspace_id, key, units, None, now)
                posted = store.post_transaction(conn, txn, meta, ceilings=ceilings)
                if posted:
                    savepoint.commit()
                    return decision, True
                savepoint.rollback()
                return decision, False
        except store.FundsExhaustedError:
            pass
        except BaseException:
            savepoint.rollback()
            raise
        savepoint.rollback()
        decision = decide(conn, ctx, spend)
    if decision.allowed:  # still contended after every attempt: refuse rather than overspend
        decision = Decision(Verdict.OVER_BUDGET, None, "too many concurrent spends; retry")
    return decision, False


@dataclass(frozen=True)
class ChargeState:
    """A conversion's live charge (the latest one not reversed) and what happened to it."""

    live: store.StoredTransaction | None
    approval: Transaction | None
    charges: int  #: how many charges were ever posted (a re-charge after a rejection counts)

    @property
    def charge(self) -> Transaction | None:
        """The live charge transaction."""
        return None if self.live is None else self.live.txn

    @property
    def on_hold(self) -> bool:
        """Whether the live charge's earning still waits in the publisher's pending account."""
        return self.charge is not None and is_on_hold(self.charge) and self.approval is None

    @property
    def payout_minor(self) -> int:
        """The publisher's earning on the live charge (minor units)."""
        if self.charge is None:
            return 0
        entry = self.charge.entry_of_kind(AccountKind.PUBLISHER_PENDING) or (
            self.charge.entry_of_kind(AccountKind.PUBLISHER_PAYABLE)
        )
        return -entry.minor if entry is not None else 0

    def meta(self, workspace_id: str) -> store.PostingMeta:
        """The posting metadata of follow-ups of the live charge (same conversion and parties)."""
        live = self.live
        assert live is not None
        return store.PostingMeta(
            workspace_id, live.conversion_id, live.advertiser_id, live.publisher_id, live.event_at
        )


def charge_state(conn: Connection, workspace_id: str, conversion_id: str) -> ChargeState:
    """The live charge of a conversion, from its ledger history."""
    history = store.charges_of_conversion(conn, workspace_id, conversion_id)
    charges = [item for item in history if item.txn.kind is TransactionKind.CHARGE]
    reversed_ids = {
        item.txn.reverses
        for item in history
        if item.txn.kind in (TransactionKind.REVERSAL, TransactionKind.CLAWBACK)
    }
    approvals = {
        item.txn.reverses: item.txn for item in history if item.txn.kind is TransactionKind.APPROVAL
    }
    live = next((item for item in reversed(charges) if item.txn.txn_id not in reversed_ids), None)
    approval = approvals.get(live.txn.txn_id) if live is not None else None
    return ChargeState(live, approval, len(charges))


def _volume_key(ctx: CampaignBilling, conv: ConversionInfo) -> CounterKey:
    bucket = period_bucket(LimitPeriod.MONTH, conv.ts, ctx.limits.zone, ctx.limits.week_start)
    return CounterKey(
        ctx.campaign_id, f"{TIER_VOLUME_LIMIT}:{conv.goal_id}", conv.publisher_id or "*", bucket
    )


def _rates(conn: Connection, workspace_id: str) -> RateTable:
    return RateTable(select_rates(conn, workspace_id))


def _quote(conn: Connection, ctx: CampaignBilling, conv: ConversionInfo) -> Quote:
    currency = conv.currency or ctx.currency
    value = Money(conv.value if conv.value is not None else Decimal(0), currency)
    volume = 0
    if any(rule.tiers for rule in ctx.spec.pricing):  # only tiers depend on the volume
        key = _volume_key(ctx, conv)
        volume = store.read_counters(conn, [key]).get(key, 0)
    return quote_event(
        ctx.spec.pricing,
        event=BillableEvent.CONVERSION,
        currency=ctx.currency,
        at=conv.ts,
        goal_id=conv.goal_id,
        publisher_id=conv.publisher_id,
        value=value,
        volume_this_month=volume + 1,
        rates=_rates(conn, ctx.workspace_id) if currency != ctx.currency else None,
        allow_negative_margin=ctx.spec.allow_negative_margin,
    )


def charge_conversion(
    conn: Connection,
    ctx: CampaignBilling,
    conv: ConversionInfo,
    now: datetime,
    *,
    charges_before: int = 0,
) -> ChargeResult:
    """Price a conversion, reserve its cost against budgets, caps and funds, post the charge.

    The charge is on hold (publisher pending) when the campaign has a hold period. A
    conversion charged again after a rejection gets the reference `<id>:<n>`.
    """
    if conv.goal_id is None or conv.goal_id not in ctx.spec.goal_ids:
        return ChargeResult(ChargeOutcome.UNPRICED, message="the campaign does not buy this goal")
    try:
        quote = _quote(conn, ctx, conv)
    except RateNotFoundError as exc:
        return ChargeResult(ChargeOutcome.FAILED, message=exc.message)
    except NotFoundError as exc:
        return ChargeResult(ChargeOutcome.UNPRICED, message=exc.message)
    except PerfmarkError as exc:
        return ChargeResult(ChargeOutcome.FAILED, message=exc.message)
    publisher_id = conv.publisher_id or "unknown"
    reference = conv.conversion_id if charges_before == 0 else (
        f"{conv.conversion_id}:{charges_before + 1}"
    )  # fmt: skip
    try:
        txn = build_charge(
            advertiser_id=ctx.advertiser.advertiser_id,
            publisher_id=publisher_id,
            cost=quote.cost,
            payout=quote.payout,
            event=BillableEvent.CONVERSION,
            reference=reference,
            occurred_at=now,
            campaign_id=ctx.campaign_id,
            goal_id=conv.goal_id,
            on_hold=ctx.holds_earnings or ctx.needs_manual_approval(quote.value),
            allow_negative_margin=ctx.spec.allow_negative_margin,
            txn_id=store.next_txn_id(now),
        )
    except PerfmarkError as exc:
        return ChargeResult(ChargeOutcome.FAILED, quote=quote, message=exc.message)
    cost = Money.from_minor(round_to_minor(quote.cost), ctx.currency)
    spend = Spend(conv.ts, BillableEvent.CONVERSION, cost, conv.publisher_id, conv.goal_id)
    meta = store.PostingMeta(
        ctx.workspace_id, conv.conversion_id, ctx.advertiser.advertiser_id, publisher_id, conv.ts
    )
    decision, posted = reserve_and_post(
        conn, ctx, spend, txn, meta, now, ((_volume_key(ctx, conv), 1),)
    )
    if not decision.allowed:
        return ChargeResult(ChargeOutcome.REFUSED, decision=decision, quote=quote,
                            message=decision.message)  # fmt: skip
    return ChargeResult(ChargeOutcome.CHARGED, txn if posted else None, decision, quote)


def reservation_of(result: ChargeResult, ctx: CampaignBilling) -> dict[str, Any] | None:
    """What a posted charge took from the budget and cap counters, to keep on the conversion.

    `{"txn_id": ..., "counters": [[limit_id, subject, bucket, units], ...]}`; None when
    nothing was posted. `release_reservation` gives it back when the charge is reversed.
    """
    if result.txn is None or result.decision is None:
        return None
    counters = [
        [key.limit_id, key.subject, key.bucket, ctx.to_units(key.limit_id, amount)]
        for key, amount in result.decision.increments
    ]
    return {"txn_id": result.txn.txn_id, "counters": counters}


def release_reservation(
    conn: Connection,
    ctx: CampaignBilling,
    reservation: Mapping[str, Any] | None,
    reversed_charge: Transaction,
    now: datetime,
) -> list[CounterKey]:
    """Give a reversed charge's budget and cap room back, in the periods it was counted in.

    Only the reservation of that very charge is released, and the caller calls this only
    when the reversal was really posted (a second refund posts nothing), so room is never
    given back twice. Returns the counters that were lowered.
    """
    if not reservation or reservation.get("txn_id") != reversed_charge.txn_id:
        return []
    released = []
    for limit_id, subject, bucket, units in reservation.get("counters") or ():
        key = CounterKey(ctx.campaign_id, str(limit_id), str(subject), str(bucket))
        if int(units) > 0:
            store.release_counter(conn, key, int(units), now)
            released.append(key)
    return released


def approve_charge(
    conn: Connection, workspace_id: str, state: ChargeState, now: datetime
) -> Transaction | None:
    """Move a held earning to payable; None when there is nothing on hold."""
    if state.charge is None or not state.on_hold:
        return None
    txn = build_approval(state.charge, occurred_at=now, txn_id=store.next_txn_id(now))
    return txn if store.post_transaction(conn, txn, state.meta(workspace_id)) else None


def reverse_charge(
    conn: Connection,
    workspace_id: str,
    state: ChargeState,
    now: datetime,
    reason: str,
) -> Transaction | None:
    """Post the reversal of the live charge (a clawback once the earning was paid out)."""
    charge = state.charge
    if charge is None:
        return None
    meta = state.meta(workspace_id)
    paid = False
    if not state.on_hold and meta.publisher_id is not None:
        payable_since = state.approval.occurred_at if state.approval else charge.occurred_at
        paid = store.payout_covers(conn, workspace_id, meta.publisher_id, payable_since)
    txn = build_reversal(
        charge,
        approved=state.approval is not None,
        publisher_paid=paid,
        occurred_at=now,
        reason=reason,
        txn_id=store.next_txn_id(now),
    )
    return txn if store.post_transaction(conn, txn, meta) else None
