"""Queue outbound postbacks to publishers and webhooks to advertisers for conversion changes.

Queued in the same transaction as the ledger posting that causes them, with a dedupe key
per posting, so a batch redone after a crash queues nothing twice. A template that cannot
be rendered (an unknown macro saved before templates were checked) is queued as a dead
delivery whose error names the problem: visible in the delivery log, never silently lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection

from perfmark.billing import store_outbound
from perfmark.billing.domain.postbacks import (
    DeliveryStatus,
    PostbackValues,
    render_postback_url,
    validate_postback_template,
)
from perfmark.billing.services.context import BillingConfig
from perfmark.billing.services.posting import ConversionInfo
from perfmark.errors import ValidationError
from perfmark.ids import new_id
from perfmark.money import Money

__all__ = ["DeliveryTarget", "Notice", "Topic", "queue_notices"]


class Topic(StrEnum):
    """What happened to a conversion."""

    CREATED = "conversion.created"
    APPROVED = "conversion.approved"
    REVERSED = "conversion.reversed"


class DeliveryTarget(StrEnum):
    """Who a delivery goes to."""

    PUBLISHER = "publisher"  #: a postback to the publisher's URL template (GET)
    ADVERTISER = "advertiser"  #: a JSON webhook to the advertiser's URL (POST)


@dataclass(frozen=True)
class Notice:
    """One conversion change to announce: the posting that caused it and the amounts."""

    topic: Topic
    status: str
    txn_id: str
    payout: Money
    cost: Money


def _delivery(
    conv: ConversionInfo,
    notice: Notice,
    *,
    target: DeliveryTarget,
    party_id: str,
    method: str,
    url: str,
    body: str,
    now: datetime,
    error: str = "",
) -> dict[str, object]:
    dead = bool(error)
    return {
        "id": new_id("pbk"),
        "workspace_id": conv.workspace_id,
        "dedupe_key": f"{target.value}:{notice.topic.value}:{notice.txn_id}",
        "target": target.value,
        "party_id": party_id,
        "conversion_id": conv.conversion_id,
        "topic": notice.topic.value,
        "method": method,
        "url": url,
        "body": body,
        "status": (DeliveryStatus.DEAD if dead else DeliveryStatus.PENDING).value,
        "attempts": 0,
        "total_attempts": 0,
        "next_attempt_at": None if dead else now,
        "last_status_code": None,
        "last_error": error[:500],
        "created_at": now,
        "updated_at": now,
    }


def _publisher_url(template: str, conv: ConversionInfo, notice: Notice) -> str:
    validate_postback_template(template, field="postback_url_template")
    values = PostbackValues(
        click_id=conv.click_id or "",
        subs=conv.subs,
        payout=notice.payout,
        goal=conv.goal_key,
        status=notice.status,
        txid=conv.txid or "",
        campaign_id=conv.campaign_id or "",
        conversion_id=conv.conversion_id,
    )
    return render_postback_url(template, values)


def _webhook_body(conv: ConversionInfo, notice: Notice) -> str:
    return json.dumps(
        {
            "topic": notice.topic.value,
            "conversion_id": conv.conversion_id,
            "txid": conv.txid,
            "status": notice.status,
            "campaign_id": conv.campaign_id,
            "goal": conv.goal_key,
            "click_id": conv.click_id,
            "cost": str(notice.cost.rounded().amount),
            "currency": notice.cost.currency,
            "occurred_at": conv.ts.isoformat(),
            "transaction_id": notice.txn_id,
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def queue_notices(
    conn: Connection,
    config: BillingConfig,
    conv: ConversionInfo,
    notice: Notice,
    now: datetime,
) -> int:
    """Queue the publisher's postback and the advertiser's webhook, if they are configured."""
    queued = 0
    if conv.publisher_id:
        template = config.publisher_template(conv.workspace_id, conv.publisher_id)
        if template:
            try:
                url, error = _publisher_url(template, conv, notice), ""
            except ValidationError as exc:
                url, error = template, exc.message
            queued += store_outbound.insert_delivery(
                conn,
                _delivery(
                    conv,
                    notice,
                    target=DeliveryTarget.PUBLISHER,
                    party_id=conv.publisher_id,
                    method="GET",
                    url=url,
                    body="",
                    now=now,
                    error=error,
                ),
            )
    if conv.advertiser_id:
        webhook = store_outbound.webhook_url(conn, conv.workspace_id, conv.advertiser_id)
        if webhook:
            queued += store_outbound.insert_delivery(
                conn,
                _delivery(
                    conv,
                    notice,
                    target=DeliveryTarget.ADVERTISER,
                    party_id=conv.advertiser_id,
                    method="POST",
                    url=webhook,
                    body=_webhook_body(conv, notice),
                    now=now,
                ),
            )
    return queued
