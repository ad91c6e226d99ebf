"""Double-entry ledger: accounts, immutable balanced transactions, posting rules and balances.

Amounts in the ledger are signed integers of the currency's minor unit (cents for USD,
yen for JPY): positive is a debit, negative a credit. Every transaction sums to zero per
currency. Exact `Decimal` prices are rounded half-even to minor units once, when a
transaction is built, and the platform's margin is derived as the difference of the two
rounded sides, so rounding can never create or lose a minor unit inside a transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from perfmark.clock import utc
from perfmark.domain.pricing import BillableEvent
from perfmark.errors import ConflictError, NotFoundError, ValidationError
from perfmark.ids import new_id
from perfmark.money import Money

from .minor_units import checked_currency, minor_exponent, round_to_minor

__all__ = [
    "CASH_ACCOUNT",
    "REVENUE_ACCOUNT",
    "Account",
    "AccountKind",
    "Entry",
    "Journal",
    "NegativeMarginError",
    "Transaction",
    "TransactionKind",
    "UnbalancedTransactionError",
    "advertiser_account",
    "balances",
    "build_approval",
    "build_charge",
    "build_correction",
    "build_payout",
    "build_reversal",
    "build_topup",
    "is_on_hold",
    "publisher_payable_account",
    "publisher_pending_account",
    "to_minor_exact",
    "totals_by_currency",
]


class AccountKind(StrEnum):
    """What an account holds; the per-party kinds need an owner id."""

    #: Per advertiser. A credit balance is prepaid money left; a debit balance is owed to us.
    ADVERTISER = "advertiser"
    #: Per publisher. Earnings of conversions still in their hold period.
    PUBLISHER_PENDING = "publisher_pending"
    #: Per publisher. Earnings owed; a debit balance is a clawback the publisher owes us.
    PUBLISHER_PAYABLE = "publisher_payable"
    #: The platform's margin: advertiser cost minus publisher payout.
    PLATFORM_REVENUE = "platform_revenue"
    #: Money in and out of the platform: top-ups received, payouts sent.
    CASH = "cash"


_PARTY_KINDS = frozenset(
    {AccountKind.ADVERTISER, AccountKind.PUBLISHER_PENDING, AccountKind.PUBLISHER_PAYABLE}
)


@dataclass(frozen=True, slots=True)
class Account:
    """One ledger account: a kind and, for per-party kinds, the advertiser or publisher id."""

    kind: AccountKind
    owner_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", AccountKind(self.kind))
        if self.kind in _PARTY_KINDS and not self.owner_id:
            raise ValidationError(
                f"a {self.kind.value} account needs the id of its owner", field="owner_id"
            )
        if self.kind not in _PARTY_KINDS and self.owner_id is not None:
            raise ValidationError(
                f"the {self.kind.value} account is the platform's; it takes no owner id",
                field="owner_id",
            )

    @property
    def key(self) -> str:
        """A stable text form such as `advertiser:adv_01...` or `cash`."""
        return self.kind.value if self.owner_id is None else f"{self.kind.value}:{self.owner_id}"

    def __str__(self) -> str:
        return self.key


CASH_ACCOUNT = Account(AccountKind.CASH)
REVENUE_ACCOUNT = Account(AccountKind.PLATFORM_REVENUE)


def advertiser_account(advertiser_id: str) -> Account:
    """The advertiser's prepaid-balance / receivable account."""
    return Account(AccountKind.ADVERTISER, advertiser_id)


def publisher_pending_account(publisher_id: str) -> Account:
    """The publisher's account of earnings on hold."""
    return Account(AccountKind.PUBLISHER_PENDING, publisher_id)


def publisher_payable_account(publisher_id: str) -> Account:
    """The publisher's account of earnings owed (negative balance: clawback owed)."""
    return Account(AccountKind.PUBLISHER_PAYABLE, publisher_id)


class UnbalancedTransactionError(ValidationError):
    """A transaction whose entries do not sum to zero in some currency."""


