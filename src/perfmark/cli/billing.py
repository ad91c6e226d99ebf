"""`perfmark billing topup|approve|reject|refund|invoices|statements|deliver`."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from perfmark.adapters.wal_writer import WalWriter
from perfmark.billing.api import statement_json
from perfmark.billing.domain.approval import BulkResult, ConversionStatus
from perfmark.billing.domain.statements import StatementKind
from perfmark.billing.services import conversions, funds, statements
from perfmark.billing.services.conversions import EmitEvent
from perfmark.billing.services.statements import IssuedStatement
from perfmark.cli.context import local_container, local_owner
from perfmark.cli.render import console, guarded, print_json, print_table
from perfmark.clock import utc
from perfmark.domain.events import TrackedEvent
from perfmark.errors import ValidationError
from perfmark.money import Money, MoneyError, parse_amount
from perfmark.services.container import Container
from perfmark.settings import wal_directory

__all__ = ["billing_app"]

billing_app = typer.Typer(
    help="Billing: top-ups, approvals, invoices and payout statements.", no_args_is_help=True
)
invoices_app = typer.Typer(help="Issue and list advertiser invoices.", no_args_is_help=True)
statements_app = typer.Typer(help="Issue and list publisher payout statements.",
                             no_args_is_help=True)  # fmt: skip
billing_app.add_typer(invoices_app, name="invoices")
billing_app.add_typer(statements_app, name="statements")

WorkspaceOption = Annotated[
    str | None, typer.Option("--workspace", help="Workspace id (default: the first one).")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
FromOption = Annotated[str, typer.Option("--from", help="Period start, e.g. 2026-01-01 (UTC).")]
ToOption = Annotated[str, typer.Option("--to", help="Period end (exclusive), e.g. 2026-02-01.")]


def _instant(option: str, text: str) -> dt.datetime:
    try:
        return utc(dt.datetime.fromisoformat(text))
    except ValueError:
        raise ValidationError(
            f"--{option} {text!r} is not a date or instant like 2026-01-31 or "
            "2026-01-31T00:00:00+00:00",
            field=option,
        ) from None


@contextmanager
def _lake_emitter(container: Container) -> Iterator[EmitEvent]:
    """Status changes go to the lake through this command's own write-ahead log."""
    wal = WalWriter(wal_directory(container.settings), f"cli{os.getpid()}")

    def emit(event: TrackedEvent) -> None:
        wal.append(event.to_json())

    try:
        yield emit
    finally:
        wal.close()


