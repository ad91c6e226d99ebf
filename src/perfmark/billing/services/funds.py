"""Prepaid balances: top-ups, balances, and the ledger as a filtered, paged list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.kinds import ADVERTISERS
from perfmark.adapters.store.resources import ResourceStore
from perfmark.billing import store
from perfmark.billing.domain.ledger import advertiser_account, build_topup
from perfmark.billing.services.access import require_staff, require_write, scope_of
from perfmark.billing.services.context import AdvertiserBilling
from perfmark.billing.services.holds import release_holds
from perfmark.clock import utc
from perfmark.domain.parties import AdvertiserSpec
from perfmark.domain.records import Page
from perfmark.domain.rules import check_currency
from perfmark.errors import ConflictError, NotFoundError, ValidationError
from perfmark.ids import new_id
from perfmark.money import Money, MoneyError, parse_amount
from perfmark.services.container import Container, Principal

__all__ = [
    "MAX_LEDGER_PAGE",
    "Balance",
    "TopUp",
    "balance_of",
    "decode_cursor",
    "encode_cursor",
    "list_ledger",
    "top_up",
]

#: Most transactions one page of the ledger returns.
MAX_LEDGER_PAGE = 500
_MAX_REFERENCE_CHARS = 100


@dataclass(frozen=True)
class Balance:
    """An advertiser's money: balance (negative: owed), credit limit and what is available."""

    advertiser_id: str
    billing_mode: str
    balance: Money
    credit_limit: Money | None
    available: Money | None  #: None: postpaid without a limit (never refused for funds)


@dataclass(frozen=True)
class TopUp:
    """A posted top-up and the balance after it."""

    txn_id: str
    reference: str
    amount: Money
    replayed: bool
    balance: Balance
    released_campaigns: tuple[str, ...]


def _advertiser(conn: Connection, workspace_id: str, advertiser_id: str) -> AdvertiserSpec:
    record = ResourceStore(ADVERTISERS).get(conn, workspace_id, advertiser_id)
    if record is None:
        raise NotFoundError(
            f"no advertiser with id {advertiser_id!r} in this workspace; list them at "
            "/api/advertisers",
            field="advertiser_id",
        )
    spec: AdvertiserSpec = record.spec
    return spec


def _balance(
    conn: Connection, workspace_id: str, advertiser_id: str, spec: AdvertiserSpec
) -> Balance:
    view = AdvertiserBilling(advertiser_id, spec.currency, spec.billing_mode, spec.credit_limit)
    account = advertiser_account(advertiser_id).key
    minor = store.account_balance(conn, workspace_id, account, spec.currency)
    funds = view.funds(minor)
    credit = None
    if spec.credit_limit is not None:
        credit = Money.from_minor(view.credit_minor, spec.currency)
    return Balance(
        advertiser_id=advertiser_id,
        billing_mode=spec.billing_mode.value,
        balance=Money.from_minor(-minor, spec.currency),
        credit_limit=credit,
        available=None if funds is None else funds.available,
    )


def balance_of(container: Container, principal: Principal, advertiser_id: str) -> Balance:
    """The advertiser's balance (an advertiser key sees only its own)."""
    scope = scope_of(principal)
    if not scope.allows(advertiser_id, None):  # a publisher key sees no advertiser's money
        raise NotFoundError(f"no advertiser with id {advertiser_id!r} in this workspace")
    with transaction(container.engine) as conn:
        spec = _advertiser(conn, principal.workspace_id, advertiser_id)
        return _balance(conn, principal.workspace_id, advertiser_id, spec)


def _amount(amount: str | Decimal, currency: str) -> Money:
    try:
        value = parse_amount(amount, field="amount")
    except MoneyError as exc:
        raise ValidationError(str(exc), field="amount") from None
    if value <= 0:
        raise ValidationError(
            f"top-up amount is {value} {currency}; it must be above 0 (money going back to an "
            "advertiser is a correction, not a negative top-up)",
            field="amount",
        )
    return Money(value, currency)