class NegativeMarginError(ValidationError):
    """A charge whose publisher payout exceeds the advertiser cost without explicit consent."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a transaction: minor units on one account (positive debit, negative credit)."""

    account: Account
    currency: str
    minor: int

    def __post_init__(self) -> None:
        if isinstance(self.minor, bool) or not isinstance(self.minor, int):
            raise ValidationError(
                f"entry amount {self.minor!r} must be an integer of minor units", field="minor"
            )
        object.__setattr__(self, "currency", checked_currency(self.currency))

    @property
    def money(self) -> Money:
        """The entry's signed amount as Money."""
        return Money.from_minor(self.minor, self.currency)


class TransactionKind(StrEnum):
    """Why a transaction was posted."""

    TOPUP = "topup"  #: an advertiser paid money in
    CHARGE = (
        "charge"  #: a billable event: advertiser pays, publisher earns, platform keeps the rest
    )
    APPROVAL = "approval"  #: a held earning becomes payable
    REVERSAL = "reversal"  #: a rejected or refunded charge, publisher not yet paid
    CLAWBACK = "clawback"  #: a refunded charge after the publisher was paid
    PAYOUT = "payout"  #: money sent to a publisher
    CORRECTION = "correction"  #: the exact negation of a mistaken top-up or payout


_REVERSING_KINDS = frozenset({TransactionKind.REVERSAL, TransactionKind.CLAWBACK})


@dataclass(frozen=True, slots=True)
class Transaction:
    """An immutable, balanced set of entries posted together for one reason."""

    txn_id: str
    kind: TransactionKind
    occurred_at: datetime
    entries: tuple[Entry, ...]
    #: The event, conversion, top-up or statement this transaction posts for.
    reference: str
    #: The transaction this one approves, reverses or corrects.
    reverses: str | None = None
    campaign_id: str | None = None
    goal_id: str | None = None
    event: BillableEvent | None = None
    #: How many billable events a charge covers (a CPM batch covers many impressions).
    quantity: int = 0
    memo: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TransactionKind(self.kind))
        object.__setattr__(self, "entries", tuple(self.entries))
        object.__setattr__(self, "occurred_at", utc(self.occurred_at))
        if not self.reference:
            raise ValidationError("a transaction needs a reference", field="reference")
        if len(self.entries) < 2:
            raise UnbalancedTransactionError(
                f"transaction {self.txn_id} has {len(self.entries)} entries; "
                "double entry needs at least two",
                field="entries",
            )
        for currency, total in totals_by_currency(self.entries).items():
            if total != 0:
                raise UnbalancedTransactionError(
                    f"transaction {self.txn_id} is off by {total} minor units of {currency}; "
                    "debits and credits must sum to zero per currency",
                    field="entries",
                )

    def amount_on(self, account: Account, currency: str | None = None) -> int:
        """The signed minor units this transaction puts on `account` (optionally one currency)."""
        return sum(
            entry.minor
            for entry in self.entries
            if entry.account == account and (currency is None or entry.currency == currency)
        )

    def entry_of_kind(self, kind: AccountKind) -> Entry | None:
        """The first entry on an account of `kind`, if any."""
        return next((entry for entry in self.entries if entry.account.kind is kind), None)

    @property
    def currency(self) -> str:
        """The transaction's currency (every posting rule here builds one-currency transactions)."""
        return self.entries[0].currency


def totals_by_currency(entries: Iterable[Entry]) -> dict[str, int]:
    """Sum of signed minor units per currency (zero for every balanced set of entries)."""
    totals: dict[str, int] = {}
    for entry in entries:
        totals[entry.currency] = totals.get(entry.currency, 0) + entry.minor
    return totals


def to_minor_exact(amount: Money, *, field_name: str = "amount") -> int:
    """Minor units of an amount that must already be whole minor units (no silent rounding)."""
    exponent = minor_exponent(amount.currency)
    scaled = amount.amount.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise ValidationError(
            f"{field_name} {amount.amount} {amount.currency} has more than {exponent} decimals; "
            f"send whole minor units of {amount.currency}",
            field=field_name,
        )
    return int(scaled)


