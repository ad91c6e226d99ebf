"""Invoices and payout statements built from ledger transactions; numbering; CSV rendering.

A statement covers ledger activity with `period_start <= occurred_at < period_end`.
Payout statements of one publisher follow each other without gaps, and each carries in
what the previous one carried forward (a clawback not yet recovered, or a total below the
minimum payout), so every entry is paid exactly once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from perfmark.clock import utc
from perfmark.domain.pricing import BillableEvent
from perfmark.errors import IllegalTransitionError, ValidationError
from perfmark.money import Money

from .ledger import AccountKind, Transaction, TransactionKind

__all__ = [
    "CSV_COLUMNS",
    "LineSection",
    "Statement",
    "StatementKind",
    "StatementLine",
    "build_invoice",
    "build_payout_statement",
    "issue_statement",
    "next_statement_number",
    "parse_statement_number",
    "render_csv",
    "statement_digest",
]


class StatementKind(StrEnum):
    """Who a statement is for."""

    INVOICE = "invoice"  #: to an advertiser: what it was charged
    PAYOUT = "payout"  #: to a publisher: what it earned and is paid


_NUMBER_PREFIX = {StatementKind.INVOICE: "INV", StatementKind.PAYOUT: "PAY"}
_KIND_OF_PREFIX = {prefix: kind for kind, prefix in _NUMBER_PREFIX.items()}
_NUMBER_PATTERN = re.compile(r"^(INV|PAY)-(\d{4})-(\d{6,})$")
_SEQUENCE_DIGITS = 6


class LineSection(StrEnum):
    """The part of a statement a line belongs to."""

    CHARGES = "charges"  #: invoice: billable events charged
    REVERSALS = "reversals"  #: invoice: charges taken back (rejections, refunds)
    EARNINGS = "earnings"  #: payout: earnings that became payable
    REFUNDS = "refunds"  #: payout: payable earnings taken back before they were paid
    CLAWBACKS = "clawbacks"  #: payout: earnings taken back after they were paid
    CARRIED_IN = "carried_in"  #: payout: what the previous statement carried forward


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One line: a section, campaign, goal (or event kind), quantity and signed amount."""

    section: LineSection
    campaign_id: str | None
    goal_id: str | None
    event: BillableEvent | None
    quantity: int
    amount: Money


@dataclass(frozen=True, slots=True)
class Statement:
    """An invoice or payout statement; immutable, and numbered once issued."""

    kind: StatementKind
    party_id: str
    period_start: datetime
    period_end: datetime
    lines: tuple[StatementLine, ...]
    #: Sum of the lines, per currency.
    totals: tuple[Money, ...]
    #: Invoice: the totals. Payout: what is paid now (0 when the total is negative or small).
    amount_due: tuple[Money, ...]
    #: Payout: what the next statement carries in (negative: a clawback still owed).
    carry_forward: tuple[Money, ...] = ()
    #: Invoice: money the advertiser paid in during the period (information, not a line).
    payments: tuple[Money, ...] = ()
    number: str | None = None
    issued_at: datetime | None = None

    @property
    def is_issued(self) -> bool:
        """Whether the statement has a number (and so can no longer change)."""
        return self.number is not None


def _check_period(period_start: datetime, period_end: datetime) -> tuple[datetime, datetime]:
    start, end = utc(period_start), utc(period_end)
    if end <= start:
        raise ValidationError(
            f"period end {end.isoformat()} is not after its start {start.isoformat()}",
            field="period_end",
        )
    return start, end


def _in_period(txn: Transaction, start: datetime, end: datetime) -> bool:
    return start <= txn.occurred_at < end


_LineKey = tuple[LineSection, str | None, str | None, str, str]


def _add(
    groups: dict[_LineKey, tuple[int, int, BillableEvent | None]],
    section: LineSection,
    txn: Transaction,
    currency: str,
    minor: int,
) -> None:
    event_name = txn.event.value if txn.event is not None else ""
    key = (section, txn.campaign_id, txn.goal_id, event_name, currency)
    quantity, amount, _ = groups.get(key, (0, 0, txn.event))
    groups[key] = (quantity + txn.quantity, amount + minor, txn.event)