@billing_app.command("topup")
@guarded
def topup(
    advertiser: Annotated[str, typer.Argument(help="Advertiser id.")],
    amount: Annotated[str, typer.Argument(help='Amount above 0, e.g. "500.00".')],
    reference: Annotated[
        str | None, typer.Option(help="Payment reference; the same one posts once.")
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Credit money an advertiser paid in to its prepaid balance."""
    container = local_container()
    result = funds.top_up(
        container, local_owner(container, workspace), advertiser, amount, reference=reference
    )
    if as_json:
        print_json(
            {
                "txn_id": result.txn_id,
                "reference": result.reference,
                "replayed": result.replayed,
                "balance": str(result.balance.balance.amount),
                "currency": result.balance.balance.currency,
                "released_campaigns": list(result.released_campaigns),
            }
        )
        return
    verb = "Already credited" if result.replayed else "Credited"
    console.print(
        f"{verb} {result.amount} to {advertiser} ({result.reference}); balance is now "
        f"{result.balance.balance}.",
        highlight=False,
    )


def _print_bulk(result: BulkResult, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "changed": list(result.changed),
                "unchanged": list(result.unchanged),
                "refused": [{"id": item, "reason": reason} for item, reason in result.refused],
            }
        )
        return
    rows = [(item, "changed", "") for item in result.changed]
    rows += [(item, "unchanged", "") for item in result.unchanged]
    rows += [(item, "refused", reason) for item, reason in result.refused]
    print_table("Conversions", ("id", "result", "reason"), rows)


def _bulk(ids: list[str], target: ConversionStatus, workspace: str | None, as_json: bool) -> None:
    container = local_container()
    principal = local_owner(container, workspace)
    with _lake_emitter(container) as emit:
        result = conversions.change_statuses(container, principal, ids, target, emit=emit)
    _print_bulk(result, as_json)


@billing_app.command("approve")
@guarded
def approve(
    ids: Annotated[list[str], typer.Argument(help="Conversion ids.")],
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Approve conversions: their held earnings become payable to the publishers."""
    _bulk(ids, ConversionStatus.APPROVED, workspace, as_json)


@billing_app.command("reject")
@guarded
def reject(
    ids: Annotated[list[str], typer.Argument(help="Conversion ids.")],
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Reject conversions: their charges are reversed."""
    _bulk(ids, ConversionStatus.REJECTED, workspace, as_json)


@billing_app.command("accept")
@guarded
def accept(
    ids: Annotated[list[str], typer.Argument(help="Conversion ids.")],
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Accept over_cap conversions into billing where their budget and caps now have room."""
    _bulk(ids, ConversionStatus.PENDING, workspace, as_json)


@billing_app.command("refund")
@guarded
def refund(
    ids: Annotated[list[str], typer.Argument(help="Conversion ids.")],
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Refund conversions (a clawback for earnings already paid out)."""
    _bulk(ids, ConversionStatus.REFUNDED, workspace, as_json)


def _statement_row(issued: IssuedStatement) -> tuple[str, ...]:
    statement = issued.statement
    return (
        issued.id,
        statement.number or "",
        statement.party_id,
        statement.period_start.date().isoformat(),
        statement.period_end.date().isoformat(),
        ", ".join(str(total) for total in statement.totals) or "0",
        ", ".join(str(due) for due in statement.amount_due) or "0",
    )


_STATEMENT_COLUMNS = ("id", "number", "party", "from", "to", "total", "due")


def _print_statement(issued: IssuedStatement, as_json: bool, csv_out: Path | None) -> None:
    if csv_out is not None:
        csv_out.write_text(statements.render_statement_csv(issued), encoding="utf-8")
    if as_json:
        print_json(statement_json(issued))
        return
    print_table(issued.statement.kind.value.capitalize(), _STATEMENT_COLUMNS,
                [_statement_row(issued)])  # fmt: skip


CsvOption = Annotated[Path | None, typer.Option("--csv", help="Also write the CSV here.")]


@invoices_app.command("issue")
@guarded
def issue_invoice(
    advertiser: Annotated[str, typer.Argument(help="Advertiser id.")],
    from_: FromOption,
    to: ToOption,
    csv_out: CsvOption = None,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue an advertiser's invoice for a period that has ended (numbered, immutable)."""
    container = local_container()
    issued = statements.issue_invoice(
        container,
        local_owner(container, workspace),
        advertiser,
        _instant("from", from_),
        _instant("to", to),
    )
    _print_statement(issued, as_json, csv_out)


def _list(kind: StatementKind, party: str | None, workspace: str | None, as_json: bool) -> None:
    container = local_container()
    page = statements.list_statements(
        container, local_owner(container, workspace), kind, party_id=party, limit=200
    )
    if as_json:
        print_json([statement_json(item) for item in page.items])
        return
    title = "Invoices" if kind is StatementKind.INVOICE else "Payout statements"
    print_table(title, _STATEMENT_COLUMNS, [_statement_row(item) for item in page.items])


@invoices_app.command("list")
@guarded
def list_invoices(
    advertiser: Annotated[str | None, typer.Option(help="Only this advertiser.")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List issued invoices (the first 200)."""
    _list(StatementKind.INVOICE, advertiser, workspace, as_json)


@statements_app.command("issue")
@guarded
def issue_statement(
    publisher: Annotated[str, typer.Argument(help="Publisher id.")],
    from_: FromOption,
    to: ToOption,
    minimum_payout: Annotated[
        str | None, typer.Option(help='Carry totals below this forward, e.g. "50.00".')
    ] = None,
    currency: Annotated[str, typer.Option(help="Currency of --minimum-payout.")] = "USD",
    csv_out: CsvOption = None,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue a publisher's payout statement and post the payout of what is due."""
    minimum = None
    if minimum_payout is not None:
        try:
            minimum = Money(parse_amount(minimum_payout, field="minimum_payout"), currency)
        except MoneyError as exc:
            raise ValidationError(str(exc), field="minimum_payout") from None
    container = local_container()
    issued = statements.issue_payout_statement(
        container,
        local_owner(container, workspace),
        publisher,
        _instant("from", from_),
        _instant("to", to),
        minimum_payout=minimum,
    )
    _print_statement(issued, as_json, csv_out)


@statements_app.command("list")
@guarded
def list_statements(
    publisher: Annotated[str | None, typer.Option(help="Only this publisher.")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List issued payout statements (the first 200)."""
    _list(StatementKind.PAYOUT, publisher, workspace, as_json)
