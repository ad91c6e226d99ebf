"""Conversions for billing: list, approve or reject in bulk, refund, and auto-approve after hold.

A status change posts its ledger effect (approval, reversal or clawback, or a charge for a
conversion taken back from over_cap) in the same transaction as the new status. It then
appends a `conversion_status` event to the write-ahead log, marked as already posted, so
the lake and the reports see the change and the processor does not post it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Connection, select, tuple_

from perfmark.adapters.store.codec import storable_text
from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.schema import campaigns, conversions
from perfmark.adapters.store.tracking import set_conversion_status
from perfmark.billing.domain.approval import (
    AutoOutcome,
    BulkResult,
    ConversionStatus,
    auto_decision,
    bulk_transition,
    transition,
)
from perfmark.billing.domain.pricing import RateNotFoundError, RateTable
from perfmark.billing.services.access import require_write, scope_of
from perfmark.billing.services.context import BillingConfig
from perfmark.billing.services.events import (
    APPLIED_KEY,
    BILLING_KEY,
    apply_conversion_change,
    record_over_cap,
)
from perfmark.billing.services.posting import ChargeOutcome, ChargeResult, ConversionInfo
from perfmark.clock import utc
from perfmark.costs.store import select_rates
from perfmark.domain.events import EVENT_FIELDS, EventType, TrackedEvent
from perfmark.domain.records import Page
from perfmark.errors import NotFoundError, ValidationError
from perfmark.ids import new_id
from perfmark.money import Money
from perfmark.services.container import Container, Principal

__all__ = [
    "MAX_BULK_IDS",
    "ConversionView",
    "EmitEvent",
    "auto_approve",
    "change_statuses",
    "list_conversions",
    "refund_conversion",
]

logger = logging.getLogger("perfmark.billing")

#: Most conversion ids one bulk approve or reject takes.
MAX_BULK_IDS = 1000
#: Most pending conversions one auto-approval run looks at.
AUTO_APPROVE_BATCH = 1000

#: Appends one event to the write-ahead log (the API's or a job's writer).
EmitEvent = Callable[[TrackedEvent], None]


@dataclass(frozen=True)
class ConversionView:
    """A conversion as the billing API shows it."""

    id: str
    event_id: str
    txid: str | None
    ts: datetime
    status: str
    campaign_id: str | None
    publisher_id: str | None
    advertiser_id: str | None
    goal_id: str | None
    goal_key: str
    click_id: str | None
    value: Decimal | None
    currency: str | None
    cost: str | None
    payout: str | None
    billing_currency: str | None
    billing_note: dict[str, Any] | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> ConversionView:
        """From a `conversions` row."""
        data = row["data"] or {}
        value = row["value"]
        return cls(
            id=row["id"],
            event_id=row["event_id"],
            txid=row["txid"],
            ts=utc(row["ts"]),
            status=row["status"],
            campaign_id=row["campaign_id"],
            publisher_id=row["publisher_id"],
            advertiser_id=row["advertiser_id"],
            goal_id=row["goal_id"],
            goal_key=row["goal_key"],
            click_id=row["click_id"],
            value=None if value is None else Decimal(str(value)).normalize(),
            currency=row["currency"],
            cost=data.get("cost"),
            payout=data.get("payout"),
            billing_currency=data.get("billing_currency"),
            billing_note=data.get(BILLING_KEY),
        )


def list_conversions(
    container: Container,
    principal: Principal,
    *,
    status: str | None = None,
    campaign_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[ConversionView]:
    """A page of conversions, newest id last; portal keys see only their own."""
    if status is not None and status not in set(ConversionStatus):
        raise ValidationError(
            f"status {status!r} is unknown; use one of {', '.join(ConversionStatus)}",
            field="status",
        )
    for name, text in (("campaign_id", campaign_id), ("cursor", cursor)):
        if text is not None and not storable_text(text):
            raise ValidationError(f"{name} contains characters no id has", field=name)
    scope = scope_of(principal)
    table = conversions
    query = select(table).where(table.c.workspace_id == principal.workspace_id)
    if scope.advertiser_id is not None:
        query = query.where(table.c.advertiser_id == scope.advertiser_id)
    if scope.publisher_id is not None:
        query = query.where(table.c.publisher_id == scope.publisher_id)
    if status is not None:
        query = query.where(table.c.status == status)
    if campaign_id is not None:
        query = query.where(table.c.campaign_id == campaign_id)
    if since is not None:
        query = query.where(table.c.ts >= since)
    if until is not None:
        query = query.where(table.c.ts < until)
    if cursor:
        query = query.where(table.c.id > cursor)
    with transaction(container.engine) as conn:
        rows = conn.execute(query.order_by(table.c.id).limit(limit + 1)).mappings().all()
    items = tuple(ConversionView.of(dict(row)) for row in rows[:limit])
    return Page(items, items[-1].id if len(rows) > limit and items else None)


def _row(conn: Connection, workspace_id: str, conversion_id: str) -> dict[str, Any] | None:
    if not storable_text(conversion_id):
        return None
    row = (
        conn.execute(
            select(conversions).where(
                conversions.c.workspace_id == workspace_id, conversions.c.id == conversion_id
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def status_event(row: dict[str, Any], previous: str, target: str, now: datetime) -> TrackedEvent:
    """The lake event of a status change made here (its ledger effect is already posted)."""
    data = {key: value for key, value in (row["data"] or {}).items() if key in EVENT_FIELDS}
    event = TrackedEvent(**data) if "event_id" in data else TrackedEvent(
        row["event_id"], EventType.CONVERSION.value, 0, row["workspace_id"]
    )  # fmt: skip
    event.event_id = new_id("evt", now_ms=int(now.timestamp() * 1000))
    event.type = EventType.CONVERSION_STATUS.value
    event.ts_ms = int(now.timestamp() * 1000)
    event.status = target
    event.previous_status = previous
    event.properties = {"conversion_event_id": row["event_id"], APPLIED_KEY: True}
    return event


def _apply(
    conn: Connection,
    config: BillingConfig,
    row: dict[str, Any],
    target: ConversionStatus,
    now: datetime,
) -> tuple[str | None, TrackedEvent | None]:
    """Post and store one legal status change; (refusal reason, lake event)."""
    conv = ConversionInfo.from_row(row)
    with conn.begin_nested():
        outcome = apply_conversion_change(conn, config, conv, conv.status, target.value, now)
        if isinstance(outcome, ChargeResult) and outcome.outcome is not ChargeOutcome.CHARGED:
            if outcome.outcome is ChargeOutcome.REFUSED:
                record_over_cap(conn, conv, outcome, now)
                decision = outcome.decision
                verdict = decision.verdict.value if decision else "refused"
                limit = f" by {decision.limit_id}" if decision and decision.limit_id else ""
                return (
                    f"still over_cap ({verdict}{limit}): {outcome.message}; raise the limit "
                    "or wait until a refund or a new period leaves room, then try again"
                ), None
            return outcome.message or f"not billable ({outcome.outcome.value})", None
        fresh = _row(conn, conv.workspace_id, conv.conversion_id) or row
        set_conversion_status(conn, conv.conversion_id, target.value, now, fresh["data"])
    return None, status_event(fresh, conv.status, target.value, now)


def change_statuses(
    container: Container,
    principal: Principal,
    conversion_ids: Sequence[str],
    target: ConversionStatus,
    *,
    emit: EmitEvent | None = None,
) -> BulkResult:
    """Approve, reject, refund (or take back from over_cap) many conversions; none fails the rest.

    Unknown ids are refused with a reason; conversions already in `target` are unchanged.
    """
    require_write(principal, "change conversion statuses")
    if len(conversion_ids) > MAX_BULK_IDS:
        raise ValidationError(
            f"{len(conversion_ids)} ids in one call; send at most {MAX_BULK_IDS}", field="ids"
        )
    now = container.clock.now()
    events: list[TrackedEvent] = []
    with transaction(container.engine) as conn:
        rows: dict[str, dict[str, Any]] = {}
        items: list[tuple[str, ConversionStatus]] = []
        missing: list[tuple[str, str]] = []
        for conversion_id in dict.fromkeys(conversion_ids):
            row = _row(conn, principal.workspace_id, conversion_id)
            if row is None:
                missing.append((conversion_id, "no conversion with this id in this workspace"))
                continue
            rows[conversion_id] = row
            items.append((conversion_id, ConversionStatus(row["status"])))
        sorted_out = bulk_transition(items, target)
        config = BillingConfig(conn)
        changed: list[str] = []
        refused = list(sorted_out.refused)
        for conversion_id in sorted_out.changed:
            reason, event = _apply(conn, config, rows[conversion_id], target, now)
            if reason is None and event is not None:
                changed.append(conversion_id)
                events.append(event)
            else:
                refused.append((conversion_id, reason or "not changed"))
    for event in events:
        if emit is not None:
            emit(event)
    return BulkResult(tuple(changed), sorted_out.unchanged, tuple(refused + missing))


def refund_conversion(
    container: Container,
    principal: Principal,
    conversion_id: str,
    *,
    emit: EmitEvent | None = None,
) -> ConversionView:
    """Refund one conversion (a clawback if its publisher was already paid); 404 if unknown."""
    require_write(principal, "refund conversions")
    with transaction(container.engine) as conn:
        row = _row(conn, principal.workspace_id, conversion_id)
    if row is None:
        raise NotFoundError(
            f"no conversion with id {conversion_id!r} in this workspace; list them at "
            "/api/conversions",
            field="conversion_id",
        )
    if row["status"] != ConversionStatus.REFUNDED.value:
        transition(ConversionStatus(row["status"]), ConversionStatus.REFUNDED)
    result = change_statuses(
        container, principal, [conversion_id], ConversionStatus.REFUNDED, emit=emit
    )
    if result.refused:
        raise ValidationError(result.refused[0][1], field="conversion_id")
    with transaction(container.engine) as conn:
        fresh = _row(conn, principal.workspace_id, conversion_id)
    assert fresh is not None
    return ConversionView.of(fresh)


def _held_campaigns(conn: Connection) -> list[tuple[str, str, int]]:
    """(workspace, campaign, hold days) of every live campaign with a hold period."""
    found = []
    for row in conn.execute(
        select(campaigns.c.id, campaigns.c.workspace_id, campaigns.c.data).where(
            campaigns.c.archived_at.is_(None)
        )
    ):
        hold_days = int((row.data or {}).get("hold_days") or 0)
        if hold_days > 0:
            found.append((row.workspace_id, row.id, hold_days))
    return found


def _value_in(
    row: dict[str, Any], currency: str, rates: Callable[[], RateTable]
) -> Money | Literal["unknown"] | None:
    """The conversion's value in the campaign currency; "unknown" when no rate converts it."""
    if row["value"] is None:
        return None
    value = Money(Decimal(str(row["value"])), row["currency"] or currency)
    if value.currency == currency:
        return value
    try:
        return rates().convert(value, currency, utc(row["ts"]))
    except RateNotFoundError:
        return "unknown"


