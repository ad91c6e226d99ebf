"""Invoices and payout statements: lines, totals, carried clawbacks, numbering, CSV."""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.billing.domain.ledger import (
    Journal,
    Transaction,
    build_approval,
    build_charge,
    build_payout,
    build_reversal,
    build_topup,
)
from perfmark.billing.domain.statements import (
    CSV_COLUMNS,
    Statement,
    StatementKind,
    build_invoice,
    build_payout_statement,
    issue_statement,
    next_statement_number,
    parse_statement_number,
    render_csv,
    statement_digest,
)
from perfmark.domain.pricing import BillableEvent
from perfmark.errors import IllegalTransitionError, ValidationError
from perfmark.money import Money

JAN = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def conversion(
    ref: str, at: datetime, cost: str = "10.00", payout: str = "7.00", goal: str = "goal_lead"
) -> Transaction:
    return build_charge(
        advertiser_id="adv_1",
        publisher_id="pub_1",
        cost=usd(cost),
        payout=usd(payout),
        event=BillableEvent.CONVERSION,
        reference=ref,
        occurred_at=at,
        campaign_id="cmp_1",
        goal_id=goal,
        on_hold=True,
    )


def clicks(ref: str, at: datetime, count: int) -> Transaction:
    return build_charge(
        advertiser_id="adv_1",
        publisher_id="pub_1",
        cost=usd("0.50") * count,
        payout=usd("0.30") * count,
        event=BillableEvent.CLICK,
        reference=ref,
        occurred_at=at,
        campaign_id="cmp_1",
        quantity=count,
    )


def january() -> tuple[Journal, Transaction, Transaction, Transaction]:
    journal = Journal()
    journal.post(build_topup("adv_1", usd("200.00"), reference="pay_1", occurred_at=JAN))
    first = journal.post(conversion("cnv_1", JAN + timedelta(days=1)))
    second = journal.post(conversion("cnv_2", JAN + timedelta(days=2)))
    third = journal.post(
        conversion("cnv_3", JAN + timedelta(days=3), "50.00", "30.00", "goal_sale")
    )
    journal.post(clicks("clk_batch_1", JAN + timedelta(days=4), 10))
    journal.post(build_approval(first, occurred_at=JAN + timedelta(days=10)))
    journal.post(build_approval(third, occurred_at=JAN + timedelta(days=11)))
    journal.post(
        build_reversal(
            second,
            approved=False,
            publisher_paid=False,
            occurred_at=JAN + timedelta(days=12),
            reason="rejected: duplicate lead",
        )
    )
    return journal, first, second, third


def lines_of(statement: Statement) -> list[tuple[str, str | None, str | None, int, str]]:
    return [
        (line.section.value, line.campaign_id, line.goal_id, line.quantity, str(line.amount))
        for line in statement.lines
    ]


def test_invoice_lines_by_campaign_and_goal_with_reversals_and_payments() -> None:
    journal, *_ = january()
    invoice = build_invoice("adv_1", journal, period_start=JAN, period_end=FEB)
    assert lines_of(invoice) == [
        ("charges", "cmp_1", None, 10, "5.00 USD"),
        ("charges", "cmp_1", "goal_lead", 2, "20.00 USD"),
        ("charges", "cmp_1", "goal_sale", 1, "50.00 USD"),
        ("reversals", "cmp_1", "goal_lead", 1, "-10.00 USD"),
    ]
    assert invoice.totals == (usd("65.00"),) and invoice.amount_due == (usd("65.00"),)
    assert invoice.payments == (usd("200.00"),)
    # The invoice total is what the advertiser's account moved by, minus payments.
    assert journal.prepaid_balance("adv_1", "USD") == usd("135.00")
    assert build_invoice("adv_2", journal, period_start=JAN, period_end=FEB).lines == ()


def test_periods_include_their_start_and_exclude_their_end() -> None:
    journal = Journal()
    journal.post(conversion("a", JAN))
    journal.post(conversion("b", FEB))
    january_invoice = build_invoice("adv_1", journal, period_start=JAN, period_end=FEB)
    february_invoice = build_invoice("adv_1", journal, period_start=FEB, period_end=MAR)
    assert january_invoice.totals == february_invoice.totals == (usd("10.00"),)
    with pytest.raises(ValidationError):
        build_invoice("adv_1", journal, period_start=FEB, period_end=JAN)


def test_payout_statement_counts_payable_earnings_only() -> None:
    journal, *_ = january()
    statement = build_payout_statement("pub_1", journal, period_start=JAN, period_end=FEB)
    # cnv_2 was never approved (rejected on hold): it never appears.
    assert lines_of(statement) == [
        ("earnings", "cmp_1", None, 10, "3.00 USD"),
        ("earnings", "cmp_1", "goal_lead", 1, "7.00 USD"),
        ("earnings", "cmp_1", "goal_sale", 1, "30.00 USD"),
    ]
    assert statement.amount_due == (usd("40.00"),)
    assert statement.carry_forward == (usd("0.00"),)
    assert journal.payable_balance("pub_1", "USD") == usd("40.00")


