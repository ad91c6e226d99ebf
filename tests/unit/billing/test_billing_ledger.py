"""The double-entry ledger: posting rules by hand, and its invariants as properties."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.billing.domain.ledger import (
    CASH_ACCOUNT,
    REVENUE_ACCOUNT,
    Account,
    AccountKind,
    Entry,
    Journal,
    NegativeMarginError,
    Transaction,
    TransactionKind,
    UnbalancedTransactionError,
    advertiser_account,
    balances,
    build_approval,
    build_charge,
    build_correction,
    build_payout,
    build_reversal,
    build_topup,
    publisher_payable_account,
    publisher_pending_account,
)
from perfmark.domain.pricing import BillableEvent
from perfmark.errors import ConflictError, NotFoundError, ValidationError
from perfmark.money import Money

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
ADV = "adv_1"
PUB = "pub_1"
EXPONENTS = {"USD": 2, "JPY": 0, "KWD": 3}


def charge(
    cost: str,
    payout: str,
    *,
    reference: str = "cnv_1",
    currency: str = "USD",
    on_hold: bool = True,
    allow_negative_margin: bool = False,
) -> Transaction:
    return build_charge(
        advertiser_id=ADV,
        publisher_id=PUB,
        cost=Money.of(cost, currency),
        payout=Money.of(payout, currency),
        event=BillableEvent.CONVERSION,
        reference=reference,
        occurred_at=T0,
        campaign_id="cmp_1",
        goal_id="goal_lead",
        on_hold=on_hold,
        allow_negative_margin=allow_negative_margin,
    )


def per_account(*txns: Transaction) -> dict[tuple[Account, str], int]:
    return {key: value for key, value in balances(txns).items() if value != 0}


# --- hand-computed cases -------------------------------------------------------------------


def test_topup_debits_cash_and_credits_the_advertiser() -> None:
    txn = build_topup(ADV, Money.of("100.00", "USD"), reference="pay_1", occurred_at=T0)
    assert txn.kind is TransactionKind.TOPUP
    assert {(e.account, e.minor) for e in txn.entries} == {
        (CASH_ACCOUNT, 10000),
        (advertiser_account(ADV), -10000),
    }
    journal = Journal()
    journal.post(txn)
    assert journal.prepaid_balance(ADV, "USD") == Money.of("100.00", "USD")


@pytest.mark.parametrize("amount", ["0", "-5.00", "10.005"])
def test_topup_refuses_zero_negative_and_sub_cent_amounts(amount: str) -> None:
    with pytest.raises(ValidationError) as info:
        build_topup(ADV, Money.of(amount, "USD"), reference="pay_1", occurred_at=T0)
    assert info.value.field == "amount"
    assert amount.lstrip("-") in info.value.message


def test_charge_rounds_each_side_half_even_and_derives_the_margin() -> None:
    # 12.345 -> 12.34 and 10.005 -> 10.00 (ties go to the even cent); margin 2.34.
    txn = charge("12.345", "10.005")
    assert [(e.account, e.minor) for e in txn.entries] == [
        (advertiser_account(ADV), 1234),
        (publisher_pending_account(PUB), -1000),
        (REVENUE_ACCOUNT, -234),
    ]
    assert txn.quantity == 1 and txn.event is BillableEvent.CONVERSION


def test_charge_in_a_currency_without_minor_units() -> None:
    txn = charge("100.5", "50.5", currency="JPY")  # both ties: 100 and 50 (even)
    assert [e.minor for e in txn.entries] == [100, -50, -50]


def test_negative_margin_is_refused_unless_allowed() -> None:
    with pytest.raises(NegativeMarginError) as info:
        charge("1.00", "1.01")
    assert "allow_negative_margin" in info.value.message
    txn = charge("1.00", "1.01", allow_negative_margin=True)
    assert txn.amount_on(REVENUE_ACCOUNT) == 1  # the platform pays one cent


def test_charge_refuses_mixed_currencies_and_negative_amounts() -> None:
    with pytest.raises(ValidationError):
        build_charge(
            advertiser_id=ADV,
            publisher_id=PUB,
            cost=Money.of("1", "USD"),
            payout=Money.of("1", "EUR"),
            event=BillableEvent.CLICK,
            reference="clk_1",
            occurred_at=T0,
            campaign_id="cmp_1",
        )
    with pytest.raises(ValidationError):
        charge("-1.00", "0")


def test_transactions_must_balance_per_currency() -> None:
    usd, eur = "USD", "EUR"
    with pytest.raises(UnbalancedTransactionError) as info:
        Transaction(
            "txn_x",
            TransactionKind.TOPUP,
            T0,
            (Entry(CASH_ACCOUNT, usd, 100), Entry(advertiser_account(ADV), usd, -99)),
            reference="r",
        )
    assert "off by 1" in info.value.message
    with pytest.raises(UnbalancedTransactionError):  # 1 USD does not offset 1 EUR
        Transaction(
            "txn_x",
            TransactionKind.TOPUP,
            T0,
            (Entry(CASH_ACCOUNT, usd, 100), Entry(advertiser_account(ADV), eur, -100)),
            reference="r",
        )
    with pytest.raises(UnbalancedTransactionError):
        Transaction("txn_x", TransactionKind.TOPUP, T0, (Entry(CASH_ACCOUNT, usd, 0),), "r")
    both = Transaction(
        "txn_x",
        TransactionKind.TOPUP,
        T0,
        (
            Entry(CASH_ACCOUNT, usd, 100),
            Entry(advertiser_account(ADV), usd, -100),
            Entry(CASH_ACCOUNT, eur, 7),
            Entry(advertiser_account(ADV), eur, -7),
        ),
        reference="r",
    )
    assert both.amount_on(CASH_ACCOUNT) == 107


def test_transactions_and_entries_are_immutable() -> None:
    txn = charge("2.00", "1.00")
    with pytest.raises(dataclasses.FrozenInstanceError):
        txn.reference = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        txn.entries[0].minor = 5  # type: ignore[misc]
    assert isinstance(txn.entries, tuple)


def test_accounts_check_their_owner() -> None:
    with pytest.raises(ValidationError):
        Account(AccountKind.ADVERTISER)
    with pytest.raises(ValidationError):
        Account(AccountKind.CASH, "adv_1")
    assert advertiser_account("adv_9").key == "advertiser:adv_9"
    assert CASH_ACCOUNT.key == "cash"


def test_reversal_of_a_held_charge_negates_it() -> None:
    original = charge("10.00", "7.00")
    reversal = build_reversal(
        original, approved=False, publisher_paid=False, occurred_at=T0, reason="rejected"
    )
    assert reversal.kind is TransactionKind.REVERSAL and reversal.reverses == original.txn_id
    assert per_account(original, reversal) == {}


def test_refund_after_approval_takes_the_earning_from_payable() -> None:
    original = charge("10.00", "7.00")
    approval = build_approval(original, occurred_at=T0)
    assert per_account(original, approval) == {
        (advertiser_account(ADV), "USD"): 1000,
        (publisher_payable_account(PUB), "USD"): -700,
        (REVENUE_ACCOUNT, "USD"): -300,
    }
    refund = build_reversal(
        original, approved=True, publisher_paid=False, occurred_at=T0, reason="refunded"
    )
    assert refund.amount_on(publisher_payable_account(PUB)) == 700
    assert per_account(original, approval, refund) == {}


def test_refund_after_payout_is_a_clawback_carried_as_a_negative_payable() -> None:
    journal = Journal()
    original = journal.post(charge("10.00", "7.00"))
    journal.post(build_approval(original, occurred_at=T0))
    journal.post(build_payout(PUB, Money.of("7.00", "USD"), reference="PAY-1", occurred_at=T0))
    clawback = journal.post(
        build_reversal(
            original,
            approved=True,
            publisher_paid=True,
            occurred_at=T0 + timedelta(days=40),
            reason="refunded",
        )
    )
    assert clawback.kind is TransactionKind.CLAWBACK
    # History is intact: the charge and payout are still there, the publisher owes 7.00.
    assert [t.kind for t in journal] == [
        TransactionKind.CHARGE,
        TransactionKind.APPROVAL,
        TransactionKind.PAYOUT,
        TransactionKind.CLAWBACK,
    ]
    assert journal.payable_balance(PUB, "USD") == Money.of("-7.00", "USD")
    assert journal.prepaid_balance(ADV, "USD") == Money.of("0", "USD")
    assert journal.balance(REVENUE_ACCOUNT, "USD") == 0


def test_clawback_of_a_held_charge_is_impossible() -> None:
    with pytest.raises(ValidationError):
        build_reversal(
            charge("1.00", "0.50"), approved=False, publisher_paid=True, occurred_at=T0, reason="x"
        )


def test_journal_refuses_double_charges_and_dangling_or_repeated_follow_ups() -> None:
    journal = Journal()
    first = journal.post(charge("10.00", "7.00", reference="cnv_9"))
    with pytest.raises(ConflictError) as info:
        journal.post(charge("10.00", "7.00", reference="cnv_9"))
    assert "cnv_9" in info.value.message and "twice" in info.value.message
    with pytest.raises(ConflictError):
        journal.post(first)  # the same transaction id
    unknown = build_reversal(
        charge("1.00", "0.50", reference="cnv_unknown"),
        approved=False,
        publisher_paid=False,
        occurred_at=T0,
        reason="refund",
    )
    with pytest.raises(NotFoundError) as missing:
        journal.post(unknown)
    assert "not posted" in missing.value.message
    with pytest.raises(NotFoundError):
        journal.charge_for("cnv_unknown")
    # Reversal built as if approved, but the earning is still held: refused.
    with pytest.raises(ValidationError):
        journal.post(
            build_reversal(first, approved=True, publisher_paid=False, occurred_at=T0, reason="x")
        )
    journal.post(build_approval(first, occurred_at=T0))
    with pytest.raises(ConflictError):
        journal.post(build_approval(first, occurred_at=T0))
    journal.post(
        build_reversal(first, approved=True, publisher_paid=False, occurred_at=T0, reason="x")
    )
    assert journal.is_reversed(first.txn_id)
    with pytest.raises(ConflictError):
        journal.post(
            build_reversal(first, approved=True, publisher_paid=False, occurred_at=T0, reason="x")
        )
    assert len(journal) == 3


def test_approval_needs_a_held_charge() -> None:
    with pytest.raises(ConflictError):
        build_approval(charge("1.00", "0.50", on_hold=False), occurred_at=T0)


def test_payouts_and_topups_post_once_per_reference_and_can_be_corrected() -> None:
    journal = Journal()
    topup = journal.post(
        build_topup(ADV, Money.of("50.00", "USD"), reference="pay_7", occurred_at=T0)
    )
    with pytest.raises(ConflictError):
        journal.post(build_topup(ADV, Money.of("50.00", "USD"), reference="pay_7", occurred_at=T0))
    journal.post(build_correction(topup, occurred_at=T0, reason="bank reversed"))
    assert journal.prepaid_balance(ADV, "USD").is_zero()
    with pytest.raises(ConflictError):
        journal.post(build_correction(topup, occurred_at=T0, reason="again"))
    with pytest.raises(ValidationError):
        build_payout(PUB, Money.of("-1", "USD"), reference="PAY-2", occurred_at=T0)
    with pytest.raises(ValidationError):
        build_correction(charge("1.00", "0.50"), occurred_at=T0, reason="no")


def test_generated_ids_are_unique_and_sortable_by_time() -> None:
    first = charge("1.00", "0.50", reference="a")
    later = build_charge(
        advertiser_id=ADV,
        publisher_id=PUB,
        cost=Money.of("1", "USD"),
        payout=Money.of("0", "USD"),
        event=BillableEvent.CLICK,
        reference="b",
        occurred_at=T0 + timedelta(seconds=1),
        campaign_id="cmp_1",
    )
    assert first.txn_id.startswith("txn_") and first.txn_id < later.txn_id


# --- properties ----------------------------------------------------------------------------


def half_even_minor(amount: Decimal, currency: str) -> int:
    """An independent oracle: Python's round() of a Fraction rounds ties to even."""
    return round(Fraction(amount) * Fraction(10) ** EXPONENTS[currency])