def _txn_id(txn_id: str | None, occurred_at: datetime) -> str:
    if txn_id is not None:
        return txn_id
    return new_id("txn", now_ms=int(utc(occurred_at).timestamp() * 1000))


def build_topup(
    advertiser_id: str,
    amount: Money,
    *,
    reference: str,
    occurred_at: datetime,
    txn_id: str | None = None,
) -> Transaction:
    """Money paid in by an advertiser: debit cash, credit the advertiser's balance."""
    minor = to_minor_exact(amount)
    if minor <= 0:
        raise ValidationError(
            f"top-up amount is {amount.amount} {amount.currency}; it must be above 0 "
            "(money going back to an advertiser is a correction of a top-up)",
            field="amount",
        )
    return Transaction(
        txn_id=_txn_id(txn_id, occurred_at),
        kind=TransactionKind.TOPUP,
        occurred_at=occurred_at,
        entries=(
            Entry(CASH_ACCOUNT, amount.currency, minor),
            Entry(advertiser_account(advertiser_id), amount.currency, -minor),
        ),
        reference=reference,
    )


def build_charge(
    *,
    advertiser_id: str,
    publisher_id: str,
    cost: Money,
    payout: Money,
    event: BillableEvent,
    reference: str,
    occurred_at: datetime,
    campaign_id: str,
    goal_id: str | None = None,
    quantity: int = 1,
    on_hold: bool = False,
    allow_negative_margin: bool = False,
    txn_id: str | None = None,
) -> Transaction:
    """A billable event: the advertiser pays `cost`, the publisher earns `payout`, we keep the rest.

    Both amounts are exact and rounded half-even to minor units here; the margin is the
    difference of the rounded amounts. A payout above the cost is refused unless
    `allow_negative_margin`. `on_hold` credits the publisher's pending account (a conversion
    in its hold period) instead of the payable one.
    """
    if cost.currency != payout.currency:
        raise ValidationError(
            f"cost is in {cost.currency} but payout in {payout.currency}; "
            "price both sides of a charge in the campaign currency",
            field="payout",
        )
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise ValidationError(f"quantity is {quantity!r}; it must be 1 or more", field="quantity")
    cost_minor = round_to_minor(cost)
    payout_minor = round_to_minor(payout)
    if cost_minor < 0 or payout_minor < 0:
        raise ValidationError(
            f"cost {cost} and payout {payout} must not be negative; "
            "take money back with a reversal",
            field="cost" if cost_minor < 0 else "payout",
        )
    if payout_minor > cost_minor and not allow_negative_margin:
        raise NegativeMarginError(
            f"publisher payout {payout.rounded()} exceeds advertiser cost {cost.rounded()} "
            f"for {reference}; set allow_negative_margin on the pricing to accept a loss",
            field="payout",
        )
    publisher = (
        publisher_pending_account(publisher_id)
        if on_hold
        else publisher_payable_account(publisher_id)
    )
    currency = cost.currency
    return Transaction(
        txn_id=_txn_id(txn_id, occurred_at),
        kind=TransactionKind.CHARGE,
        occurred_at=occurred_at,
        entries=(
            Entry(advertiser_account(advertiser_id), currency, cost_minor),
            Entry(publisher, currency, -payout_minor),
            Entry(REVENUE_ACCOUNT, currency, payout_minor - cost_minor),
        ),
        reference=reference,
        campaign_id=campaign_id,
        goal_id=goal_id,
        event=event,
        quantity=quantity,
    )


def _require_charge(charge: Transaction) -> Entry:
    if charge.kind is not TransactionKind.CHARGE:
        raise ValidationError(
            f"transaction {charge.txn_id} is a {charge.kind.value}, not a charge", field="reverses"
        )
    publisher_entry = next(
        (
            entry
            for entry in charge.entries
            if entry.account.kind in (AccountKind.PUBLISHER_PENDING, AccountKind.PUBLISHER_PAYABLE)
        ),
        None,
    )
    assert publisher_entry is not None, "build_charge always credits a publisher account"
    return publisher_entry


