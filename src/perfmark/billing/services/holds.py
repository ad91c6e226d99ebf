"""Billing's hand on campaign status: capped when a limit is exhausted, paused at zero funds.

A campaign is only ever moved from `active`, and only moved back when its status is still
the one billing set (a person's later change wins). Each move bumps the config version,
so the trackers send the campaign's clicks to its fallback URL within about a second.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import Connection

from perfmark.adapters.store.kinds import CAMPAIGNS
from perfmark.adapters.store.resources import ResourceStore
from perfmark.billing import store
from perfmark.billing.domain.budgets import (
    CounterKey,
    Decision,
    Verdict,
    period_bucket,
    period_window,
    should_pause,
)
from perfmark.billing.domain.ledger import advertiser_account
from perfmark.billing.services.context import BillingConfig, CampaignBilling
from perfmark.clock import utc
from perfmark.domain.campaigns import CampaignStatus
from perfmark.errors import ConflictError

__all__ = [
    "FUNDS_REASON",
    "exhausted_limit",
    "hold_after_charge",
    "hold_after_refusal",
    "release_holds",
    "reopen_after_release",
    "set_campaign_status",
]

logger = logging.getLogger("perfmark.billing")

#: The hold reason of a campaign paused because its prepaid advertiser has no funds left.
FUNDS_REASON = "funds"
#: Most campaigns of one advertiser paused in one go.
_MAX_CAMPAIGNS_PER_ADVERTISER = 1000


def set_campaign_status(
    conn: Connection,
    workspace_id: str,
    campaign_id: str,
    target: CampaignStatus,
    *,
    expected: CampaignStatus,
    now: datetime,
) -> bool:
    """Move a campaign from `expected` to `target`; False when it is not in `expected` now."""
    campaigns = ResourceStore(CAMPAIGNS)
    record = campaigns.get(conn, workspace_id, campaign_id)
    if record is None or record.archived or record.spec.status is not expected:
        return False
    try:
        campaigns.replace(conn, record, replace(record.spec, status=target), now)
    except ConflictError:  # changed by a person meanwhile: their change wins
        return False
    logger.info("campaign %s: %s -> %s (billing)", campaign_id, expected.value, target.value)
    return True


def _cap(
    conn: Connection, ctx: CampaignBilling, limit_id: str, at: datetime, now: datetime
) -> bool:
    period = ctx.limit_table[limit_id][0]
    window = period_window(period, at, ctx.limits.zone, ctx.limits.week_start)
    moved = set_campaign_status(
        conn,
        ctx.workspace_id,
        ctx.campaign_id,
        CampaignStatus.CAPPED,
        expected=CampaignStatus.ACTIVE,
        now=now,
    )
    if moved:
        store.put_hold(
            conn,
            workspace_id=ctx.workspace_id,
            campaign_id=ctx.campaign_id,
            status=CampaignStatus.CAPPED.value,
            reason=limit_id,
            until=None if window is None else window[1],
            now=now,
        )
    return moved


def _pause_advertiser(
    conn: Connection, workspace_id: str, advertiser_id: str, now: datetime
) -> int:
    page = ResourceStore(CAMPAIGNS).list(
        conn,
        workspace_id,
        filters={"advertiser_id": advertiser_id, "status": CampaignStatus.ACTIVE.value},
        limit=_MAX_CAMPAIGNS_PER_ADVERTISER,
    )
    paused = 0
    for record in page.items:
        if set_campaign_status(
            conn,
            workspace_id,
            record.id,
            CampaignStatus.PAUSED,
            expected=CampaignStatus.ACTIVE,
            now=now,
        ):
            store.put_hold(
                conn,
                workspace_id=workspace_id,
                campaign_id=record.id,
                status=CampaignStatus.PAUSED.value,
                reason=FUNDS_REASON,
                until=None,
                now=now,
            )
            paused += 1
    return paused


def hold_after_refusal(
    conn: Connection, ctx: CampaignBilling, decision: Decision, at: datetime, now: datetime
) -> None:
    """Cap the campaign (campaign-wide limit) or pause the advertiser's campaigns (no funds)."""
    if decision.verdict is Verdict.INSUFFICIENT_FUNDS:
        _pause_advertiser(conn, ctx.workspace_id, ctx.advertiser.advertiser_id, now)
    elif decision.limit_id in ctx.campaign_wide:
        _cap(conn, ctx, decision.limit_id or "", at, now)