def auto_approve(
    conn: Connection, now: datetime, *, limit: int = AUTO_APPROVE_BATCH
) -> list[TrackedEvent]:
    """Approve pending conversions whose campaign's hold period is over; returns lake events.

    Only campaigns with a hold period wait for approval here: without one, an earning is
    payable from the start and the advertiser's own status postbacks decide. A conversion
    worth more than the campaign's `auto_approve_max_value` (converted at the rate of its
    time; one that cannot be converted counts as more) is left pending for a person.
    """
    config = BillingConfig(conn)
    events: list[TrackedEvent] = []
    rate_tables: dict[str, RateTable] = {}
    for workspace_id, campaign_id, hold_days in _held_campaigns(conn):
        ctx = config.campaign(workspace_id, campaign_id)
        if ctx is None:
            continue

        def rates(workspace_id: str = workspace_id) -> RateTable:
            if workspace_id not in rate_tables:
                rate_tables[workspace_id] = RateTable(select_rates(conn, workspace_id))
            return rate_tables[workspace_id]

        after: tuple[datetime, str] | None = None
        while len(events) < limit:
            # Keyset pages, so conversions left for a person never hide the later ones.
            query = select(conversions).where(
                conversions.c.workspace_id == workspace_id,
                conversions.c.campaign_id == campaign_id,
                conversions.c.status == ConversionStatus.PENDING.value,
                conversions.c.ts <= now - timedelta(days=hold_days),
            )
            if after is not None:
                query = query.where(tuple_(conversions.c.ts, conversions.c.id) > after)
            page = (
                conn.execute(
                    query.order_by(conversions.c.ts, conversions.c.id).limit(AUTO_APPROVE_BATCH)
                )
                .mappings()
                .all()
            )
            if not page:
                break
            after = (page[-1]["ts"], page[-1]["id"])
            for mapping in page:
                row = dict(mapping)
                value = _value_in(row, ctx.currency, rates)
                if value == "unknown":
                    continue  # cannot tell whether it passes the limit: a person decides
                decision = auto_decision(
                    ConversionStatus.PENDING,
                    converted_at=utc(row["ts"]),
                    value=value if isinstance(value, Money) else None,
                    now=now,
                    policy=ctx.policy,
                )
                if decision.outcome is not AutoOutcome.APPROVE:
                    continue
                reason, event = _apply(conn, config, row, ConversionStatus.APPROVED, now)
                if event is not None:
                    events.append(event)
                    if len(events) >= limit:
                        break
                elif reason:
                    logger.info("auto-approval of %s refused: %s", row["id"], reason)
        if len(events) >= limit:
            break
    return events