def test_a_refund_after_payout_is_clawed_back_on_the_next_statements() -> None:
    journal, _, _, third = january()
    jan = issue_statement(
        build_payout_statement("pub_1", journal, period_start=JAN, period_end=FEB),
        number="PAY-2026-000001",
        issued_at=FEB + timedelta(days=1),
    )
    journal.post(
        build_payout("pub_1", jan.amount_due[0], reference=jan.number or "", occurred_at=FEB)
    )
    assert journal.payable_balance("pub_1", "USD").is_zero()
    # February: the 30.00 sale is refunded after it was paid, and one small lead comes in.
    journal.post(
        build_reversal(
            third,
            approved=True,
            publisher_paid=True,
            occurred_at=FEB + timedelta(days=3),
            reason="refund",
        )
    )
    small = journal.post(conversion("cnv_4", FEB + timedelta(days=4), "20.00", "12.00"))
    journal.post(build_approval(small, occurred_at=FEB + timedelta(days=5)))
    feb = issue_statement(
        build_payout_statement("pub_1", journal, period_start=FEB, period_end=MAR, previous=jan),
        number=next_statement_number(StatementKind.PAYOUT, 2026, jan.number),
        issued_at=MAR,
    )
    assert feb.number == "PAY-2026-000002"
    assert lines_of(feb) == [
        ("earnings", "cmp_1", "goal_lead", 1, "12.00 USD"),
        ("clawbacks", "cmp_1", "goal_sale", 1, "-30.00 USD"),
    ]
    assert feb.amount_due == (usd("0"),) and feb.carry_forward == (usd("-18.00"),)
    # The ledger agrees: the publisher owes 18.00.
    assert journal.payable_balance("pub_1", "USD") == usd("-18.00")
    # March: 25.00 earned; the 18.00 clawback is carried in and deducted.
    later = journal.post(conversion("cnv_5", MAR + timedelta(days=1), "40.00", "25.00"))
    journal.post(build_approval(later, occurred_at=MAR + timedelta(days=2)))
    apr = datetime(2026, 4, 1, tzinfo=UTC)
    mar = build_payout_statement("pub_1", journal, period_start=MAR, period_end=apr, previous=feb)
    assert lines_of(mar)[-1] == ("carried_in", None, None, 0, "-18.00 USD")
    assert mar.amount_due == (usd("7.00"),)
    journal.post(build_payout("pub_1", usd("7.00"), reference="PAY-2026-000003", occurred_at=apr))
    assert journal.payable_balance("pub_1", "USD").is_zero()


def test_minimum_payout_carries_small_totals_forward() -> None:
    journal, *_ = january()
    statement = build_payout_statement(
        "pub_1", journal, period_start=JAN, period_end=FEB, minimum_payout={"USD": usd("50")}
    )
    assert statement.amount_due == (usd("0"),) and statement.carry_forward == (usd("40.00"),)


def test_payout_statements_must_follow_the_previous_one() -> None:
    journal, *_ = january()
    draft = build_payout_statement("pub_1", journal, period_start=JAN, period_end=FEB)
    with pytest.raises(ValidationError):  # not issued yet
        build_payout_statement("pub_1", journal, period_start=FEB, period_end=MAR, previous=draft)
    issued = issue_statement(draft, number="PAY-2026-000001", issued_at=FEB)
    with pytest.raises(ValidationError) as gap:
        build_payout_statement(
            "pub_1", journal, period_start=FEB + timedelta(days=1), period_end=MAR, previous=issued
        )
    assert "without gaps" in gap.value.message
    with pytest.raises(ValidationError):
        build_payout_statement("pub_2", journal, period_start=FEB, period_end=MAR, previous=issued)


def test_issued_statements_are_immutable() -> None:
    journal, *_ = january()
    draft = build_invoice("adv_1", journal, period_start=JAN, period_end=FEB)
    issued = issue_statement(draft, number="INV-2026-000007", issued_at=FEB)
    assert issued.is_issued and not draft.is_issued and issued.issued_at == FEB
    with pytest.raises(IllegalTransitionError):
        issue_statement(issued, number="INV-2026-000008", issued_at=FEB)
    with pytest.raises(dataclasses.FrozenInstanceError):
        issued.number = "INV-2026-000009"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        issue_statement(draft, number="PAY-2026-000001", issued_at=FEB)
    assert statement_digest(issued) == statement_digest(
        issue_statement(draft, number="INV-2026-000007", issued_at=FEB)
    )
    assert statement_digest(issued) != statement_digest(draft)


