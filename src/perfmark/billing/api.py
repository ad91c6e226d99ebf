"""Billing routes: top-ups and balances, conversions and approvals, ledger, invoices, payout
statements, postback deliveries and their settings. Each parses, calls one service, renders."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from perfmark.billing.domain.approval import BulkResult, ConversionStatus
from perfmark.billing.domain.statements import StatementKind
from perfmark.billing.services import conversions, deliveries, funds, statements
from perfmark.billing.services.conversions import ConversionView, EmitEvent
from perfmark.billing.services.deliveries import Delivery
from perfmark.billing.services.funds import Balance
from perfmark.billing.services.statements import IssuedStatement
from perfmark.billing.store import StoredTransaction
from perfmark.clock import utc
from perfmark.domain.events import TrackedEvent
from perfmark.errors import ValidationError
from perfmark.money import Money, MoneyError, parse_amount
from perfmark.services.container import Container
from perfmark.web.api.deps import CurrentPrincipal, get_container
from perfmark.web.api.resources import ERROR_RESPONSES

__all__ = ["build_billing_router", "statement_json"]

ContainerDep = Annotated[Container, Depends(get_container)]
_ID = Path(description="The object's id", max_length=80)
_Cursor = Annotated[
    str | None, Query(max_length=200, description="next_cursor of the previous page")
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TopUpIn(_Strict):
    """Money an advertiser paid in; a retry with the same reference posts once."""

    amount: str = Field(max_length=40, description='Exact decimal string above 0, e.g. "500.00"')
    currency: str | None = Field(default=None, max_length=8, description="Default: advertiser's")
    reference: str | None = Field(
        default=None, max_length=100, description="Your payment reference (idempotency key)"
    )


class IdsIn(_Strict):
    """Conversion ids for a bulk status change."""

    ids: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1, max_length=conversions.MAX_BULK_IDS
    )


class InvoiceIn(_Strict):
    """Invoice an advertiser for a period that has ended."""

    advertiser_id: str = Field(max_length=64)
    period_start: dt.datetime = Field(description="ISO 8601 instant (no offset: UTC)")
    period_end: dt.datetime = Field(description="Exclusive end; must not be in the future")


class StatementIn(_Strict):
    """Issue a publisher's payout statement (and post the payout of what is due)."""

    publisher_id: str = Field(max_length=64)
    period_start: dt.datetime
    period_end: dt.datetime
    minimum_payout: str | None = Field(default=None, max_length=40)
    currency: str | None = Field(default=None, max_length=8, description="Of minimum_payout")


class TemplateIn(_Strict):
    """A postback URL template, e.g. https://aff.example/pb?click={click_id}&amt={payout}."""

    template: str | None = Field(max_length=2048)


class WebhookIn(_Strict):
    """Where an advertiser's conversion webhooks go (null removes it)."""

    url: str | None = Field(max_length=2048)


def _money(amount: Money | None) -> dict[str, str] | None:
    if amount is None:
        return None
    return {"amount": str(amount.rounded().amount), "currency": amount.currency}


def _balance_json(balance: Balance) -> dict[str, Any]:
    return {
        "advertiser_id": balance.advertiser_id,
        "billing_mode": balance.billing_mode,
        "balance": _money(balance.balance),
        "credit_limit": _money(balance.credit_limit),
        "available": _money(balance.available),
    }


def _conversion_json(item: ConversionView) -> dict[str, Any]:
    return {
        "id": item.id,
        "event_id": item.event_id,
        "txid": item.txid,
        "ts": item.ts.isoformat(),
        "status": item.status,
        "campaign_id": item.campaign_id,
        "publisher_id": item.publisher_id,
        "advertiser_id": item.advertiser_id,
        "goal_id": item.goal_id,
        "goal": item.goal_key,
        "click_id": item.click_id,
        "value": None if item.value is None else str(item.value),
        "currency": item.currency,
        "cost": item.cost,
        "payout": item.payout,
        "billing_currency": item.billing_currency,
        "billing_note": item.billing_note,
    }


def _bulk_json(result: BulkResult) -> dict[str, Any]:
    return {
        "changed": list(result.changed),
        "unchanged": list(result.unchanged),
        "refused": [{"id": item, "reason": reason} for item, reason in result.refused],
    }


