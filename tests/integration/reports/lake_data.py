"""A small hand-built event lake for report tests, with every figure of it computed by hand.

The dataset (workspace `ws_a`, billing in EUR) is written with `LakeWriter`, exactly as the
processor writes it. `EXPECTED_TOTALS` is what a report over 2026-01-14..2026-01-16 (UTC)
must say; each figure is derived in the comment beside the events that make it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from itertools import count
from pathlib import Path
from typing import Any

from perfmark.adapters.lake import LakeWriter
from perfmark.billing.domain.pricing import ExchangeRate, RateTable
from perfmark.domain.events import TrackedEvent

__all__ = [
    "EXPECTED_TOTALS",
    "OTHER_WORKSPACE",
    "USD_RATES",
    "WORKSPACE",
    "at_ms",
    "event",
    "standard_events",
    "usd_events",
    "write_events",
]

WORKSPACE = "ws_a"
OTHER_WORKSPACE = "ws_b"
_ids = count(1)

C1 = {"campaign_id": "cmp_1", "advertiser_id": "adv_1", "publisher_id": "pub_1",
      "channel": "search", "offer_id": "off_1", "country": "US", "device": "desktop",
      "os": "Windows", "browser": "Chrome", "creative": "cr_a", "landing_page": "lp1",
      "utm_source": "google", "utm_medium": "cpc", "utm_campaign": "spring"}  # fmt: skip
C2 = {"campaign_id": "cmp_2", "advertiser_id": "adv_1", "publisher_id": "pub_2",
      "channel": "social", "offer_id": "off_1", "country": "DE", "device": "mobile",
      "os": "Android", "browser": "Chrome Mobile", "creative": "cr_b", "landing_page": "lp2",
      "utm_source": "meta", "utm_medium": "paid_social", "utm_campaign": "spring"}  # fmt: skip
C3 = {"campaign_id": "cmp_3", "advertiser_id": "adv_2", "publisher_id": "pub_1",
      "channel": "affiliate", "offer_id": "off_2", "country": "US", "device": "mobile",
      "os": "iOS", "browser": "Mobile Safari", "creative": "cr_c", "landing_page": "lp3"}  # fmt: skip


def at_ms(text: str) -> int:
    """Epoch milliseconds of a UTC time written as 'YYYY-MM-DD HH:MM'."""
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp() * 1000)


def event(kind: str, when: str, workspace: str = WORKSPACE, **fields: Any) -> TrackedEvent:
    """A tracked event as the processor would have written it (prices already stamped)."""
    return TrackedEvent(
        event_id=f"evt_{next(_ids):06d}",
        type=kind,
        ts_ms=at_ms(when),
        workspace_id=workspace,
        **fields,
    )


def _click(
    workspace: str, when: str, campaign: dict[str, str], visitor: str, **fields: Any
) -> TrackedEvent:
    return event("click", when, workspace, visitor_id=visitor, **campaign, **fields)


def _conversion(
    workspace: str,
    when: str,
    campaign: dict[str, str],
    *,
    click: str | None,
    goal: str,
    value: str | None,
    status: str,
    cost: str | None,
    payout: str | None,
    visitor: str,
    **fields: Any,
) -> TrackedEvent:
    return event(
        "conversion",
        when,
        workspace,
        goal_key=goal,
        goal_id=f"goal_{goal}",
        value=value,
        currency="EUR" if value is not None else None,
        status=status,
        cost=cost,
        payout=payout,
        billing_currency="EUR" if cost is not None else None,
        visitor_id=visitor,
        click_ts_ms=at_ms(click) if click else None,
        **campaign,
        **fields,
    )


def standard_events(workspace: str = WORKSPACE) -> list[TrackedEvent]:
    """The standard dataset of `workspace` (see EXPECTED_TOTALS for the sums it must give)."""
    cpc = {"cost": "0.50", "payout": "0.30", "billing_currency": "EUR"}
    cpm = {"cost": "0.002", "payout": "0.001", "billing_currency": "EUR"}
    events = [
        # cmp_1, CPC 0.50 / 0.30: 3 valid clicks, 2 visitors; a bot and a fallback click.
        _click(workspace, "2026-01-14 10:00", C1, "v1", sub1="x", **cpc),
        _click(workspace, "2026-01-14 11:00", C1, "v1", sub1="y", **cpc),
        _click(workspace, "2026-01-14 23:30", C1, "v2", sub1="x", **cpc),  # Jan 15 in Tokyo
        _click(workspace, "2026-01-14 12:00", C1, "v9", sub1="x", is_bot=True, bot_reason="crawler"),
        _click(workspace, "2026-01-14 12:05", C1, "v8", sub1="x", drop_reason="paused_campaign"),
        # cmp_1: 4 impressions, unpriced; one bot impression.
        *(event("impression", "2026-01-14 09:00", workspace, **C1) for _ in range(4)),
        event("impression", "2026-01-14 09:00", workspace, is_bot=True, **C1),
        # cmp_2, CPM 2.00 / 1.00: 10 impressions cost 10 x 0.002 = 0.02, pay 0.01.
        *(event("impression", "2026-01-14 08:00", workspace, **C2, **cpm) for _ in range(10)),
        _click(workspace, "2026-01-14 14:00", C2, "v3"),
        _click(workspace, "2026-01-14 14:30", C2, "v4"),
        # Conversions. conv1: sale 100, approved, 2 h after its click, cost 5 / payout 3.
        _conversion(workspace, "2026-01-14 12:00", C1, click="2026-01-14 10:00", goal="sale",
                    value="100", status="approved", cost="5", payout="3", visitor="v1",
                    customer_id="cu1", sub1="x"),
        # conv2: lead, no value, pending, 2 h after the 23:30 click, so on Jan 15 (UTC).
        _conversion(workspace, "2026-01-15 01:30", C1, click="2026-01-14 23:30", goal="lead",
                    value=None, status="pending", cost="2", payout="1", visitor="v2",
                    sub1="x"),
        # conv3: sale 40, approved, 10 min after its click; refunded on Jan 16.
        _conversion(workspace, "2026-01-14 14:10", C2, click="2026-01-14 14:00", goal="sale",
                    value="40", status="approved", cost="4", payout="2", visitor="v3",
                    customer_id="cu2"),
        event("conversion_status", "2026-01-16 09:00", workspace, goal_key="sale", goal_id="goal_sale",
              value="40", currency="EUR", status="refunded", previous_status="approved",
              cost="4", payout="2", billing_currency="EUR", visitor_id="v3",
              customer_id="cu2", click_ts_ms=at_ms("2026-01-14 14:00"), **C2),
        # conv4: rejected sale; conv5: over a cap. Neither counts.
        _conversion(workspace, "2026-01-14 15:00", C2, click="2026-01-14 14:30", goal="sale",
                    value="60", status="rejected", cost="6", payout="4", visitor="v4"),
        _conversion(workspace, "2026-01-14 16:00", C1, click=None, goal="sale", value="30",
                    status="over_cap", cost=None, payout=None, visitor="v7"),
        # Another workspace on the same lake: never seen by ws_a.
        event("click", "2026-01-14 10:00", workspace=OTHER_WORKSPACE, visitor_id="z1",
              campaign_id="cmp_x", cost="9", payout="9", billing_currency="EUR"),
    ]  # fmt: skip
    return events


#: Totals over 2026-01-14..2026-01-16 in UTC, conversions on their own date.
EXPECTED_TOTALS: dict[str, Any] = {
    "impressions": 14,  # 4 + 10, the bot impression excluded
    "clicks": 5,  # 3 on cmp_1 + 2 on cmp_2; bot and fallback excluded
    "unique_clicks": 4,  # v1, v2, v3, v4
    "conversions": 2,  # conv1 + conv2 + conv3 - refund of conv3
    "conversions_pending": 1,
    "conversions_approved": 1,  # conv1 + conv3 - conv3's change to refunded
    "conversions_rejected": 1,
    "conversions_refunded": 1,
    "conversions_over_cap": 1,
    "leads": 1,
    "sales": 1,
    "revenue": Decimal("100"),  # 100 + 0 + 40 - 40
    "cost": Decimal("8.52"),  # clicks 1.50 + impressions 0.02 + conv 5 + 2 + 4 - 4
    "payout": Decimal("4.91"),  # 0.90 + 0.01 + 3 + 1 + 2 - 2
    "customers": 3,  # cu1, v2 (no customer id), cu2
    "median_seconds_to_convert": Decimal("7200"),  # of 7200, 7200, 600 (not the rejected)
}


def usd_events(workspace: str = WORKSPACE) -> list[TrackedEvent]:
    """A campaign billed in USD beside the EUR ones (v1 also clicked cmp_1)."""
    usd = {"cost": "1.00", "payout": "0.60", "billing_currency": "USD"}
    return [
        _click(workspace, "2026-01-14 10:30", C3, "v1", **usd),
        _click(workspace, "2026-01-15 10:30", C3, "v5", **usd),
        event("conversion", "2026-01-15 11:00", workspace, goal_key="sale", goal_id="goal_sale",
              value="50", currency="USD", status="approved", cost="10", payout="6",
              billing_currency="USD", visitor_id="v5", customer_id="cu5",
              click_ts_ms=at_ms("2026-01-15 10:30"), **C3),
    ]  # fmt: skip


#: USD->EUR 0.9 until Jan 15 (UTC), 0.8 from then on. With USD_EVENTS, a EUR report over
#: Jan 14-16 (UTC) gives cost 8.52 + 1.00 x 0.9 + 11.00 x 0.8 = 18.22, revenue
#: 100 + 50 x 0.8 = 140, payout 4.91 + 0.60 x 0.9 + 6.60 x 0.8 = 10.73.
USD_RATES = RateTable(
    [
        ExchangeRate("USD", "EUR", Decimal("0.9"), datetime(2026, 1, 1, tzinfo=UTC)),
        ExchangeRate("USD", "EUR", Decimal("0.8"), datetime(2026, 1, 15, tzinfo=UTC)),
    ]
)


def write_events(lake: Path, events: list[TrackedEvent], batch_id: str = "b1") -> None:
    """Write events into `lake/events` like one processor batch."""
    LakeWriter(lake).write(batch_id, events)