def test_numbering_is_sequential_per_kind_and_year() -> None:
    assert next_statement_number(StatementKind.INVOICE, 2026, None) == "INV-2026-000001"
    assert (
        next_statement_number(StatementKind.INVOICE, 2026, "INV-2026-000123") == "INV-2026-000124"
    )
    assert (
        next_statement_number(StatementKind.INVOICE, 2027, "INV-2026-000123") == "INV-2027-000001"
    )
    assert (
        next_statement_number(StatementKind.PAYOUT, 2026, "PAY-2026-999999") == "PAY-2026-1000000"
    )
    assert parse_statement_number("PAY-2026-1000000") == (StatementKind.PAYOUT, 2026, 1_000_000)
    for bad in ("INV-26-000001", "inv-2026-000001", "INV-2026-12", "BILL-2026-000001"):
        with pytest.raises(ValidationError):
            parse_statement_number(bad)
    with pytest.raises(ValidationError):
        next_statement_number(StatementKind.INVOICE, 2026, "PAY-2026-000001")
    with pytest.raises(ValidationError):
        next_statement_number(StatementKind.INVOICE, 2025, "INV-2026-000001")


def test_csv_has_one_row_per_line_and_the_totals() -> None:
    journal, *_ = january()
    invoice = issue_statement(
        build_invoice("adv_1", journal, period_start=JAN, period_end=FEB),
        number="INV-2026-000001",
        issued_at=FEB,
    )
    rows = list(csv.DictReader(io.StringIO(render_csv(invoice))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["section"], r["goal_id"], r["quantity"], r["amount"]) for r in rows] == [
        ("charges", "", "10", "5.00"),
        ("charges", "goal_lead", "2", "20.00"),
        ("charges", "goal_sale", "1", "50.00"),
        ("reversals", "goal_lead", "1", "-10.00"),
        ("total", "", "", "65.00"),
        ("amount_due", "", "", "65.00"),
        ("payments", "", "", "200.00"),
    ]
    assert {r["number"] for r in rows} == {"INV-2026-000001"}
    assert rows[0]["event"] == "click" and rows[1]["event"] == "conversion"


def test_csv_cells_cannot_become_spreadsheet_formulas() -> None:
    journal = Journal()
    journal.post(
        build_charge(
            advertiser_id="adv_1",
            publisher_id="pub_1",
            cost=usd("1"),
            payout=usd("0"),
            event=BillableEvent.CLICK,
            reference="clk",
            occurred_at=JAN,
            campaign_id="=HYPERLINK(1)",
        )
    )
    text = render_csv(build_invoice("adv_1", journal, period_start=JAN, period_end=FEB))
    assert "'=HYPERLINK(1)" in text


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=89),  # day of the quarter it converts
            st.integers(min_value=1, max_value=5000),  # payout in cents
            st.sampled_from(["keep", "reject", "refund"]),
            st.integers(min_value=0, max_value=40),  # days until approval or rejection
            st.integers(min_value=0, max_value=60),  # days from approval to refund
        ),
        max_size=25,
    ),
    minimum=st.sampled_from([None, "20.00", "100.00"]),
)
def test_every_payable_cent_is_paid_exactly_once_across_statements(
    events: list[tuple[int, int, str, int, int]], minimum: str | None
) -> None:
    timeline: list[tuple[datetime, int, str, Transaction]] = []
    for index, (day, cents, fate, delay, refund_delay) in enumerate(events):
        at = JAN + timedelta(days=day, minutes=index)
        txn = conversion(f"cnv_{index}", at, f"{cents * 2 / 100:.2f}", f"{cents / 100:.2f}")
        decided = at + timedelta(days=delay, seconds=1)
        timeline.append((at, index, "charge", txn))
        timeline.append((decided, index, "reject" if fate == "reject" else "approve", txn))
        if fate == "refund":
            timeline.append(
                (decided + timedelta(days=refund_delay, seconds=1), index, "refund", txn)
            )
    timeline.sort(key=lambda item: (item[0], item[1]))
    months = [datetime(2026, month, 1, tzinfo=UTC) for month in range(1, 7)]
    journal = Journal()
    previous: Statement | None = None
    approved_at: dict[str, datetime] = {}
    for number, (start, end) in enumerate(itertools.pairwise(months), start=1):
        for at, _, what, txn in timeline:
            if not start <= at < end:
                continue
            if what == "charge":
                journal.post(txn)
            elif what == "approve":
                journal.post(build_approval(txn, occurred_at=at))
                approved_at[txn.txn_id] = at
            else:
                approved = txn.txn_id in approved_at
                paid = approved and approved_at[txn.txn_id] < start  # on a paid statement
                journal.post(
                    build_reversal(
                        txn, approved=approved, publisher_paid=paid, occurred_at=at, reason=what
                    )
                )
        statement = issue_statement(
            build_payout_statement(
                "pub_1",
                journal,
                period_start=start,
                period_end=end,
                previous=previous,
                minimum_payout={"USD": usd(minimum)} if minimum else None,
            ),
            number=f"PAY-2026-{number:06d}",
            issued_at=end,
        )
        for due in statement.amount_due:
            assert due.amount >= 0
            if not due.is_zero():
                journal.post(
                    build_payout("pub_1", due, reference=statement.number or "", occurred_at=end)
                )
        # After each payout, what the ledger still owes is exactly what is carried forward.
        carried = statement.carry_forward[0] if statement.carry_forward else usd("0")
        assert journal.payable_balance("pub_1", "USD") == carried
        previous = statement
