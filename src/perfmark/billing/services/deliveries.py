"""The postback delivery log, manual replay of dead deliveries, and where deliveries go."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from perfmark.adapters.store.codec import storable_text
from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.kinds import ADVERTISERS, PUBLISHERS
from perfmark.adapters.store.resources import ResourceStore
from perfmark.adapters.store.schema import postback_deliveries
from perfmark.billing import store_outbound
from perfmark.billing.domain.postbacks import (
    DeliveryStatus,
    PostbackDelivery,
    requeue_dead,
    validate_postback_template,
)
from perfmark.billing.services.access import require_write, scope_of
from perfmark.clock import utc
from perfmark.domain.records import Page, Record
from perfmark.domain.rules import check_http_url
from perfmark.errors import NotFoundError, ValidationError
from perfmark.services import catalog
from perfmark.services.container import Container, Principal

__all__ = [
    "Attempt",
    "Delivery",
    "list_deliveries",
    "requeue_delivery",
    "set_postback_template",
    "set_webhook",
]


@dataclass(frozen=True)
class Attempt:
    """One try of a delivery: when, the answer (None: no answer), outcome, error, duration."""

    seq: int
    at: datetime
    status_code: int | None
    outcome: str
    error: str
    duration_ms: int


@dataclass(frozen=True)
class Delivery:
    """An outbound postback or webhook and its attempts."""

    id: str
    target: str
    party_id: str
    conversion_id: str | None
    topic: str
    method: str
    url: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str
    created_at: datetime
    log: tuple[Attempt, ...]

    @classmethod
    def of(cls, row: dict[str, Any]) -> Delivery:
        """From a row of `store_outbound.select_deliveries`."""
        return cls(
            id=row["id"],
            target=row["target"],
            party_id=row["party_id"],
            conversion_id=row["conversion_id"],
            topic=row["topic"],
            method=row["method"],
            url=row["url"],
            status=row["status"],
            attempts=row["attempts"],
            next_attempt_at=utc(row["next_attempt_at"]) if row["next_attempt_at"] else None,
            last_status_code=row["last_status_code"],
            last_error=row["last_error"],
            created_at=utc(row["created_at"]),
            log=tuple(
                Attempt(
                    item["seq"],
                    utc(item["at"]),
                    item["status_code"],
                    item["outcome"],
                    item["error"],
                    item["duration_ms"],
                )
                for item in row["attempts_log"]
            ),
        )


def list_deliveries(
    container: Container,
    principal: Principal,
    *,
    status: str | None = None,
    conversion_id: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[Delivery]:
    """A page of the delivery log; portal keys see the deliveries sent to them."""
    if status is not None and status not in set(DeliveryStatus):
        raise ValidationError(
            f"status {status!r} is unknown; use one of {', '.join(DeliveryStatus)}",
            field="status",
        )
    for name, text in (("conversion_id", conversion_id), ("cursor", cursor)):
        if text is not None and not storable_text(text):
            raise ValidationError(f"{name} contains characters no id has", field=name)
    scope = scope_of(principal)
    target = party = None
    if scope.advertiser_id is not None:
        target, party = "advertiser", scope.advertiser_id
    elif scope.publisher_id is not None:
        target, party = "publisher", scope.publisher_id
    with transaction(container.engine) as conn:
        rows = store_outbound.select_deliveries(
            conn,
            principal.workspace_id,
            status=status,
            conversion_id=conversion_id,
            target=target,
            party_id=party,
            cursor=cursor,
            limit=limit + 1,
        )
    items = tuple(Delivery.of(row) for row in rows[:limit])
    return Page(items, items[-1].id if len(rows) > limit and items else None)


def requeue_delivery(container: Container, principal: Principal, delivery_id: str) -> Delivery:
    """Send a dead delivery again, with a fresh series of attempts (a manual replay)."""
    require_write(principal, "replay deliveries")
    now = container.clock.now()
    with transaction(container.engine) as conn:
        found = store_outbound.select_deliveries(
            conn, principal.workspace_id, delivery_id=delivery_id
        )
        if not found:
            raise NotFoundError(f"no delivery with id {delivery_id!r} in this workspace")
        row = found[0]
        state = PostbackDelivery(
            delivery_id=row["id"],
            url=row["url"],
            attempts=row["attempts"],
            status=DeliveryStatus(row["status"]),
        )
        fresh = requeue_dead(state, at=now)
        conn.execute(
            postback_deliveries.update()
            .where(postback_deliveries.c.id == delivery_id)
            .values(
                status=fresh.status.value,
                attempts=fresh.attempts,
                next_attempt_at=fresh.next_attempt_at,
                last_error="",
                updated_at=now,
            )
        )
        [row] = store_outbound.select_deliveries(
            conn, principal.workspace_id, delivery_id=delivery_id
        )
    return Delivery.of(row)


def set_postback_template(
    container: Container, principal: Principal, publisher_id: str, template: str | None
) -> Record[Any]:
    """Set a publisher's postback URL template after checking it (unknown macros are named)."""
    require_write(principal, "change postback templates")
    if template is not None:
        template = validate_postback_template(template, field="postback_url_template")
    return catalog.update_object(
        container, principal, PUBLISHERS, publisher_id, {"postback_url_template": template}
    )


def set_webhook(
    container: Container, principal: Principal, advertiser_id: str, url: str | None
) -> str | None:
    """Set (or remove, with None) where an advertiser's conversion webhooks go."""
    require_write(principal, "change webhooks")
    if url is not None:
        check_http_url("url", url, allow_macros=False)
    with transaction(container.engine) as conn:
        if ResourceStore(ADVERTISERS).get(conn, principal.workspace_id, advertiser_id) is None:
            raise NotFoundError(
                f"no advertiser with id {advertiser_id!r} in this workspace",
                field="advertiser_id",
            )
        store_outbound.put_webhook(
            conn, principal.workspace_id, advertiser_id, url, container.clock.now()
        )
    return url
