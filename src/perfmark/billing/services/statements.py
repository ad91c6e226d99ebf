"""Issue invoices and payout statements from the stored ledger; list, fetch, render CSV/HTML.

An issued statement is numbered from a gapless series per workspace, kind and year, stored
with the SHA-256 of its CSV, and never changed (the store refuses updates). Issuing a payout
statement also posts the payout of what is due, in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import Connection, func, select

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.kinds import ADVERTISERS, PUBLISHERS
from perfmark.adapters.store.resources import ResourceKind, ResourceStore
from perfmark.adapters.store.schema import billing_statements, ledger_transactions
from perfmark.billing import store
from perfmark.billing.domain.ledger import build_payout
from perfmark.billing.domain.statements import (
    LineSection,
    Statement,
    StatementKind,
    StatementLine,
    build_invoice,
    build_payout_statement,
    issue_statement,
    next_statement_number,
    render_csv,
    statement_digest,
)
from perfmark.billing.services.access import require_write, scope_of
from perfmark.clock import utc
from perfmark.domain.pricing import BillableEvent
from perfmark.domain.records import Page
from perfmark.errors import ConflictError, NotFoundError, ValidationError
from perfmark.ids import new_id
from perfmark.money import Money
from perfmark.services.container import Container, Principal

__all__ = [
    "IssuedStatement",
    "get_statement",
    "issue_invoice",
    "issue_payout_statement",
    "list_statements",
    "render_html",
    "render_statement_csv",
    "statement_body",
    "statement_from_body",
]

_ID_PREFIX = {StatementKind.INVOICE: "inv", StatementKind.PAYOUT: "stm"}


@dataclass(frozen=True)
class IssuedStatement:
    """A stored statement: its id, the domain statement, the payouts posted for it."""

    id: str
    statement: Statement
    digest: str
    payout_txn_ids: tuple[str, ...] = ()

    @property
    def intact(self) -> bool:
        """Whether the stored statement still renders to the CSV whose digest was stored."""
        return statement_digest(self.statement) == self.digest


def _money_json(amount: Money) -> dict[str, str]:
    return {"amount": str(amount.amount), "currency": amount.currency}


def _money_of(data: dict[str, str]) -> Money:
    return Money(Decimal(data["amount"]), data["currency"])


def statement_body(statement: Statement, payout_txn_ids: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON a statement is stored as (exact decimal strings, never floats)."""
    return {
        "lines": [
            {
                "section": line.section.value,
                "campaign_id": line.campaign_id,
                "goal_id": line.goal_id,
                "event": line.event.value if line.event else None,
                "quantity": line.quantity,
                **_money_json(line.amount),
            }
            for line in statement.lines
        ],
        "totals": [_money_json(item) for item in statement.totals],
        "amount_due": [_money_json(item) for item in statement.amount_due],
        "carry_forward": [_money_json(item) for item in statement.carry_forward],
        "payments": [_money_json(item) for item in statement.payments],
        "payout_txn_ids": list(payout_txn_ids),
    }


def statement_from_body(row: dict[str, Any]) -> IssuedStatement:
    """Rebuild an issued statement from its stored row."""
    body = row["body"]
    lines = tuple(
        StatementLine(
            section=LineSection(line["section"]),
            campaign_id=line["campaign_id"],
            goal_id=line["goal_id"],
            event=BillableEvent(line["event"]) if line["event"] else None,
            quantity=int(line["quantity"]),
            amount=_money_of(line),
        )
        for line in body["lines"]
    )
    statement = Statement(
        kind=StatementKind(row["kind"]),
        party_id=row["party_id"],
        period_start=utc(row["period_start"]),
        period_end=utc(row["period_end"]),
        lines=lines,
        totals=tuple(_money_of(item) for item in body["totals"]),
        amount_due=tuple(_money_of(item) for item in body["amount_due"]),
        carry_forward=tuple(_money_of(item) for item in body["carry_forward"]),
        payments=tuple(_money_of(item) for item in body["payments"]),
        number=row["number"],
        issued_at=utc(row["issued_at"]),
    )
    return IssuedStatement(
        row["id"], statement, row["digest"], tuple(body.get("payout_txn_ids", ()))
    )


def _check_period(start: datetime, end: datetime, now: datetime) -> tuple[datetime, datetime]:
    start, end = utc(start), utc(end)
    if end <= start:
        raise ValidationError(
            f"period_end {end.isoformat()} is not after period_start {start.isoformat()}",
            field="period_end",
        )
    if end > now:
        raise ValidationError(
            f"period_end {end.isoformat()} is in the future; a statement is issued for a "
            "period that has ended, so that nothing is posted into it afterwards",
            field="period_end",
        )
    return start, end


