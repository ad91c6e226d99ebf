"""A demo workspace with dashboard users and a hand-built lake whose every figure is known.

Times are in December 2025; the clock stands at 2026-01-01T00:00Z, so "the last 7 days"
(UTC) is 2025-12-26..2026-01-01 and the previous period 2025-12-19..2025-12-25.

Current period
  campaign 0 (Northwind, publisher 0 = SearchBuy): 4 clicks at cost 0.50 / payout 0.30;
      1 sale approved: value 40, cost 10, payout 7
  campaign 5 (Lumen, publisher CouponHub): 1 install pending: value 60, cost 15, payout 9
  -> workspace: clicks 4, conversions 2, cost 2 + 10 + 15 = 27, revenue 100,
     CPA 27 / 2 = 13.5, ROAS 100 / 27 = 3.703704 (6 places), payout 1.2 + 7 + 9 = 17.2
  -> Northwind: conversions 1, cost 12, revenue 40, CPA 12, ROAS 3.333333
  -> SearchBuy: clicks 4, conversions 1, conversion rate 0.25, payout 8.2
Previous period
  campaign 0: 1 sale approved on 2025-12-20: value 30, cost 20, payout 14
  -> workspace: conversions 1, cost 20, revenue 30, CPA 20, ROAS 1.5
  -> changes: spend +35 %, revenue +233.3 %, conversions +100 %, CPA -32.5 %, ROAS +146.9 %
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from itertools import count
from typing import Any

from sqlalchemy import insert

from perfmark.adapters.lake import LakeWriter
from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.schema import conversions
from perfmark.domain.events import TrackedEvent
from perfmark.services.container import Container
from perfmark.services.demo import DemoWorkspace
from perfmark.settings import lake_directory

__all__ = ["LakeFacts", "at_ms", "write_known_lake"]

_ids = count(1)


def at_ms(text: str) -> int:
    """Epoch milliseconds of a UTC 'YYYY-MM-DD HH:MM'."""
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class LakeFacts:
    """The ids the known lake uses, for assertions."""

    northwind_campaign: str
    lumen_campaign: str
    northwind: str
    lumen: str
    searchbuy: str
    couponhub: str
    conversion_ids: tuple[str, ...]


def _event(kind: str, when: str, base: dict[str, Any], **fields: Any) -> TrackedEvent:
    return TrackedEvent(
        event_id=f"evt_test{next(_ids):06d}", type=kind, ts_ms=at_ms(when), **base, **fields
    )


def write_known_lake(container: Container, demo: DemoWorkspace) -> LakeFacts:
    """Write the events described above to the lake, and their conversions to the store."""
    c0, c5 = demo.campaigns[0], demo.campaigns[5]
    l0, l5 = demo.links[0], demo.links[5]
    first = {
        "workspace_id": demo.workspace_id, "campaign_id": c0.id, "advertiser_id":
        c0.spec.advertiser_id, "publisher_id": l0.spec.publisher_id, "offer_id": c0.spec.offer_id,
        "link_id": l0.id, "channel": c0.spec.channel.value,
    }  # fmt: skip
    second = {
        "workspace_id": demo.workspace_id, "campaign_id": c5.id, "advertiser_id":
        c5.spec.advertiser_id, "publisher_id": l5.spec.publisher_id, "offer_id": c5.spec.offer_id,
        "link_id": l5.id, "channel": c5.spec.channel.value,
    }  # fmt: skip
    money = {"billing_currency": "USD", "currency": "USD"}
    events = [
        _event("click", f"2025-12-30 10:0{n}", first, click_id=f"clk_test{n}",
               visitor_id=f"v{n}", cost="0.50", payout="0.30", **money)
        for n in range(4)
    ]  # fmt: skip
    conversion_events = [
        _event("conversion", "2025-12-30 11:00", first, goal_key="sale", status="approved",
               value="40", cost="10", payout="7", txid="T-1", click_id="clk_test0",
               visitor_id="v0", **money),
        _event("conversion", "2025-12-31 09:00", second, goal_key="install", status="pending",
               value="60", cost="15", payout="9", txid="T-2", visitor_id="v9", **money),
        _event("conversion", "2025-12-20 08:00", first, goal_key="sale", status="approved",
               value="30", cost="20", payout="14", txid="T-0", visitor_id="v8", **money),
    ]  # fmt: skip
    LakeWriter(lake_directory(container.settings)).write("btest", [*events, *conversion_events])
    ids = []
    with transaction(container.engine) as conn:
        for n, event in enumerate(conversion_events):
            conversion_id = f"cnv_test{n:04d}"
            ids.append(conversion_id)
            moment = datetime.fromtimestamp(event.ts_ms / 1000, tz=UTC)
            conn.execute(
                insert(conversions).values(
                    id=conversion_id, workspace_id=event.workspace_id, event_id=event.event_id,
                    txid=event.txid, ts=moment, goal_id=None, goal_key=event.goal_key or "",
                    click_id=event.click_id, campaign_id=event.campaign_id,
                    publisher_id=event.publisher_id, advertiser_id=event.advertiser_id,
                    visitor_id=event.visitor_id, customer_id=None, value=Decimal(event.value or 0),
                    currency="USD", status=event.status, source="postback", is_bot=False,
                    updated_at=moment, data={"event_id": event.event_id, **_plain(event)},
                )
            )  # fmt: skip
    return LakeFacts(
        northwind_campaign=c0.id, lumen_campaign=c5.id, northwind=c0.spec.advertiser_id,
        lumen=c5.spec.advertiser_id, searchbuy=l0.spec.publisher_id,
        couponhub=l5.spec.publisher_id, conversion_ids=tuple(ids),
    )  # fmt: skip


def _plain(event: TrackedEvent) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads(event.to_json())
    return data