def exhausted_limit(conn: Connection, ctx: CampaignBilling, at: datetime) -> str | None:
    """The first campaign-wide limit whose counter for the period of `at` is used up."""
    zone = ctx.limits.zone
    keys = {
        limit_id: CounterKey(
            ctx.campaign_id, limit_id, "*", period_bucket(period, at, zone, ctx.limits.week_start)
        )
        for limit_id, (period, _ceiling, _money) in ctx.limit_table.items()
        if limit_id in ctx.campaign_wide
    }
    values = store.read_counters(conn, keys.values())
    for limit_id, key in keys.items():
        if values.get(key, 0) >= ctx.limit_table[limit_id][1]:
            return limit_id
    return None


def hold_after_charge(conn: Connection, ctx: CampaignBilling, at: datetime, now: datetime) -> None:
    """After a spend: cap the campaign if it used up a limit, pause if funds ran out."""
    used_up = exhausted_limit(conn, ctx, at)
    if used_up is not None:
        _cap(conn, ctx, used_up, at, now)
    if ctx.advertiser.funds_checked:
        account = advertiser_account(ctx.advertiser.advertiser_id).key
        balance = store.account_balance(conn, ctx.workspace_id, account, ctx.currency)
        funds = ctx.advertiser.funds(balance)
        if funds is not None and should_pause(funds):
            _pause_advertiser(conn, ctx.workspace_id, ctx.advertiser.advertiser_id, now)


def reopen_after_release(
    conn: Connection, ctx: CampaignBilling, released: Sequence[CounterKey], now: datetime
) -> bool:
    """Set a capped campaign active again when a reversal gave its capping limit room back.

    Only when billing capped it for one of the released limits, the room came back in the
    limit's current period (a refund of an earlier day's conversion frees that day, not
    today), and no campaign-wide limit is used up now. True when the campaign was reopened.
    """
    hold = store.campaign_hold(conn, ctx.campaign_id)
    if hold is None or hold["status"] != CampaignStatus.CAPPED.value:
        return False
    limit_id = hold["reason"]
    limit = ctx.limit_table.get(limit_id)
    if limit is None:
        return False
    current = period_bucket(limit[0], now, ctx.limits.zone, ctx.limits.week_start)
    if not any(key.limit_id == limit_id and key.bucket == current for key in released):
        return False
    if exhausted_limit(conn, ctx, now) is not None:
        return False
    return _end_hold(conn, ctx.workspace_id, ctx.campaign_id, CampaignStatus.CAPPED, now)


def release_holds(conn: Connection, now: datetime, workspace_id: str | None = None) -> list[str]:
    """Set held campaigns active again: a new period started, funds arrived, or a person edited.

    A capped campaign waits for the end of the period of the limit that capped it; one
    capped by its total budget waits for a change of its settings (a raised budget). A hold
    whose campaign a person moved meanwhile is dropped without touching the campaign.
    """
    released: list[str] = []
    config = BillingConfig(conn)
    campaigns = ResourceStore(CAMPAIGNS)
    for hold in store.campaign_holds(conn, workspace_id):
        campaign_id, ws = hold["campaign_id"], hold["workspace_id"]
        record = campaigns.get(conn, ws, campaign_id)
        ctx = config.campaign(ws, campaign_id)
        status = CampaignStatus(hold["status"])
        if record is None or ctx is None or record.spec.status is not status:
            store.delete_hold(conn, campaign_id)
            continue
        if status is CampaignStatus.PAUSED:
            account = advertiser_account(ctx.advertiser.advertiser_id).key
            funds = ctx.advertiser.funds(store.account_balance(conn, ws, account, ctx.currency))
            if funds is not None and should_pause(funds):
                continue
        else:
            until = hold["until"]
            edited = utc(record.updated_at) > utc(hold["since"])
            if until is not None and now < utc(until) and not edited:
                continue
            if until is None and not edited:
                continue
            if exhausted_limit(conn, ctx, now) is not None:
                continue
        if _end_hold(conn, ws, campaign_id, status, now):
            released.append(campaign_id)
    return released


def _end_hold(
    conn: Connection, workspace_id: str, campaign_id: str, held: CampaignStatus, now: datetime
) -> bool:
    """Set a held campaign active again and forget its hold; False (the hold forgotten too)
    when a person moved the campaign out of the status billing set meanwhile."""
    moved = set_campaign_status(
        conn, workspace_id, campaign_id, CampaignStatus.ACTIVE, expected=held, now=now
    )
    store.delete_hold(conn, campaign_id)
    return moved