def _party(conn: Connection, kind: ResourceKind[Any], workspace_id: str, party_id: str) -> None:
    if ResourceStore(kind).get(conn, workspace_id, party_id) is None:
        raise NotFoundError(
            f"no {kind.singular} with id {party_id!r} in this workspace; list them at "
            f"/api/{kind.name}",
            field=f"{kind.singular}_id",
        )


def _rows(
    conn: Connection, workspace_id: str, kind: StatementKind, party_id: str
) -> list[dict[str, Any]]:
    table = billing_statements
    query = (
        select(table)
        .where(
            table.c.workspace_id == workspace_id,
            table.c.kind == kind.value,
            table.c.party_id == party_id,
        )
        .order_by(table.c.period_start)
    )
    return [dict(row) for row in conn.execute(query).mappings()]


def _issue(
    conn: Connection,
    workspace_id: str,
    statement: Statement,
    now: datetime,
    payout_txn_ids: tuple[str, ...] = (),
    statement_id: str | None = None,
) -> IssuedStatement:
    year = now.year
    sequence = store.allocate_statement_number(conn, workspace_id, statement.kind.value, year)
    previous = None
    if sequence > 1:
        prefix = "INV" if statement.kind is StatementKind.INVOICE else "PAY"
        previous = f"{prefix}-{year:04d}-{sequence - 1:06d}"
    number = next_statement_number(statement.kind, year, previous)
    issued = issue_statement(statement, number=number, issued_at=now)
    statement_id = statement_id or new_id(_ID_PREFIX[statement.kind])
    digest = statement_digest(issued)
    store.insert_statement(
        conn,
        {
            "id": statement_id,
            "workspace_id": workspace_id,
            "kind": issued.kind.value,
            "party_id": issued.party_id,
            "number": number,
            "period_start": issued.period_start,
            "period_end": issued.period_end,
            "issued_at": now,
            "body": statement_body(issued, payout_txn_ids),
            "digest": digest,
        },
    )
    return IssuedStatement(statement_id, issued, digest, payout_txn_ids)


def issue_invoice(
    container: Container,
    principal: Principal,
    advertiser_id: str,
    period_start: datetime,
    period_end: datetime,
) -> IssuedStatement:
    """Invoice an advertiser for a period that has ended; periods of one advertiser never overlap."""
    require_write(principal, "issue invoices")
    now = container.clock.now()
    start, end = _check_period(period_start, period_end, now)
    with transaction(container.engine) as conn:
        _party(conn, ADVERTISERS, principal.workspace_id, advertiser_id)
        for row in _rows(conn, principal.workspace_id, StatementKind.INVOICE, advertiser_id):
            if utc(row["period_start"]) < end and utc(row["period_end"]) > start:
                raise ConflictError(
                    f"invoice {row['number']} already covers part of this period "
                    f"({utc(row['period_start']).isoformat()} to "
                    f"{utc(row['period_end']).isoformat()}); invoice another period",
                    field="period_start",
                )
        transactions = [
            item.txn
            for item in store.select_transactions(
                conn, principal.workspace_id, advertiser_id=advertiser_id, since=start, until=end
            )
        ]
        invoice = build_invoice(advertiser_id, transactions, period_start=start, period_end=end)
        return _issue(conn, principal.workspace_id, invoice, now)


def _first_activity(conn: Connection, workspace_id: str, publisher_id: str) -> datetime | None:
    first = conn.execute(
        select(func.min(ledger_transactions.c.occurred_at)).where(
            ledger_transactions.c.workspace_id == workspace_id,
            ledger_transactions.c.publisher_id == publisher_id,
        )
    ).scalar_one_or_none()
    return None if first is None else utc(first)


