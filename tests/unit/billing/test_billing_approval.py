"""Conversion statuses: legal transitions, ledger effects, hold periods, auto-approval, bulk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from perfmark.billing.domain.approval import (
    AutoApprovalPolicy,
    AutoOutcome,
    ConversionStatus,
    LedgerAction,
    allowed_targets,
    auto_decision,
    bulk_transition,
    ledger_action,
    payable_at,
    transition,
)
from perfmark.errors import IllegalTransitionError, ValidationError
from perfmark.money import Money

S = ConversionStatus
LEGAL = {
    (S.PENDING, S.APPROVED): LedgerAction.APPROVE,
    (S.PENDING, S.REJECTED): LedgerAction.REVERSE,
    (S.PENDING, S.REFUNDED): LedgerAction.REVERSE,
    (S.APPROVED, S.REJECTED): LedgerAction.REVERSE,
    (S.APPROVED, S.REFUNDED): LedgerAction.REVERSE,
    (S.OVER_CAP, S.PENDING): LedgerAction.CHARGE,
    (S.OVER_CAP, S.REJECTED): LedgerAction.NONE,
}


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("target", list(S))
def test_every_pair_of_statuses(current: S, target: S) -> None:
    if (current, target) in LEGAL:
        assert transition(current, target) is target
        assert ledger_action(current, target) is LEGAL[(current, target)]
        assert target in allowed_targets(current)
    else:
        with pytest.raises(IllegalTransitionError) as info:
            transition(current, target)
        assert current.value in info.value.message and target.value in info.value.message
        assert target not in allowed_targets(current)


def test_final_statuses_say_so() -> None:
    with pytest.raises(IllegalTransitionError) as info:
        transition(S.REFUNDED, S.APPROVED)
    assert "none (final)" in info.value.message


CONVERTED = datetime(2026, 1, 10, 22, 0, tzinfo=UTC)


def test_hold_period_ends_after_whole_days() -> None:
    assert payable_at(CONVERTED, 7) == datetime(2026, 1, 17, 22, 0, tzinfo=UTC)
    assert payable_at(CONVERTED, 0) == CONVERTED
    with pytest.raises(ValidationError):
        payable_at(CONVERTED, -1)


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def decide(
    policy: AutoApprovalPolicy, *, days: float, value: str | None = "10", status: S = S.PENDING
) -> AutoOutcome:
    return auto_decision(
        status,
        converted_at=CONVERTED,
        value=usd(value) if value is not None else None,
        now=CONVERTED + timedelta(days=days),
        policy=policy,
    ).outcome


def test_auto_approval_after_hold_with_a_value_limit() -> None:
    policy = AutoApprovalPolicy(hold_days=7, max_auto_value=usd("100"))
    waiting = auto_decision(
        S.PENDING, converted_at=CONVERTED, value=usd("10"), now=CONVERTED, policy=policy
    )
    assert waiting.outcome is AutoOutcome.WAIT and waiting.until == CONVERTED + timedelta(days=7)
    assert decide(policy, days=6.99) is AutoOutcome.WAIT
    assert decide(policy, days=7) is AutoOutcome.APPROVE
    assert decide(policy, days=7, value="100") is AutoOutcome.APPROVE
    assert decide(policy, days=7, value="100.01") is AutoOutcome.MANUAL
    assert decide(policy, days=7, value=None) is AutoOutcome.APPROVE
    assert decide(policy, days=30, status=S.REJECTED) is AutoOutcome.SKIP
    assert decide(policy, days=30, status=S.APPROVED) is AutoOutcome.SKIP


def test_instant_approval_for_small_values_and_manual_campaigns() -> None:
    instant = AutoApprovalPolicy(hold_days=30, instant_max_value=usd("5"))
    assert decide(instant, days=0, value="5") is AutoOutcome.APPROVE
    assert decide(instant, days=0, value="5.01") is AutoOutcome.WAIT
    assert decide(instant, days=0, value=None) is AutoOutcome.WAIT
    manual = AutoApprovalPolicy(hold_days=1, approve_after_hold=False)
    assert decide(manual, days=2) is AutoOutcome.MANUAL
    with pytest.raises(ValidationError):
        auto_decision(
            S.PENDING,
            converted_at=CONVERTED,
            value=Money.of("1", "EUR"),
            now=CONVERTED,
            policy=instant,
        )
    with pytest.raises(ValidationError):
        AutoApprovalPolicy(max_auto_value=usd("-1"))


def test_bulk_changes_split_changed_unchanged_and_refused() -> None:
    result = bulk_transition(
        [
            ("cnv_1", S.PENDING),
            ("cnv_2", S.APPROVED),
            ("cnv_3", S.REJECTED),
            ("cnv_1", S.PENDING),
            ("cnv_4", S.OVER_CAP),
        ],
        S.APPROVED,
    )
    assert result.changed == ("cnv_1",)
    assert result.unchanged == ("cnv_2",)
    assert [conversion for conversion, _ in result.refused] == ["cnv_3", "cnv_4"]
    assert "rejected" in result.refused[0][1]
