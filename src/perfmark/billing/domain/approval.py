"""Conversion statuses, their legal transitions and ledger effects, hold periods, auto-approval."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from perfmark.clock import utc
from perfmark.domain.rules import check_positive_int
from perfmark.errors import IllegalTransitionError, ValidationError
from perfmark.money import Money

__all__ = [
    "AutoApprovalPolicy",
    "AutoDecision",
    "AutoOutcome",
    "BulkResult",
    "ConversionStatus",
    "LedgerAction",
    "allowed_targets",
    "auto_decision",
    "bulk_transition",
    "ledger_action",
    "payable_at",
    "transition",
]


class ConversionStatus(StrEnum):
    """Where a conversion stands for billing."""

    PENDING = "pending"  #: charged, in its hold period, earning not yet payable
    APPROVED = "approved"  #: the earning is payable to the publisher
    REJECTED = "rejected"  #: not valid (fraud, duplicate sale, out of terms): charge reversed
    REFUNDED = "refunded"  #: the sale was refunded: charge reversed (a clawback once paid)
    OVER_CAP = "over_cap"  #: recorded past a cap or budget: never charged


_TRANSITIONS: dict[ConversionStatus, frozenset[ConversionStatus]] = {
    ConversionStatus.PENDING: frozenset(
        {ConversionStatus.APPROVED, ConversionStatus.REJECTED, ConversionStatus.REFUNDED}
    ),
    ConversionStatus.APPROVED: frozenset({ConversionStatus.REJECTED, ConversionStatus.REFUNDED}),
    # An over-cap conversion the advertiser accepts after all becomes billable (it is
    # charged then, and must pass the budget check again).
    ConversionStatus.OVER_CAP: frozenset({ConversionStatus.PENDING, ConversionStatus.REJECTED}),
    ConversionStatus.REJECTED: frozenset(),
    ConversionStatus.REFUNDED: frozenset(),
}


def allowed_targets(status: ConversionStatus) -> frozenset[ConversionStatus]:
    """The statuses a conversion in `status` may move to."""
    return _TRANSITIONS[ConversionStatus(status)]


def transition(current: ConversionStatus, target: ConversionStatus) -> ConversionStatus:
    """`target` if the move is legal, else IllegalTransitionError naming the allowed moves."""
    current, target = ConversionStatus(current), ConversionStatus(target)
    if target not in _TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in _TRANSITIONS[current])) or "none (final)"
        raise IllegalTransitionError(
            f"a {current.value} conversion cannot become {target.value}; allowed: {allowed}",
            field="status",
        )
    return target


class LedgerAction(StrEnum):
    """What the ledger must post for a status change."""

    NONE = "none"
    CHARGE = "charge"  #: ledger.build_charge (on hold)
    APPROVE = "approve"  #: ledger.build_approval
    REVERSE = "reverse"  #: ledger.build_reversal (a clawback if the publisher was paid)


def ledger_action(current: ConversionStatus, target: ConversionStatus) -> LedgerAction:
    """The ledger posting a legal transition needs (checks legality first)."""
    transition(current, target)
    if target is ConversionStatus.APPROVED:
        return LedgerAction.APPROVE
    if target is ConversionStatus.PENDING:
        return LedgerAction.CHARGE
    if current is ConversionStatus.OVER_CAP:
        return LedgerAction.NONE
    return LedgerAction.REVERSE


def payable_at(converted_at: datetime, hold_days: int) -> datetime:
    """When a conversion's hold period ends."""
    check_positive_int("hold_days", hold_days, allow_zero=True)
    return utc(converted_at) + timedelta(days=hold_days)


@dataclass(frozen=True, slots=True)
class AutoApprovalPolicy:
    """A campaign's hold period and auto-approval rules.

    `approve_after_hold`: approve a pending conversion once its hold ends. `max_auto_value`:
    above this value, wait for a person instead. `instant_max_value`: approve at once,
    without hold, when the value is at most this.
    """

    hold_days: int = 30
    approve_after_hold: bool = True
    max_auto_value: Money | None = None
    instant_max_value: Money | None = None

    def __post_init__(self) -> None:
        check_positive_int("hold_days", self.hold_days, allow_zero=True)
        for name in ("max_auto_value", "instant_max_value"):
            limit = getattr(self, name)
            if limit is not None and limit.amount < 0:
                raise ValidationError(f"{name} is {limit}; it must be 0 or more", field=name)


class AutoOutcome(StrEnum):
    """What auto-approval decides for one conversion now."""

    APPROVE = "approve"
    WAIT = "wait"  #: still on hold; look again at `until`
    MANUAL = "manual"  #: a person must decide
    SKIP = "skip"  #: not pending: nothing to decide


@dataclass(frozen=True, slots=True)
class AutoDecision:
    """An auto-approval outcome and, for WAIT, when to look again."""

    outcome: AutoOutcome
    until: datetime | None = None
    reason: str = ""


def _at_most(value: Money, limit: Money) -> bool:
    if value.currency != limit.currency:
        raise ValidationError(
            f"conversion value is in {value.currency} but the approval limit is in "
            f"{limit.currency}; convert the value first",
            field="value",
        )
    return value <= limit


def auto_decision(
    status: ConversionStatus,
    *,
    converted_at: datetime,
    value: Money | None,
    now: datetime,
    policy: AutoApprovalPolicy,
) -> AutoDecision:
    """Apply the policy to one conversion at `now`.

    A conversion without a value never qualifies for instant approval and never exceeds
    `max_auto_value`.
    """
    if ConversionStatus(status) is not ConversionStatus.PENDING:
        return AutoDecision(AutoOutcome.SKIP, reason=f"status is {status}")
    instant = policy.instant_max_value
    if instant is not None and value is not None and _at_most(value, instant):
        return AutoDecision(AutoOutcome.APPROVE, reason=f"value {value} <= {instant}")
    hold_end = payable_at(converted_at, policy.hold_days)
    if utc(now) < hold_end:
        return AutoDecision(AutoOutcome.WAIT, until=hold_end, reason="in hold period")
    if not policy.approve_after_hold:
        return AutoDecision(AutoOutcome.MANUAL, reason="campaign approves by hand")
    limit = policy.max_auto_value
    if limit is not None and value is not None and not _at_most(value, limit):
        return AutoDecision(AutoOutcome.MANUAL, reason=f"value {value} > {limit}")
    return AutoDecision(AutoOutcome.APPROVE, reason="hold period over")


@dataclass(frozen=True, slots=True)
class BulkResult:
    """A bulk status change split into changed, already-there and refused conversions."""

    changed: tuple[str, ...]
    unchanged: tuple[str, ...]
    refused: tuple[tuple[str, str], ...]  #: (conversion id, reason)


def bulk_transition(
    items: Iterable[tuple[str, ConversionStatus]], target: ConversionStatus
) -> BulkResult:
    """Sort (conversion id, current status) pairs for a bulk approve/reject; no item fails the rest.

    A conversion already in `target` is unchanged (a retried bulk call is harmless); an id
    given twice counts once.
    """
    changed: list[str] = []
    unchanged: list[str] = []
    refused: list[tuple[str, str]] = []
    seen: set[str] = set()
    for conversion_id, current in items:
        if conversion_id in seen:
            continue
        seen.add(conversion_id)
        if ConversionStatus(current) is ConversionStatus(target):
            unchanged.append(conversion_id)
            continue
        try:
            transition(current, target)
        except IllegalTransitionError as exc:
            refused.append((conversion_id, exc.message))
        else:
            changed.append(conversion_id)
    return BulkResult(tuple(changed), tuple(unchanged), tuple(refused))