def _lines(groups: Mapping[_LineKey, tuple[int, int, BillableEvent | None]]) -> list[StatementLine]:
    order = list(LineSection)

    def sort_key(item: tuple[_LineKey, object]) -> tuple[int, str, str, str, str]:
        section, campaign, goal, event_name, currency = item[0]
        return (order.index(section), campaign or "", goal or "", event_name, currency)

    return [
        StatementLine(
            section=key[0],
            campaign_id=key[1],
            goal_id=key[2],
            event=event,
            quantity=quantity,
            amount=Money.from_minor(minor, key[4]),
        )
        for key, (quantity, minor, event) in sorted(groups.items(), key=sort_key)
    ]


def _totals(amounts: Iterable[Money]) -> tuple[Money, ...]:
    sums: dict[str, Money] = {}
    for amount in amounts:
        sums[amount.currency] = sums.get(amount.currency, Money.zero(amount.currency)) + amount
    return tuple(sums[currency] for currency in sorted(sums))


def build_invoice(
    advertiser_id: str,
    transactions: Iterable[Transaction],
    *,
    period_start: datetime,
    period_end: datetime,
) -> Statement:
    """The advertiser's charges and reversals in the period, by campaign and goal, per currency."""
    start, end = _check_period(period_start, period_end)
    groups: dict[_LineKey, tuple[int, int, BillableEvent | None]] = {}
    payments: list[Money] = []
    for txn in transactions:
        if not _in_period(txn, start, end):
            continue
        for entry in txn.entries:
            if entry.account.kind is not AccountKind.ADVERTISER:
                continue
            if entry.account.owner_id != advertiser_id:
                continue
            if txn.kind is TransactionKind.CHARGE:
                _add(groups, LineSection.CHARGES, txn, entry.currency, entry.minor)
            elif txn.kind in (TransactionKind.REVERSAL, TransactionKind.CLAWBACK):
                _add(groups, LineSection.REVERSALS, txn, entry.currency, entry.minor)
            elif txn.kind in (TransactionKind.TOPUP, TransactionKind.CORRECTION):
                payments.append(Money.from_minor(-entry.minor, entry.currency))
    lines = _lines(groups)
    totals = _totals(line.amount for line in lines)
    return Statement(
        kind=StatementKind.INVOICE,
        party_id=advertiser_id,
        period_start=start,
        period_end=end,
        lines=tuple(lines),
        totals=totals,
        amount_due=totals,
        payments=_totals(payments),
    )


_PAYOUT_SECTION = {
    TransactionKind.CHARGE: LineSection.EARNINGS,
    TransactionKind.APPROVAL: LineSection.EARNINGS,
    TransactionKind.REVERSAL: LineSection.REFUNDS,
    TransactionKind.CLAWBACK: LineSection.CLAWBACKS,
}


def build_payout_statement(
    publisher_id: str,
    transactions: Iterable[Transaction],
    *,
    period_start: datetime,
    period_end: datetime,
    previous: Statement | None = None,
    minimum_payout: Mapping[str, Money] | None = None,
) -> Statement:
    """What the publisher earned in the period, minus refunds and clawbacks, plus what was carried.

    Only earnings on the payable account count (held earnings appear once approved). Per
    currency: a negative total is carried forward as a clawback still owed; a total below
    `minimum_payout` is carried forward as credit; anything else is due in full.
    `previous` is this publisher's previous issued payout statement, ending where this starts.
    """
    start, end = _check_period(period_start, period_end)
    carried_in: tuple[Money, ...] = ()
    if previous is not None:
        if previous.kind is not StatementKind.PAYOUT or previous.party_id != publisher_id:
            raise ValidationError(
                "previous must be the same publisher's payout statement", field="previous"
            )
        if not previous.is_issued:
            raise ValidationError("issue the previous statement first", field="previous")
        if previous.period_end != start:
            raise ValidationError(
                f"the previous statement ends at {previous.period_end.isoformat()} but this one "
                f"starts at {start.isoformat()}; statements must follow each other without gaps",
                field="period_start",
            )
        carried_in = tuple(amount for amount in previous.carry_forward if not amount.is_zero())
    groups: dict[_LineKey, tuple[int, int, BillableEvent | None]] = {}
    for txn in transactions:
        section = _PAYOUT_SECTION.get(txn.kind)
        if section is None or not _in_period(txn, start, end):
            continue
        for entry in txn.entries:
            account = entry.account
            if account.kind is AccountKind.PUBLISHER_PAYABLE and account.owner_id == publisher_id:
                _add(groups, section, txn, entry.currency, -entry.minor)
    lines = _lines(groups)
    lines.extend(
        StatementLine(LineSection.CARRIED_IN, None, None, None, 0, amount) for amount in carried_in
    )
    totals = _totals(line.amount for line in lines)
    minimums = minimum_payout or {}
    due: list[Money] = []
    carry: list[Money] = []
    for total in totals:
        minimum = minimums.get(total.currency)
        if total.amount < 0 or (minimum is not None and total < minimum):
            due.append(Money.zero(total.currency))
            carry.append(total)
        else:
            due.append(total)
            carry.append(Money.zero(total.currency))
    return Statement(
        kind=StatementKind.PAYOUT,
        party_id=publisher_id,
        period_start=start,
        period_end=end,
        lines=tuple(lines),
        totals=totals,
        amount_due=tuple(due),
        carry_forward=tuple(carry),
    )


