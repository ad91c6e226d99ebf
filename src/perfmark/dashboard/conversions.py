"""The conversions log: filtered, paged reads of recorded conversions, newest first.

Status changes go through billing (`perfmark.billing.services.conversions`), which posts
their ledger effect; this module only reads, with the filters and names the page shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.schema import campaigns, conversions, publishers
from perfmark.billing.domain.approval import ConversionStatus, transition
from perfmark.clock import utc
from perfmark.domain.accounts import Role
from perfmark.errors import IllegalTransitionError, ValidationError
from perfmark.services.container import Container, Principal

__all__ = ["ConversionFilters", "ConversionPage", "ConversionRow", "list_conversions"]

PAGE_SIZE = 50
_STATUSES = tuple(status.value for status in ConversionStatus)


@dataclass(frozen=True)
class ConversionFilters:
    """What the log shows: status, campaign, publisher, goal, a text search and local days."""

    status: str | None = None
    campaign_id: str | None = None
    publisher_id: str | None = None
    goal_key: str | None = None
    search: str | None = None
    start: date | None = None
    end: date | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.status and self.status not in _STATUSES:
            raise ValidationError(
                f"status {self.status!r} is unknown; use one of {', '.join(_STATUSES)}",
                field="status",
            )
        if self.start and self.end and self.end < self.start:
            raise ValidationError(f"to ({self.end}) is before from ({self.start})", field="to")


@dataclass(frozen=True)
class ConversionRow:
    """One conversion as the log lists it."""

    id: str
    ts: datetime
    status: str
    goal_key: str
    value: Decimal | None
    currency: str | None
    campaign_id: str | None
    campaign_name: str | None
    publisher_id: str | None
    publisher_name: str | None
    advertiser_id: str | None
    txid: str | None
    click_id: str | None
    source: str
    allowed: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The JSON twin's row: amounts as exact decimal strings."""
        return {
            "id": self.id,
            "ts": self.ts.isoformat(),
            "status": self.status,
            "goal": self.goal_key,
            "value": None if self.value is None else str(self.value),
            "currency": self.currency,
            "campaign_id": self.campaign_id,
            "campaign_name": self.campaign_name,
            "publisher_id": self.publisher_id,
            "publisher_name": self.publisher_name,
            "advertiser_id": self.advertiser_id,
            "txid": self.txid,
            "click_id": self.click_id,
            "source": self.source,
            "allowed_statuses": list(self.allowed),
        }


@dataclass(frozen=True)
class ConversionPage:
    """A page of the log, newest first, with the cursor of the next page."""

    rows: tuple[ConversionRow, ...]
    next_cursor: str | None


def _scope(principal: Principal) -> list[Any]:
    """Conditions that keep each role to the conversions it may see."""
    conditions: list[Any] = [conversions.c.workspace_id == principal.workspace_id]
    if principal.role is Role.ADVERTISER:
        conditions.append(conversions.c.advertiser_id == (principal.advertiser_id or ""))
    elif principal.role is Role.PUBLISHER:
        conditions.append(conversions.c.publisher_id == (principal.publisher_id or ""))
    return conditions


def _local_start(day: date, timezone: str) -> datetime:
    return datetime.combine(day, time(0), ZoneInfo(timezone))


def list_conversions(
    container: Container,
    principal: Principal,
    filters: ConversionFilters,
    *,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
) -> ConversionPage:
    """Recorded conversions matching `filters`, newest first (ids sort by time)."""
    conditions = _scope(principal)
    for column, value in (
        (conversions.c.status, filters.status),
        (conversions.c.campaign_id, filters.campaign_id),
        (conversions.c.publisher_id, filters.publisher_id),
        (conversions.c.goal_key, filters.goal_key),
    ):
        if value:
            conditions.append(column == value)
    if filters.search:
        text = filters.search.strip()
        conditions.append(
            or_(
                conversions.c.id == text,
                conversions.c.txid == text,
                conversions.c.click_id == text,
                conversions.c.customer_id == text,
            )
        )
    if filters.start:
        conditions.append(conversions.c.ts >= _local_start(filters.start, filters.timezone))
    if filters.end:
        after = _local_start(filters.end + timedelta(days=1), filters.timezone)
        conditions.append(conversions.c.ts < after)
    if cursor:
        conditions.append(conversions.c.id < cursor)
    statement = (
        select(
            conversions,
            campaigns.c.name.label("campaign_name"),
            publishers.c.name.label("publisher_name"),
        )
        .select_from(
            conversions.outerjoin(campaigns, campaigns.c.id == conversions.c.campaign_id).outerjoin(
                publishers, publishers.c.id == conversions.c.publisher_id
            )
        )
        .where(and_(*conditions))
        .order_by(conversions.c.id.desc())
        .limit(limit + 1)
    )
    with transaction(container.engine) as conn:
        found = conn.execute(statement).mappings().all()
    rows = tuple(_row(item) for item in found[:limit])
    next_cursor = rows[-1].id if len(found) > limit and rows else None
    return ConversionPage(rows, next_cursor)


def _row(item: Any) -> ConversionRow:
    status = ConversionStatus(item["status"])
    return ConversionRow(
        id=item["id"],
        ts=utc(item["ts"]),
        status=status.value,
        goal_key=item["goal_key"],
        value=None if item["value"] is None else _trimmed(Decimal(item["value"])),
        currency=item["currency"],
        campaign_id=item["campaign_id"],
        campaign_name=item["campaign_name"],
        publisher_id=item["publisher_id"],
        publisher_name=item["publisher_name"],
        advertiser_id=item["advertiser_id"],
        txid=item["txid"],
        click_id=item["click_id"],
        source=item["source"],
        allowed=_allowed(status),
    )


def _trimmed(value: Decimal) -> Decimal:
    """The value without the store's trailing zeros, never in exponent form (30, not 3E+1)."""
    return Decimal(format(value.normalize(), "f"))


def _allowed(status: ConversionStatus) -> tuple[str, ...]:
    """The statuses a reviewer may move a conversion to from the dashboard."""
    allowed = []
    for target in (ConversionStatus.APPROVED, ConversionStatus.REJECTED):
        try:
            transition(status, target)
        except IllegalTransitionError:
            continue
        allowed.append(target.value)
    return tuple(allowed)