def is_on_hold(charge: Transaction) -> bool:
    """Whether a charge credited the publisher's pending (held) account."""
    return _require_charge(charge).account.kind is AccountKind.PUBLISHER_PENDING


def build_approval(
    charge: Transaction, *, occurred_at: datetime, txn_id: str | None = None
) -> Transaction:
    """A held earning becomes payable: debit the publisher's pending, credit its payable account."""
    publisher_entry = _require_charge(charge)
    if publisher_entry.account.kind is not AccountKind.PUBLISHER_PENDING:
        raise ConflictError(
            f"charge {charge.txn_id} was not on hold; its earning is already payable",
            field="reverses",
        )
    owner = publisher_entry.account.owner_id
    assert owner is not None
    earned = -publisher_entry.minor
    return Transaction(
        txn_id=_txn_id(txn_id, occurred_at),
        kind=TransactionKind.APPROVAL,
        occurred_at=occurred_at,
        entries=(
            Entry(publisher_entry.account, publisher_entry.currency, earned),
            Entry(publisher_payable_account(owner), publisher_entry.currency, -earned),
        ),
        reference=charge.reference,
        reverses=charge.txn_id,
        campaign_id=charge.campaign_id,
        goal_id=charge.goal_id,
        event=charge.event,
        quantity=charge.quantity,
    )


def build_reversal(
    charge: Transaction,
    *,
    approved: bool,
    publisher_paid: bool,
    occurred_at: datetime,
    reason: str,
    txn_id: str | None = None,
) -> Transaction:
    """Take back a rejected or refunded charge; never an edit of the original.

    The advertiser and the platform get their entries negated. The publisher's earning is
    taken from where it now sits: the pending account while it is still held, else the
    payable account. When the publisher was already paid (`publisher_paid`), the transaction
    is a CLAWBACK: the payable account goes negative and the next payout statement deducts it.
    `approved` says whether the held earning was approved (ignored for charges not on hold).
    """
    publisher_entry = _require_charge(charge)
    owner = publisher_entry.account.owner_id
    assert owner is not None
    held = publisher_entry.account.kind is AccountKind.PUBLISHER_PENDING and not approved
    if held and publisher_paid:
        raise ValidationError(
            f"charge {charge.txn_id} is still on hold, so its publisher cannot have been paid",
            field="publisher_paid",
        )
    publisher_account = publisher_entry.account if held else publisher_payable_account(owner)
    entries = tuple(
        Entry(
            publisher_account if entry is publisher_entry else entry.account,
            entry.currency,
            -entry.minor,
        )
        for entry in charge.entries
    )
    return Transaction(
        txn_id=_txn_id(txn_id, occurred_at),
        kind=TransactionKind.CLAWBACK if publisher_paid else TransactionKind.REVERSAL,
        occurred_at=occurred_at,
        entries=entries,
        reference=charge.reference,
        reverses=charge.txn_id,
        campaign_id=charge.campaign_id,
        goal_id=charge.goal_id,
        event=charge.event,
        quantity=charge.quantity,
        memo=reason,
    )


def build_payout(
    publisher_id: str,
    amount: Money,
    *,
    reference: str,
    occurred_at: datetime,
    txn_id: str | None = None,
) -> Transaction:
    """Money sent to a publisher (one payout statement): debit payable, credit cash."""
    minor = to_minor_exact(amount)
    if minor <= 0:
        raise ValidationError(
            f"payout amount is {amount.amount} {amount.currency}; it must be above 0 "
            "(a negative statement total is carried forward, not paid)",
            field="amount",
        )
    return Transaction(
        txn_id=_txn_id(txn_id, occurred_at),
        kind=TransactionKind.PAYOUT,
        occurred_at=occurred_at,
        entries=(
            Entry(publisher_payable_account(publisher_id), amount.currency, minor),
            Entry(CASH_ACCOUNT, amount.currency, -minor),
        ),
        reference=reference,
    )