currencies = st.sampled_from(sorted(EXPONENTS))
amounts = st.decimals(min_value=0, max_value=10_000, places=5)


@settings(max_examples=300, deadline=None)
@given(currency=currencies, cost=amounts, payout=amounts)
def test_rounding_neither_creates_nor_loses_a_minor_unit(
    currency: str, cost: Decimal, payout: Decimal
) -> None:
    txn = charge(str(cost), str(payout), currency=currency, allow_negative_margin=True)
    advertiser, publisher, revenue = (e.minor for e in txn.entries)
    assert advertiser == half_even_minor(cost, currency)
    assert -publisher == half_even_minor(payout, currency)
    assert advertiser + publisher + revenue == 0


@settings(max_examples=300, deadline=None)
@given(currency=currencies, cost=amounts, share=st.fractions(min_value=0, max_value=1))
def test_publisher_never_earns_more_than_the_advertiser_pays(
    currency: str, cost: Decimal, share: Fraction
) -> None:
    payout = Decimal(share.numerator) * cost / Decimal(share.denominator)  # payout <= cost
    txn = charge(str(cost), str(payout), currency=currency)
    advertiser, publisher, revenue = (e.minor for e in txn.entries)
    assert -publisher <= advertiser and revenue <= 0


@settings(max_examples=200, deadline=None)
@given(
    currency=currencies,
    cost=amounts,
    extra=st.decimals(min_value=1, max_value=1000, places=0),
)
def test_a_payout_above_the_cost_needs_explicit_consent(
    currency: str, cost: Decimal, extra: Decimal
) -> None:
    with pytest.raises(NegativeMarginError):
        charge(str(cost), str(cost + extra), currency=currency)


