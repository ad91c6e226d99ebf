"""The billing core end to end, with no store: price, check limits, post, approve, refund, bill."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from perfmark.billing.domain.approval import (
    AutoApprovalPolicy,
    AutoOutcome,
    ConversionStatus,
    LedgerAction,
    auto_decision,
    ledger_action,
)
from perfmark.billing.domain.budgets import (
    Budget,
    CampaignLimits,
    Cap,
    CapMetric,
    CapScope,
    CounterKey,
    Funds,
    LimitPeriod,
    Spend,
    Verdict,
    check_spend,
)
from perfmark.billing.domain.ledger import (
    REVENUE_ACCOUNT,
    Journal,
    Transaction,
    build_approval,
    build_charge,
    build_payout,
    build_reversal,
    build_topup,
)
from perfmark.billing.domain.postbacks import (
    PostbackValues,
    render_postback_url,
    validate_postback_template,
)
from perfmark.billing.domain.pricing import quote_event
from perfmark.billing.domain.statements import (
    StatementKind,
    build_invoice,
    build_payout_statement,
    issue_statement,
    next_statement_number,
)
from perfmark.domain.pricing import BillableEvent, Price, PricingModel, PricingRule
from perfmark.money import Money

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)
RULES = [
    PricingRule(
        pays=Price(PricingModel.CPC, Decimal("0.40")),
        earns=Price(PricingModel.CPC, Decimal("0.25")),
    ),
    PricingRule(
        pays=Price(PricingModel.CPL, Decimal("12.00")),
        earns=Price(PricingModel.CPL, Decimal("8.00")),
        goal_id="goal_lead",
    ),
]
LIMITS = CampaignLimits(
    "cmp_demo",
    "USD",
    "America/New_York",
    budgets=(Budget(LimitPeriod.TOTAL, Money.of("60.00", "USD")),),
    caps=(Cap("leads_per_day", CapScope.PUBLISHER, LimitPeriod.DAY, CapMetric.COUNT, Decimal(2)),),
)
POLICY = AutoApprovalPolicy(hold_days=7)


def test_demo_campaign_from_clicks_to_statements() -> None:
    journal = Journal()
    counters: dict[CounterKey, Decimal] = {}
    journal.post(
        build_topup("adv_demo", Money.of("50.00", "USD"), reference="pay_1", occurred_at=START)
    )

    def spend(
        at: datetime, event: BillableEvent, cost: Money, count: int = 1, goal: str | None = None
    ) -> Verdict:
        funds = Funds(journal.prepaid_balance("adv_demo", "USD"), Money.of("20.00", "USD"))
        decision = check_spend(
            LIMITS,
            counters,
            Spend(at, event, cost.rounded(), "pub_demo", goal, count),
            funds=funds,
        )
        for key, amount in decision.increments:
            counters[key] = counters.get(key, Decimal(0)) + amount
        return decision.verdict

    # 20 clicks, billed as one batch.
    click_quote = quote_event(
        RULES, event=BillableEvent.CLICK, currency="USD", at=START, quantity=20
    )
    assert spend(START, BillableEvent.CLICK, click_quote.cost, 20) is Verdict.ALLOWED
    journal.post(
        build_charge(
            advertiser_id="adv_demo",
            publisher_id="pub_demo",
            cost=click_quote.cost,
            payout=click_quote.payout,
            event=BillableEvent.CLICK,
            reference="clkbatch_1",
            occurred_at=START,
            campaign_id="cmp_demo",
            quantity=20,
        )
    )
    # Three leads on one local day: the third is over the per-publisher daily cap.
    statuses: dict[str, ConversionStatus] = {}
    charges: dict[str, Transaction] = {}
    for index in range(3):
        at = START + timedelta(hours=index)
        quote = quote_event(
            RULES,
            event=BillableEvent.CONVERSION,
            goal_id="goal_lead",
            publisher_id="pub_demo",
            currency="USD",
            at=at,
            volume_this_month=index + 1,
        )
        verdict = spend(at, BillableEvent.CONVERSION, quote.cost, goal="goal_lead")
        conversion_id = f"cnv_{index}"
        if verdict is not Verdict.ALLOWED:
            assert verdict is Verdict.OVER_CAP
            statuses[conversion_id] = ConversionStatus.OVER_CAP
            continue
        statuses[conversion_id] = ConversionStatus.PENDING
        charges[conversion_id] = journal.post(
            build_charge(
                advertiser_id="adv_demo",
                publisher_id="pub_demo",
                cost=quote.cost,
                payout=quote.payout,
                event=BillableEvent.CONVERSION,
                reference=conversion_id,
                occurred_at=at,
                campaign_id="cmp_demo",
                goal_id="goal_lead",
                on_hold=True,
            )
        )
    assert statuses == {
        "cnv_0": ConversionStatus.PENDING,
        "cnv_1": ConversionStatus.PENDING,
        "cnv_2": ConversionStatus.OVER_CAP,
    }
    # Spent so far: 8.00 of clicks + 24.00 of leads out of 50.00 prepaid.
    assert journal.prepaid_balance("adv_demo", "USD") == Money.of("18.00", "USD")

    # After the hold, auto-approval approves both leads.
    later = START + timedelta(days=8)
    for conversion_id, charge in charges.items():
        decision = auto_decision(
            statuses[conversion_id],
            converted_at=charge.occurred_at,
            value=None,
            now=later,
            policy=POLICY,
        )
        assert decision.outcome is AutoOutcome.APPROVE
        assert (
            ledger_action(statuses[conversion_id], ConversionStatus.APPROVED)
            is LedgerAction.APPROVE
        )
        journal.post(build_approval(charge, occurred_at=later))
        statuses[conversion_id] = ConversionStatus.APPROVED

    # January's payout statement is issued and paid.
    january = issue_statement(
        build_payout_statement(
            "pub_demo", journal, period_start=datetime(2026, 1, 1, tzinfo=UTC), period_end=FEB
        ),
        number=next_statement_number(StatementKind.PAYOUT, 2026, None),
        issued_at=FEB,
    )
    assert january.amount_due == (Money.of("21.00", "USD"),)  # 20 * 0.25 + 2 * 8.00
    journal.post(
        build_payout(
            "pub_demo", january.amount_due[0], reference="PAY-2026-000001", occurred_at=FEB
        )
    )

    # In February the advertiser refunds lead 0: a clawback, since the publisher was paid.
    refund_at = FEB + timedelta(days=3)
    assert ledger_action(statuses["cnv_0"], ConversionStatus.REFUNDED) is LedgerAction.REVERSE
    journal.post(
        build_reversal(
            charges["cnv_0"],
            approved=True,
            publisher_paid=True,
            occurred_at=refund_at,
            reason="refund",
        )
    )
    february = build_payout_statement(
        "pub_demo", journal, period_start=FEB, period_end=MAR, previous=january
    )
    assert february.amount_due == (Money.of("0", "USD"),)
    assert february.carry_forward == (Money.of("-8.00", "USD"),)

    # Invoices match the ledger: January charges, February the refund.
    jan_invoice = build_invoice(
        "adv_demo", journal, period_start=datetime(2026, 1, 1, tzinfo=UTC), period_end=FEB
    )
    feb_invoice = build_invoice("adv_demo", journal, period_start=FEB, period_end=MAR)
    assert jan_invoice.amount_due == (Money.of("32.00", "USD"),)
    assert feb_invoice.amount_due == (Money.of("-12.00", "USD"),)
    assert journal.prepaid_balance("adv_demo", "USD") == Money.of("30.00", "USD")
    # Platform revenue = what advertisers paid minus what publishers earned, net of the refund.
    assert -journal.balance(REVENUE_ACCOUNT, "USD") == (32_00 - 12_00) - (21_00 - 8_00)

    # The refund is announced to the publisher by postback.
    template = validate_postback_template(
        "https://pub.example/pb?click={click_id}&status={status}&payout={payout}&tx={txid}"
    )
    url = render_postback_url(
        template,
        PostbackValues(
            click_id="clk_42",
            payout=Money.of("-8.00", "USD"),
            status=ConversionStatus.REFUNDED.value,
            txid="order#77",
        ),
    )
    assert url == "https://pub.example/pb?click=clk_42&status=refunded&payout=-8.00&tx=order%2377"