def build_correction(
    original: Transaction, *, occurred_at: datetime, reason: str, txn_id: str | None = None
) -> Transaction:
    """The exact negation of a mistaken top-up or payout (a charge is taken back by a reversal)."""
    if original.kind not in (TransactionKind.TOPUP, TransactionKind.PAYOUT):
        raise ValidationError(
            f"transaction {original.txn_id} is a {original.kind.value}; only top-ups and payouts "
            "are corrected (reverse a charge with build_reversal)",
            field="reverses",
        )
    return Transaction(
        txn_id=_txn_id(txn_id, occurred_at),
        kind=TransactionKind.CORRECTION,
        occurred_at=occurred_at,
        entries=tuple(Entry(e.account, e.currency, -e.minor) for e in original.entries),
        reference=original.reference,
        reverses=original.txn_id,
        memo=reason,
    )


def balances(transactions: Iterable[Transaction]) -> dict[tuple[Account, str], int]:
    """Signed minor units (debit positive) per account and currency, computed from entries."""
    result: dict[tuple[Account, str], int] = {}
    for txn in transactions:
        for entry in txn.entries:
            key = (entry.account, entry.currency)
            result[key] = result.get(key, 0) + entry.minor
    return result


@dataclass
class Journal:
    """An append-only, in-memory ledger that refuses double charges and dangling references.

    The store enforces the same rules with unique constraints; this class is the reference
    behaviour its tests compare against, and the engine of the benchmark.
    """

    _transactions: list[Transaction] = field(default_factory=list)
    _by_id: dict[str, Transaction] = field(default_factory=dict)
    _charge_by_reference: dict[str, Transaction] = field(default_factory=dict)
    _approved: set[str] = field(default_factory=set)
    _reversed: set[str] = field(default_factory=set)
    _once_references: set[tuple[TransactionKind, str]] = field(default_factory=set)
    _balances: dict[tuple[Account, str], int] = field(default_factory=dict)

    def post(self, txn: Transaction) -> Transaction:
        """Record `txn` after checking it against what is already posted; returns it."""
        if txn.txn_id in self._by_id:
            raise ConflictError(f"transaction {txn.txn_id} is already posted", field="txn_id")
        if txn.kind is TransactionKind.CHARGE:
            earlier = self._charge_by_reference.get(txn.reference)
            if earlier is not None:
                raise ConflictError(
                    f"{txn.reference} is already charged by {earlier.txn_id}; "
                    "a retried event must not be charged twice",
                    field="reference",
                )
        elif txn.kind in (TransactionKind.TOPUP, TransactionKind.PAYOUT):
            if (txn.kind, txn.reference) in self._once_references:
                raise ConflictError(
                    f"a {txn.kind.value} for {txn.reference} is already posted", field="reference"
                )
        else:
            self._check_follow_up(txn)
        self._apply(txn)
        return txn

    def _check_follow_up(self, txn: Transaction) -> None:
        target = self._by_id.get(txn.reverses or "")
        if target is None:
            raise NotFoundError(
                f"{txn.kind.value} {txn.txn_id} points at {txn.reverses!r}, which is not posted; "
                "only posted transactions can be approved, reversed or corrected",
                field="reverses",
            )
        if txn.kind is TransactionKind.CORRECTION:
            if target.kind not in (TransactionKind.TOPUP, TransactionKind.PAYOUT):
                raise ValidationError(
                    f"correction {txn.txn_id} points at a {target.kind.value}; only top-ups and "
                    "payouts are corrected",
                    field="reverses",
                )
            if target.txn_id in self._reversed:
                raise ConflictError(f"{target.txn_id} is already corrected", field="reverses")
            return
        if target.kind is not TransactionKind.CHARGE:
            raise ValidationError(
                f"{txn.kind.value} {txn.txn_id} must point at a charge, not a {target.kind.value}",
                field="reverses",
            )
        if target.txn_id in self._reversed:
            raise ConflictError(
                f"charge {target.txn_id} for {target.reference} is already reversed",
                field="reverses",
            )
        if txn.kind is TransactionKind.APPROVAL:
            if target.txn_id in self._approved or not is_on_hold(target):
                raise ConflictError(
                    f"charge {target.txn_id} is already approved or was never on hold",
                    field="reverses",
                )
            return
        # A reversal must take the earning from the account it now sits in.
        still_held = is_on_hold(target) and target.txn_id not in self._approved
        taken_from = txn.entry_of_kind(
            AccountKind.PUBLISHER_PENDING if still_held else AccountKind.PUBLISHER_PAYABLE
        )
        if taken_from is None:
            where = "pending (still on hold)" if still_held else "payable (approved)"
            raise ValidationError(
                f"{txn.kind.value} {txn.txn_id} must take the earning from the publisher's "
                f"{where} account",
                field="entries",
            )

    def _apply(self, txn: Transaction) -> None:
        self._transactions.append(txn)
        self._by_id[txn.txn_id] = txn
        if txn.kind is TransactionKind.CHARGE:
            self._charge_by_reference[txn.reference] = txn
        elif txn.kind is TransactionKind.APPROVAL:
            assert txn.reverses is not None
            self._approved.add(txn.reverses)
        elif txn.kind in _REVERSING_KINDS or txn.kind is TransactionKind.CORRECTION:
            assert txn.reverses is not None
            self._reversed.add(txn.reverses)
        else:
            self._once_references.add((txn.kind, txn.reference))
        for entry in txn.entries:
            key = (entry.account, entry.currency)
            self._balances[key] = self._balances.get(key, 0) + entry.minor

    def __iter__(self) -> Iterator[Transaction]:
        return iter(self._transactions)

    def __len__(self) -> int:
        return len(self._transactions)

    def get(self, txn_id: str) -> Transaction:
        """The posted transaction `txn_id`."""
        try:
            return self._by_id[txn_id]
        except KeyError:
            raise NotFoundError(f"transaction {txn_id} is not posted", field="txn_id") from None

    def charge_for(self, reference: str) -> Transaction:
        """The charge posted for an event or conversion id; NotFoundError when there is none."""
        try:
            return self._charge_by_reference[reference]
        except KeyError:
            raise NotFoundError(
                f"no charge is posted for {reference}; check the conversion id", field="reference"
            ) from None

    def is_approved(self, charge_id: str) -> bool:
        """Whether the held earning of a charge was approved."""
        return charge_id in self._approved

    def is_reversed(self, txn_id: str) -> bool:
        """Whether a charge was reversed or clawed back (or a top-up/payout corrected)."""
        return txn_id in self._reversed

    def balance(self, account: Account, currency: str) -> int:
        """Signed minor units on `account` in `currency` (debit positive)."""
        return self._balances.get((account, checked_currency(currency)), 0)

    def balances(self) -> Mapping[tuple[Account, str], int]:
        """Every account's signed balance (a read-only view)."""
        return dict(self._balances)

    def prepaid_balance(self, advertiser_id: str, currency: str) -> Money:
        """Money the advertiser has left (negative: what it owes, within its credit limit)."""
        minor = -self.balance(advertiser_account(advertiser_id), currency)
        return Money.from_minor(minor, currency)

    def payable_balance(self, publisher_id: str, currency: str) -> Money:
        """Approved earnings not yet paid (negative: a clawback the publisher owes)."""
        minor = -self.balance(publisher_payable_account(publisher_id), currency)
        return Money.from_minor(minor, currency)

    def pending_balance(self, publisher_id: str, currency: str) -> Money:
        """Earnings still on hold."""
        minor = -self.balance(publisher_pending_account(publisher_id), currency)
        return Money.from_minor(minor, currency)