def _transaction_json(item: StoredTransaction) -> dict[str, Any]:
    txn = item.txn
    return {
        "txn_id": txn.txn_id,
        "kind": txn.kind.value,
        "occurred_at": txn.occurred_at.isoformat(),
        "event_at": item.event_at.isoformat() if item.event_at else None,
        "reference": txn.reference,
        "reverses": txn.reverses,
        "campaign_id": txn.campaign_id,
        "goal_id": txn.goal_id,
        "event": txn.event.value if txn.event else None,
        "quantity": txn.quantity,
        "conversion_id": item.conversion_id,
        "advertiser_id": item.advertiser_id,
        "publisher_id": item.publisher_id,
        "memo": txn.memo,
        "entries": [
            {
                "account": entry.account.key,
                "currency": entry.currency,
                "minor": entry.minor,
                "amount": str(entry.money.amount),
            }
            for entry in txn.entries
        ],
    }


def statement_json(issued: IssuedStatement) -> dict[str, Any]:
    """The JSON form of an issued invoice or payout statement (API and CLI)."""
    statement = issued.statement
    return {
        "id": issued.id,
        "number": statement.number,
        "kind": statement.kind.value,
        "party_id": statement.party_id,
        "period_start": statement.period_start.isoformat(),
        "period_end": statement.period_end.isoformat(),
        "issued_at": statement.issued_at.isoformat() if statement.issued_at else None,
        "lines": [
            {
                "section": line.section.value,
                "campaign_id": line.campaign_id,
                "goal_id": line.goal_id,
                "event": line.event.value if line.event else None,
                "quantity": line.quantity,
                **(_money(line.amount) or {}),
            }
            for line in statement.lines
        ],
        "totals": [_money(item) for item in statement.totals],
        "amount_due": [_money(item) for item in statement.amount_due],
        "carry_forward": [_money(item) for item in statement.carry_forward],
        "payments": [_money(item) for item in statement.payments],
        "payout_txn_ids": list(issued.payout_txn_ids),
        "digest": issued.digest,
        "intact": issued.intact,
    }


def _delivery_json(item: Delivery) -> dict[str, Any]:
    return {
        "id": item.id,
        "target": item.target,
        "party_id": item.party_id,
        "conversion_id": item.conversion_id,
        "topic": item.topic,
        "method": item.method,
        "url": item.url,
        "status": item.status,
        "attempts": item.attempts,
        "next_attempt_at": item.next_attempt_at.isoformat() if item.next_attempt_at else None,
        "last_status_code": item.last_status_code,
        "last_error": item.last_error,
        "created_at": item.created_at.isoformat(),
        "log": [
            {
                "seq": attempt.seq,
                "at": attempt.at.isoformat(),
                "status_code": attempt.status_code,
                "outcome": attempt.outcome,
                "error": attempt.error,
                "duration_ms": attempt.duration_ms,
            }
            for attempt in item.log
        ],
    }


def _emitter(request: Request) -> EmitEvent | None:
    wal = getattr(request.app.state, "wal", None)
    if wal is None:
        return None

    def emit(event: TrackedEvent) -> None:
        wal.append(event.to_json())

    return emit


