"""End to end: demo campaigns, traffic, approvals, a payout, a refund after it; the invoices and
payout statements add up to what the reports say was charged and earned."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from perfmark.billing.domain.approval import ConversionStatus
from perfmark.billing.domain.ledger import publisher_payable_account
from perfmark.billing.services import conversions, statements
from perfmark.domain.events import TrackedEvent
from perfmark.money import Money
from perfmark.reports.domain.request import parse_report_request
from perfmark.reports.service import run_report

from .helpers import CPA, CPC, CPM, REVSHARE, Rig


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, tzinfo=UTC)


def totals(issued: statements.IssuedStatement) -> Decimal:
    [total] = issued.statement.totals or (Money.zero("USD"),)
    return total.amount


def test_invoices_and_statements_match_the_reports_after_a_refund_after_payout(
    rig: Rig,
) -> None:
    rig.update_campaign(CPA, hold_days=5)
    rig.clock.current = at(5, 10)

    def emit(event: TrackedEvent) -> None:
        rig.wal.append(event.to_json())

    rig.clicks(CPC, 10)  # 10 x 0.80 charged, 10 x 0.60 earned
    rig.impressions(CPM, 500)  # 500 x 6.00 / 1000 = 3.00 charged, 2.25 earned
    for index in range(4):  # 4 x 25.00 charged, 18.00 each held for 5 days
        rig.convert(CPA, value="40", txid=f"S-{index}")
    rig.convert(REVSHARE, value="50", txid="R-1")  # 12% = 6.00 charged, 8% = 4.00 earned
    rig.process()
    ids = [row["id"] for row in rig.conversions() if row["txid"].startswith("S-")]

    rig.clock.current = at(6, 9)
    approved = conversions.change_statuses(
        rig.container, rig.owner, ids[:3], ConversionStatus.APPROVED, emit=emit
    )
    rejected = conversions.change_statuses(
        rig.container, rig.owner, ids[3:], ConversionStatus.REJECTED, emit=emit
    )
    assert (len(approved.changed), len(rejected.changed)) == (3, 1)
    rig.process()

    # The CPA publisher is paid for the three approved sales: 54.00.
    rig.clock.current = at(8, 1)
    cpa_publisher = rig.publisher_id(CPA)
    first = statements.issue_payout_statement(rig.container, rig.owner, cpa_publisher, at(1), at(8))
    assert first.statement.amount_due == (Money.of("54.00", "USD"),)

    # One paid sale is refunded: a clawback, carried into the next statement.
    rig.clock.current = at(9, 12)
    refunded = conversions.refund_conversion(rig.container, rig.owner, ids[0], emit=emit)
    assert refunded.status == "refunded"
    rig.process()
    kinds = [item.txn.kind.value for item in rig.transactions() if item.conversion_id == ids[0]]
    assert kinds == ["charge", "approval", "clawback"]

    rig.clock.current = at(12)
    second = statements.issue_payout_statement(
        rig.container, rig.owner, cpa_publisher, at(8), at(12)
    )
    assert second.statement.amount_due == (Money.zero("USD"),)
    assert second.statement.carry_forward == (Money.of("-18.00", "USD"),)
    assert rig.balance(publisher_payable_account(cpa_publisher).key) == 1800  # owed to us
    others = [
        statements.issue_payout_statement(
            rig.container, rig.owner, rig.publisher_id(index), at(1), at(12)
        )
        for index in (CPC, CPM, REVSHARE)
    ]
    invoice = statements.issue_invoice(
        rig.container, rig.owner, rig.advertiser_id(CPA), at(1), at(12)
    )

    # By hand: charged 8.00 + 3.00 + 100.00 + 6.00, reversed 25.00 (rejected) + 25.00 (refund).
    assert totals(invoice) == Decimal("67.00")
    # Earned: 6.00 + 2.25 + 4.00 + 3 x 18.00 approved, minus the 18.00 clawed back.
    earned = totals(first) + totals(second) + sum(totals(item) for item in others)
    assert earned == Decimal("48.25")

    request = parse_report_request(
        rig.workspace_id, start="2026-01-01", end="2026-01-11", metrics="cost,payout"
    )
    report = run_report(rig.container, request)
    assert Decimal(str(report.totals["cost"])) == totals(invoice)
    assert Decimal(str(report.totals["payout"])) == earned
    by_publisher = run_report(
        rig.container,
        parse_report_request(rig.workspace_id, start="2026-01-01", end="2026-01-11",
                             metrics="payout", filters={"publisher": cpa_publisher}),
    )  # fmt: skip
    assert Decimal(str(by_publisher.totals["payout"])) == totals(first) + totals(second)