def next_statement_number(kind: StatementKind, year: int, previous_number: str | None) -> str:
    """The number after `previous_number` in the workspace's series: `INV-2026-000123`.

    One gapless series per kind and year, restarting at 1 each year; the store allocates
    numbers under a lock so two statements never share one.
    """
    if not 1 <= year <= 9999:
        raise ValidationError(f"year {year} is out of range", field="year")
    sequence = 1
    if previous_number is not None:
        previous_kind, previous_year, previous_sequence = parse_statement_number(previous_number)
        if previous_kind is not kind:
            raise ValidationError(
                f"{previous_number} is not a {kind.value} number", field="previous_number"
            )
        if previous_year > year:
            raise ValidationError(
                f"{previous_number} is from a later year than {year}", field="previous_number"
            )
        if previous_year == year:
            sequence = previous_sequence + 1
    return f"{_NUMBER_PREFIX[kind]}-{year:04d}-{sequence:0{_SEQUENCE_DIGITS}d}"


def parse_statement_number(number: str) -> tuple[StatementKind, int, int]:
    """Split `INV-2026-000123` into (kind, year, sequence)."""
    match = _NUMBER_PATTERN.match(number)
    if match is None:
        raise ValidationError(
            f"{number!r} is not a statement number such as INV-2026-000123", field="number"
        )
    return _KIND_OF_PREFIX[match.group(1)], int(match.group(2)), int(match.group(3))


def issue_statement(statement: Statement, *, number: str, issued_at: datetime) -> Statement:
    """The statement with its number and issue time; an issued statement cannot be re-issued."""
    if statement.is_issued:
        raise IllegalTransitionError(
            f"statement {statement.number} is already issued and cannot change; "
            "correct it with entries in a later period",
            field="number",
        )
    kind, _, _ = parse_statement_number(number)
    if kind is not statement.kind:
        raise ValidationError(f"{number} is not a {statement.kind.value} number", field="number")
    return replace(statement, number=number, issued_at=utc(issued_at))


CSV_COLUMNS = (
    "number",
    "kind",
    "party_id",
    "period_start",
    "period_end",
    "section",
    "campaign_id",
    "goal_id",
    "event",
    "currency",
    "quantity",
    "amount",
)


def _cell(value: str) -> str:
    # A spreadsheet runs a cell that starts with = + - @ as a formula; ids never do, but
    # a leading quote keeps a crafted id inert.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _money_rows(label: str, amounts: Iterable[Money]) -> list[tuple[str, str, str, str, str]]:
    return [(label, "", "", amount.currency, str(amount.rounded().amount)) for amount in amounts]


def render_csv(statement: Statement) -> str:
    """The statement as CSV: one row per line, then total, amount_due and carry_forward rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    head = (
        statement.number or "draft",
        statement.kind.value,
        _cell(statement.party_id),
        statement.period_start.isoformat(),
        statement.period_end.isoformat(),
    )
    for line in statement.lines:
        writer.writerow(
            (
                *head,
                line.section.value,
                _cell(line.campaign_id or ""),
                _cell(line.goal_id or ""),
                line.event.value if line.event is not None else "",
                line.amount.currency,
                str(line.quantity),
                str(line.amount.rounded().amount),
            )
        )
    rows = _money_rows("total", statement.totals) + _money_rows("amount_due", statement.amount_due)
    if statement.kind is StatementKind.PAYOUT:
        rows += _money_rows("carry_forward", statement.carry_forward)
    else:
        rows += _money_rows("payments", statement.payments)
    for section, campaign, goal, currency, amount in rows:
        writer.writerow((*head, section, campaign, goal, "", currency, "", amount))
    return buffer.getvalue()


def statement_digest(statement: Statement) -> str:
    """SHA-256 of the statement's CSV: store it at issue time to prove it never changed."""
    return hashlib.sha256(render_csv(statement).encode("utf-8")).hexdigest()