def top_up(
    container: Container,
    principal: Principal,
    advertiser_id: str,
    amount: str | Decimal,
    *,
    currency: str | None = None,
    reference: str | None = None,
) -> TopUp:
    """Credit money paid in by an advertiser; the same `reference` posts once (a safe retry).

    Campaigns paused for lack of funds run again once the balance allows it.
    """
    require_write(principal, "top up a balance")
    if reference is not None and not 0 < len(reference) <= _MAX_REFERENCE_CHARS:
        raise ValidationError(
            f"reference must be 1 to {_MAX_REFERENCE_CHARS} characters", field="reference"
        )
    now = container.clock.now()
    with transaction(container.engine) as conn:
        spec = _advertiser(conn, principal.workspace_id, advertiser_id)
        if currency is not None and check_currency("currency", currency) != spec.currency:
            raise ValidationError(
                f"currency {currency} differs from the advertiser's {spec.currency}; top up in "
                f"{spec.currency}",
                field="currency",
            )
        money = _amount(amount, spec.currency)
        ref = reference or new_id("txn")
        txn = build_topup(
            advertiser_id, money, reference=ref, occurred_at=now, txn_id=store.next_txn_id(now)
        )
        meta = store.PostingMeta(principal.workspace_id, advertiser_id=advertiser_id)
        replayed = not store.post_transaction(conn, txn, meta)
        txn_id = txn.txn_id
        if replayed:
            txn_id = _same_top_up(conn, principal.workspace_id, advertiser_id, ref, money)
        released = release_holds(conn, now, principal.workspace_id)
        return TopUp(
            txn_id=txn_id,
            reference=ref,
            amount=money,
            replayed=replayed,
            balance=_balance(conn, principal.workspace_id, advertiser_id, spec),
            released_campaigns=tuple(released),
        )


def _same_top_up(
    conn: Connection, workspace_id: str, advertiser_id: str, reference: str, money: Money
) -> str:
    """The earlier top-up under `reference`, if it is the same one; else a conflict."""
    txn_id = store.find_by_once_key(conn, workspace_id, f"topup:{reference}")
    posted = store.get_transaction(conn, workspace_id, txn_id) if txn_id else None
    credited = 0 if posted is None else -posted.txn.amount_on(advertiser_account(advertiser_id))
    if posted is None or posted.advertiser_id != advertiser_id or credited != money.to_minor():
        raise ConflictError(
            f"reference {reference!r} was already used for another top-up; send a new "
            "reference, or the same amount to retry that one",
            field="reference",
        )
    return posted.txn.txn_id


def encode_cursor(moment: datetime, txn_id: str) -> str:
    """The cursor after a transaction: its posting time and id."""
    return f"{utc(moment).isoformat()}|{txn_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Parse a cursor made by `encode_cursor`."""
    moment, _, txn_id = cursor.partition("|")
    try:
        return utc(datetime.fromisoformat(moment)), txn_id
    except ValueError:
        raise ValidationError(
            f"cursor {cursor[:64]!r} is not a cursor this API returned; pass next_cursor from "
            "the previous page",
            field="cursor",
        ) from None


def list_ledger(
    container: Container,
    principal: Principal,
    *,
    account: str | None = None,
    kind: str | None = None,
    campaign_id: str | None = None,
    conversion_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[store.StoredTransaction]:
    """A page of posted transactions (owners, admins and analysts), oldest first."""
    require_staff(principal, "the ledger")
    after = decode_cursor(cursor) if cursor else None
    with transaction(container.engine) as conn:
        items = store.select_transactions(
            conn,
            principal.workspace_id,
            account=account,
            kinds=[kind] if kind else None,
            campaign_id=campaign_id,
            conversion_id=conversion_id,
            since=since,
            until=until,
            after=after,
            limit=min(limit, MAX_LEDGER_PAGE) + 1,
        )
    page = items[: min(limit, MAX_LEDGER_PAGE)]
    next_cursor = None
    if len(items) > len(page) and page:
        last = page[-1].txn
        next_cursor = encode_cursor(last.occurred_at, last.txn_id)
    return Page(tuple(page), next_cursor)