@settings(max_examples=200, deadline=None)
@given(
    currency=currencies,
    cost=amounts,
    payout=amounts,
    on_hold=st.booleans(),
    approved=st.booleans(),
    paid=st.booleans(),
)
def test_a_reversal_nets_the_original_to_zero(
    currency: str, cost: Decimal, payout: Decimal, on_hold: bool, approved: bool, paid: bool
) -> None:
    original = charge(
        str(cost), str(payout), currency=currency, on_hold=on_hold, allow_negative_margin=True
    )
    chain = [original]
    if on_hold and approved:
        chain.append(build_approval(original, occurred_at=T0))
    settled = approved or not on_hold
    reversal = build_reversal(
        original,
        approved=approved,
        publisher_paid=paid and settled,
        occurred_at=T0,
        reason="refund",
    )
    assert per_account(*chain, reversal) == {}


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[str, int, str, Decimal, Decimal]]:
    ops = []
    for _ in range(draw(st.integers(min_value=1, max_value=25))):
        op = draw(st.sampled_from(["topup", "charge", "approve", "reverse", "payout"]))
        ops.append(
            (
                op,
                draw(st.integers(min_value=0, max_value=10)),
                draw(currencies),
                draw(amounts),
                draw(amounts),
            )
        )
    return ops


@settings(max_examples=150, deadline=None)
@given(ops=operations())
def test_the_ledger_always_balances_per_currency(
    ops: list[tuple[str, int, str, Decimal, Decimal]],
) -> None:
    journal = Journal()
    charges: list[Transaction] = []
    for step, (op, pick, currency, first, second) in enumerate(ops):
        when = T0 + timedelta(minutes=step)
        try:
            if op == "topup":
                amount = Money.of(first, currency).rounded()
                journal.post(build_topup(ADV, amount, reference=f"pay_{step}", occurred_at=when))
            elif op == "charge":
                cost, payout = max(first, second), min(first, second)
                txn = build_charge(
                    advertiser_id=ADV,
                    publisher_id=f"pub_{pick % 3}",
                    cost=Money(cost, currency),
                    payout=Money(payout, currency),
                    event=BillableEvent.CONVERSION,
                    reference=f"cnv_{step}",
                    occurred_at=when,
                    campaign_id="cmp_1",
                    goal_id="goal_1",
                    on_hold=pick % 2 == 0,
                )
                charges.append(journal.post(txn))
            elif op == "approve" and charges:
                journal.post(build_approval(charges[pick % len(charges)], occurred_at=when))
            elif op == "reverse" and charges:
                target = charges[pick % len(charges)]
                approved = journal.is_approved(target.txn_id)
                journal.post(
                    build_reversal(
                        target,
                        approved=approved,
                        publisher_paid=approved and pick % 2 == 0,
                        occurred_at=when,
                        reason="refund",
                    )
                )
            elif op == "payout":
                amount = Money.of(first, currency).rounded()
                journal.post(
                    build_payout(
                        f"pub_{pick % 3}", amount, reference=f"PAY-{step}", occurred_at=when
                    )
                )
        except (ConflictError, ValidationError):
            pass  # a refused posting leaves the journal unchanged
        recomputed = balances(journal)
        assert {k: v for k, v in recomputed.items() if v} == {
            k: v for k, v in journal.balances().items() if v
        }
        per_currency: dict[str, int] = {}
        for (_, ccy), minor in recomputed.items():
            per_currency[ccy] = per_currency.get(ccy, 0) + minor
        assert all(total == 0 for total in per_currency.values())