def issue_payout_statement(
    container: Container,
    principal: Principal,
    publisher_id: str,
    period_start: datetime,
    period_end: datetime,
    *,
    minimum_payout: Money | None = None,
) -> IssuedStatement:
    """Issue a publisher's payout statement and post the payout of what is due.

    Statements of a publisher follow each other without gaps; the first must start at or
    before the publisher's first ledger activity, so that every earning is paid once.
    """
    require_write(principal, "issue payout statements")
    now = container.clock.now()
    start, end = _check_period(period_start, period_end, now)
    with transaction(container.engine) as conn:
        _party(conn, PUBLISHERS, principal.workspace_id, publisher_id)
        earlier = _rows(conn, principal.workspace_id, StatementKind.PAYOUT, publisher_id)
        previous = statement_from_body(earlier[-1]).statement if earlier else None
        if previous is None:
            first = _first_activity(conn, principal.workspace_id, publisher_id)
            if first is not None and first < start:
                raise ValidationError(
                    f"publisher {publisher_id} has ledger activity from {first.isoformat()}; "
                    "start its first payout statement at or before that",
                    field="period_start",
                )
        transactions = [
            item.txn
            for item in store.select_transactions(
                conn, principal.workspace_id, publisher_id=publisher_id, since=start, until=end
            )
        ]
        minimums = {minimum_payout.currency: minimum_payout} if minimum_payout else None
        statement = build_payout_statement(
            publisher_id,
            transactions,
            period_start=start,
            period_end=end,
            previous=previous,
            minimum_payout=minimums,
        )
        statement_id = new_id("stm")
        payouts = []
        for amount in statement.amount_due:
            if amount.amount > 0:
                payout = build_payout(
                    publisher_id,
                    amount,
                    reference=f"{statement_id}:{amount.currency}",
                    occurred_at=now,
                    txn_id=store.next_txn_id(now),
                )
                meta = store.PostingMeta(principal.workspace_id, publisher_id=publisher_id)
                store.post_transaction(conn, payout, meta)
                payouts.append(payout.txn_id)
        return _issue(conn, principal.workspace_id, statement, now, tuple(payouts), statement_id)


def list_statements(
    container: Container,
    principal: Principal,
    kind: StatementKind,
    *,
    party_id: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[IssuedStatement]:
    """A page of issued statements of one kind (portal keys: their own), in id order."""
    scope = scope_of(principal)
    own = scope.advertiser_id if kind is StatementKind.INVOICE else scope.publisher_id
    if (scope.advertiser_id or scope.publisher_id) and own is None:
        return Page((), None)
    table = billing_statements
    query = select(table).where(
        table.c.workspace_id == principal.workspace_id, table.c.kind == kind.value
    )
    if own is not None:
        query = query.where(table.c.party_id == own)
    if party_id is not None:
        query = query.where(table.c.party_id == party_id)
    if cursor:
        query = query.where(table.c.id > cursor)
    with transaction(container.engine) as conn:
        rows = conn.execute(query.order_by(table.c.id).limit(limit + 1)).mappings().all()
    items = tuple(statement_from_body(dict(row)) for row in rows[:limit])
    return Page(items, items[-1].id if len(rows) > limit and items else None)


def get_statement(
    container: Container, principal: Principal, kind: StatementKind, statement_id: str
) -> IssuedStatement:
    """One issued statement; 404 when it is not this kind, workspace or portal party's."""
    scope = scope_of(principal)
    with transaction(container.engine) as conn:
        row = (
            conn.execute(
                select(billing_statements).where(
                    billing_statements.c.workspace_id == principal.workspace_id,
                    billing_statements.c.id == statement_id,
                    billing_statements.c.kind == kind.value,
                )
            )
            .mappings()
            .first()
        )
    issued = None if row is None else statement_from_body(dict(row))
    if issued is not None:
        party = issued.statement.party_id
        # An advertiser key reads its own invoices only, a publisher key its own statements.
        if (kind is StatementKind.INVOICE and not scope.allows(party, None)) or (
            kind is StatementKind.PAYOUT and not scope.allows(None, party)
        ):
            issued = None
    if issued is None:
        what = "invoice" if kind is StatementKind.INVOICE else "payout statement"
        raise NotFoundError(f"no {what} with id {statement_id!r} in this workspace")
    return issued


@lru_cache(maxsize=1)
def _templates() -> Environment:
    # Built on first use, not at import; autoescape so a crafted id cannot inject markup.
    return Environment(
        loader=PackageLoader("perfmark.billing", "templates"),
        autoescape=select_autoescape(["html"]),
    )


def render_html(issued: IssuedStatement) -> str:
    """A printable HTML page of the statement."""
    statement = issued.statement
    return (
        _templates()
        .get_template("statement.html")
        .render(
            statement=statement,
            title="Invoice" if statement.kind is StatementKind.INVOICE else "Payout statement",
            rows=[
                {
                    "section": line.section.value.replace("_", " "),
                    "campaign_id": line.campaign_id or "",
                    "goal": line.goal_id or (line.event.value if line.event else ""),
                    "quantity": line.quantity or "",
                    "amount": line.amount.rounded().amount,
                    "currency": line.amount.currency,
                }
                for line in statement.lines
            ],
            intact=issued.intact,
        )
    )


def render_statement_csv(issued: IssuedStatement) -> str:
    """The statement's CSV (the bytes its digest was taken of)."""
    return render_csv(issued.statement)