def _instant(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else utc(value)


def _render(issued: IssuedStatement, fmt: str) -> Any:
    if fmt == "csv":
        return Response(
            statements.render_statement_csv(issued),
            media_type="text/csv",
            headers={
                "content-disposition": f'attachment; filename="{issued.statement.number}.csv"'
            },
        )
    if fmt == "html":
        return HTMLResponse(statements.render_html(issued))
    return statement_json(issued)


def _split_format(statement_id: str, fmt: str) -> tuple[str, str]:
    for suffix in ("csv", "html", "json"):
        if statement_id.endswith(f".{suffix}"):
            return statement_id[: -len(suffix) - 1], suffix
    return statement_id, fmt


def _add_statement_routes(router: APIRouter, kind: StatementKind, path: str) -> None:
    label = "invoice" if kind is StatementKind.INVOICE else "payout statement"
    responses = {
        **ERROR_RESPONSES,
        200: {"description": f"The {label}", "content": {"text/csv": {}, "text/html": {}}},
    }

    @router.get(
        f"/{path}",
        responses=ERROR_RESPONSES,
        tags=["billing"],
        summary=f"List issued {label}s",
        operation_id=f"list_{path}",
    )
    def list_(
        container: ContainerDep,
        principal: CurrentPrincipal,
        party_id: Annotated[str | None, Query(max_length=64)] = None,
        cursor: _Cursor = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> Any:
        page = statements.list_statements(
            container, principal, kind, party_id=party_id, cursor=cursor, limit=limit
        )
        return {
            "data": [statement_json(item) for item in page.items],
            "next_cursor": page.next_cursor,
        }

    @router.get(
        f"/{path}/{{statement_id}}",
        responses=responses,
        tags=["billing"],
        summary=f"One {label} as JSON, CSV or printable HTML (or add .csv / .html)",
        operation_id=f"get_{path}",
    )
    def get(
        container: ContainerDep,
        principal: CurrentPrincipal,
        statement_id: Annotated[str, _ID],
        format: Annotated[Literal["json", "csv", "html"], Query()] = "json",
    ) -> Any:
        plain_id, fmt = _split_format(statement_id, format)
        return _render(statements.get_statement(container, principal, kind, plain_id), fmt)


def build_billing_router() -> APIRouter:
    """Routes for balances, conversions, the ledger, statements and postback deliveries."""
    router = APIRouter()

    @router.post(
        "/advertisers/{advertiser_id}/topups",
        status_code=201,
        responses=ERROR_RESPONSES,
        tags=["billing"],
        summary="Credit a top-up to a prepaid balance",
    )
    def post_topup(
        container: ContainerDep,
        principal: CurrentPrincipal,
        advertiser_id: Annotated[str, _ID],
        body: TopUpIn,
    ) -> Any:
        result = funds.top_up(
            container,
            principal,
            advertiser_id,
            body.amount,
            currency=body.currency,
            reference=body.reference,
        )
        return {
            "txn_id": result.txn_id,
            "reference": result.reference,
            "amount": _money(result.amount),
            "replayed": result.replayed,
            "balance": _balance_json(result.balance),
            "released_campaigns": list(result.released_campaigns),
        }

    @router.get(
        "/advertisers/{advertiser_id}/balance",
        responses=ERROR_RESPONSES,
        tags=["billing"],
        summary="An advertiser's balance, credit limit and available funds",
    )
    def get_balance(
        container: ContainerDep, principal: CurrentPrincipal, advertiser_id: Annotated[str, _ID]
    ) -> Any:
        return _balance_json(funds.balance_of(container, principal, advertiser_id))

    @router.put(
        "/advertisers/{advertiser_id}/webhook",
        responses=ERROR_RESPONSES,
        tags=["billing"],
        summary="Set where the advertiser's conversion webhooks go",
    )
    def put_webhook(
        container: ContainerDep,
        principal: CurrentPrincipal,
        advertiser_id: Annotated[str, _ID],
        body: WebhookIn,
    ) -> Any:
        url = deliveries.set_webhook(container, principal, advertiser_id, body.url)
        return {"advertiser_id": advertiser_id, "url": url}

    @router.put(
        "/publishers/{publisher_id}/postback_template",
        responses=ERROR_RESPONSES,
        tags=["billing"],
        summary="Set a publisher's postback URL template (checked: unknown macros are refused)",
    )
    def put_template(
        container: ContainerDep,
        principal: CurrentPrincipal,
        publisher_id: Annotated[str, _ID],
        body: TemplateIn,
    ) -> Any:
        record = deliveries.set_postback_template(container, principal, publisher_id, body.template)
        return {"publisher_id": record.id, "template": record.spec.postback_url_template}

    @router.get(
        "/conversions",
        responses=ERROR_RESPONSES,
        tags=["billing"],
        summary="Conversions with their billing status, cost and payout",
    )
    def list_conversions(
        container: ContainerDep,
        principal: CurrentPrincipal,
        status: Annotated[str | None, Query(max_length=16)] = None,
        campaign_id: Annotated[str | None, Query(max_length=64)] = None,
        from_: Annotated[dt.datetime | None, Query(alias="from")] = None,
        to: Annotated[dt.datetime | None, Query(description="Exclusive end instant")] = None,
        cursor: _Cursor = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> Any:
        page = conversions.list_conversions(
            container,
            principal,
            status=status,
            campaign_id=campaign_id,
            since=_instant(from_),
            until=_instant(to),
            cursor=cursor,
            limit=limit,
        )
        return {
            "data": [_conversion_json(item) for item in page.items],
            "next_cursor": page.next_cursor,
        }

    def bulk(target: ConversionStatus, verb: str, summary: str | None = None) -> None:
        @router.post(
            f"/conversions/{verb}",
            responses=ERROR_RESPONSES,
            tags=["billing"],
            summary=summary
            or f"{verb.capitalize()} conversions in bulk: changed, unchanged, refused",
            operation_id=f"{verb}_conversions",
        )
        def change(
            request: Request, container: ContainerDep, principal: CurrentPrincipal, body: IdsIn
        ) -> Any:
            result = conversions.change_statuses(
                container, principal, body.ids, target, emit=_emitter(request)
            )
            return _bulk_json(result)

    bulk(ConversionStatus.APPROVED, "approve")
    bulk(ConversionStatus.REJECTED, "reject")
    bulk(
        ConversionStatus.PENDING,
        "accept",
        "Accept over_cap conversions in bulk: each is priced and reserved against its budget "
        "and caps now, and becomes pending; refused while there is still no room",
    )

    @router.post(
        "/conversions/{conversion_id}/refund",
        responses=ERROR_RESPONSES,
        tags=["billing"],
        summary="Refund a conversion (a clawback if its publisher was already paid)",
    )
    def refund(
        request: Request,
        container: ContainerDep,
        principal: CurrentPrincipal,
        conversion_id: Annotated[str, _ID],
    ) -> Any:
        item = conversions.refund_conversion(
            container, principal, conversion_id, emit=_emitter(request)
        )
        return _conversion_json(item)

    @router.get(
        "/ledger",
        responses=ERROR_RESPONSES,
        tags=["billing"],
        summary="Ledger transactions and their entries, oldest first",
    )
    def ledger(
        container: ContainerDep,
        principal: CurrentPrincipal,
        account: Annotated[
            str | None, Query(max_length=80, description="e.g. advertiser:adv_... or cash")
        ] = None,
        kind: Annotated[str | None, Query(max_length=16)] = None,
        campaign_id: Annotated[str | None, Query(max_length=64)] = None,
        conversion_id: Annotated[str | None, Query(max_length=64)] = None,
        from_: Annotated[dt.datetime | None, Query(alias="from")] = None,
        to: Annotated[dt.datetime | None, Query()] = None,
        cursor: _Cursor = None,
        limit: Annotated[int, Query(ge=1, le=funds.MAX_LEDGER_PAGE)] = 100,
    ) -> Any:
        page = funds.list_ledger(
            container,
            principal,
            account=account,
            kind=kind,
            campaign_id=campaign_id,
            conversion_id=conversion_id,
            since=_instant(from_),
            until=_instant(to),
            cursor=cursor,
            limit=limit,
        )
        return {
            "data": [_transaction_json(item) for item in page.items],
            "next_cursor": page.next_cursor,
        }

    @router.post(
        "/invoices",
        status_code=201,
        responses=ERROR_RESPONSES,
        tags=["billing"],
        summary="Issue an advertiser's invoice for a period",
    )
    def post_invoice(container: ContainerDep, principal: CurrentPrincipal, body: InvoiceIn) -> Any:
        issued = statements.issue_invoice(
            container, principal, body.advertiser_id, body.period_start, body.period_end
        )
        return statement_json(issued)

    @router.post(
        "/statements",
        status_code=201,
        responses=ERROR_RESPONSES,
        tags=["billing"],
        summary="Issue a publisher's payout statement for a period and post its payout",
    )
    def post_statement(
        container: ContainerDep, principal: CurrentPrincipal, body: StatementIn
    ) -> Any:
        minimum = None
        if body.minimum_payout is not None:
            if body.currency is None:
                raise ValidationError("minimum_payout needs its currency", field="currency")
            try:
                minimum = Money(parse_amount(body.minimum_payout, field="minimum_payout"),
                                body.currency)  # fmt: skip
            except MoneyError as exc:
                raise ValidationError(str(exc), field="minimum_payout") from None
        issued = statements.issue_payout_statement(
            container,
            principal,
            body.publisher_id,
            body.period_start,
            body.period_end,
            minimum_payout=minimum,
        )
        return statement_json(issued)

    _add_statement_routes(router, StatementKind.INVOICE, "invoices")
    _add_statement_routes(router, StatementKind.PAYOUT, "statements")

    @router.get(
        "/postbacks/deliveries",
        responses=ERROR_RESPONSES,
        tags=["billing"],
        summary="The delivery log of outbound postbacks and webhooks",
    )
    def list_deliveries(
        container: ContainerDep,
        principal: CurrentPrincipal,
        status: Annotated[str | None, Query(max_length=16)] = None,
        conversion_id: Annotated[str | None, Query(max_length=64)] = None,
        cursor: _Cursor = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> Any:
        page = deliveries.list_deliveries(
            container,
            principal,
            status=status,
            conversion_id=conversion_id,
            cursor=cursor,
            limit=limit,
        )
        return {
            "data": [_delivery_json(item) for item in page.items],
            "next_cursor": page.next_cursor,
        }

    @router.post(
        "/postbacks/deliveries/{delivery_id}/requeue",
        responses=ERROR_RESPONSES,
        tags=["billing"],
        summary="Send a dead delivery again (a fresh series of attempts)",
    )
    def requeue(
        container: ContainerDep, principal: CurrentPrincipal, delivery_id: Annotated[str, _ID]
    ) -> Any:
        return _delivery_json(deliveries.requeue_delivery(container, principal, delivery_id))

    return router
