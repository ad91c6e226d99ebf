"""Billing tables on the caller's connection: ledger, balances, counters, statements, deliveries.

Every function runs on a connection inside the caller's transaction, so a posting, its
counter increments and the conversion's status change commit (or roll back) together.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    Select,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from perfmark.adapters.store.schema import (
    billed_events,
    billing_holds,
    billing_statements,
    ledger_balances,
    ledger_entries,
    ledger_transactions,
    spend_counters,
    statement_sequences,
)
from perfmark.billing.domain.budgets import CounterKey
from perfmark.billing.domain.ledger import (
    Account,
    AccountKind,
    Entry,
    Transaction,
    TransactionKind,
)
from perfmark.clock import utc
from perfmark.domain.pricing import BillableEvent
from perfmark.ids import new_id

__all__ = [
    "FundsExhaustedError",
    "PostingMeta",
    "StoredTransaction",
    "account_balance",
    "account_of_key",
    "add_to_counter",
    "all_balances",
    "allocate_statement_number",
    "billed_decisions",
    "campaign_hold",
    "campaign_holds",
    "charges_of_conversion",
    "conversions_with_transactions",
    "delete_hold",
    "find_by_once_key",
    "follow_ups",
    "get_transaction",
    "insert_statement",
    "next_txn_id",
    "once_key",
    "payout_covers",
    "post_transaction",
    "put_hold",
    "read_counters",
    "record_billed",
    "release_counter",
    "select_transactions",
]

_HISTORY_ORDER = (ledger_transactions.c.occurred_at, ledger_transactions.c.txn_id)


_id_lock = threading.Lock()
_last_id_ms = 0


def next_txn_id(at: datetime) -> str:
    """A transaction id that sorts after every id this process minted before.

    Ids sort by their millisecond; two postings in the same millisecond (a charge and its
    immediate approval) get consecutive milliseconds, so the ledger lists them in the order
    they were posted.
    """
    global _last_id_ms
    with _id_lock:
        millis = max(int(utc(at).timestamp() * 1000), _last_id_ms + 1)
        _last_id_ms = millis
    return new_id("txn", now_ms=millis)


class FundsExhaustedError(Exception):
    """A guarded account would pass its ceiling (internal: the caller refuses the spend)."""


@dataclass(frozen=True)
class PostingMeta:
    """What the ledger keeps next to a transaction for filters and traceability."""

    workspace_id: str
    conversion_id: str | None = None
    advertiser_id: str | None = None
    publisher_id: str | None = None
    event_at: datetime | None = None


@dataclass(frozen=True)
class StoredTransaction:
    """A posted transaction with the columns that are not part of the domain object."""

    txn: Transaction
    conversion_id: str | None
    advertiser_id: str | None
    publisher_id: str | None
    event_at: datetime | None


def once_key(txn: Transaction) -> str:
    """The unique key that carries the Journal's refusal of a repeated posting."""
    if txn.kind in (TransactionKind.CHARGE, TransactionKind.TOPUP, TransactionKind.PAYOUT):
        return f"{txn.kind.value}:{txn.reference}"
    if txn.kind is TransactionKind.APPROVAL:
        return f"approval:{txn.reverses}"
    return f"reverse:{txn.reverses}"


def account_of_key(key: str) -> Account:
    """The Account an entry row names (`advertiser:adv_...` or `cash`)."""
    kind, _, owner = key.partition(":")
    return Account(AccountKind(kind), owner or None)


def _upsert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _insert_new(conn: Connection, statement: Any, column: Any) -> bool:
    """Run an INSERT that skips an existing key; True when the row is new.

    RETURNING tells reliably on both databases (psycopg reports no rowcount for
    INSERT ... ON CONFLICT DO NOTHING).
    """
    return conn.execute(statement.on_conflict_do_nothing().returning(column)).first() is not None


@dataclass(frozen=True)
class _Sql:
    """The statements of the posting path, built once per dialect with bound parameters.

    Building a SQLAlchemy statement and its cache key cost more than running it on SQLite
    (bench/billing.py); a prebuilt statement keeps its key, so each conversion pays only
    for execution.
    """

    find_once: Any
    insert_txn: Any
    insert_entries: Any
    add_balances: Any
    reserve_balance: Any
    read_balance: Any
    new_balance: Any
    read_counters: Any
    read_counter: Any
    bump_counter: Any
    bump_counter_capped: Any
    new_counter: Any


@lru_cache(maxsize=4)
def _sql(dialect: str) -> _Sql:
    upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    balances, counters, txns = ledger_balances, spend_counters, ledger_transactions
    balance_key = and_(
        balances.c.workspace_id == bindparam("b_ws"),
        balances.c.account == bindparam("b_account"),
        balances.c.currency == bindparam("b_currency"),
    )
    counter_key = and_(
        counters.c.campaign_id == bindparam("b_campaign"),
        counters.c.limit_id == bindparam("b_limit"),
        counters.c.subject == bindparam("b_subject"),
        counters.c.bucket == bindparam("b_bucket"),
    )
    add = upsert(balances)
    bump = counters.c.value + bindparam("b_amount")
    return _Sql(
        find_once=select(txns.c.txn_id).where(
            txns.c.workspace_id == bindparam("b_ws"), txns.c.once_key == bindparam("b_key")
        ),
        insert_txn=insert(txns),
        insert_entries=insert(ledger_entries),
        add_balances=add.on_conflict_do_update(
            index_elements=[balances.c.workspace_id, balances.c.account, balances.c.currency],
            set_={"minor": balances.c.minor + add.excluded.minor},
        ),
        reserve_balance=update(balances)
        .where(balance_key, balances.c.minor + bindparam("b_delta") <= bindparam("b_ceiling"))
        .values(minor=balances.c.minor + bindparam("b_delta")),
        read_balance=select(balances.c.minor).where(balance_key),
        new_balance=upsert(balances).on_conflict_do_nothing().returning(balances.c.account),
        read_counters=select(
            counters.c.limit_id, counters.c.subject, counters.c.bucket, counters.c.value
        ).where(
            counters.c.campaign_id == bindparam("b_campaign"),
            tuple_(counters.c.limit_id, counters.c.subject, counters.c.bucket).in_(
                bindparam("b_keys", expanding=True)
            ),
        ),
        read_counter=select(counters.c.value).where(counter_key),
        bump_counter=update(counters)
        .where(counter_key)
        .values(value=bump, updated_at=bindparam("b_now")),
        bump_counter_capped=update(counters)
        .where(counter_key, bump <= bindparam("b_ceiling"))
        .values(value=bump, updated_at=bindparam("b_now")),
        new_counter=upsert(counters).on_conflict_do_nothing().returning(counters.c.campaign_id),
    )


def _add_to_balance(
    conn: Connection, workspace_id: str, entry: Entry, ceiling: int | None = None
) -> bool:
    """Add an entry to its account's running balance if that does not pass `ceiling`.

    One conditional UPDATE reserves the money: concurrent writers queue on the row lock and
    each re-checks the condition against the committed balance.
    """
    sql = _sql(conn.dialect.name)
    key = {"b_ws": workspace_id, "b_account": entry.account.key, "b_currency": entry.currency}
    if ceiling is None:
        row = {"workspace_id": workspace_id, "account": entry.account.key,
               "currency": entry.currency, "minor": entry.minor}  # fmt: skip
        conn.execute(sql.add_balances, [row])
        return True
    if conn.execute(sql.reserve_balance, {**key, "b_delta": entry.minor,
                                          "b_ceiling": ceiling}).rowcount == 1:  # fmt: skip
        return True
    if conn.execute(sql.read_balance, key).first() is not None or entry.minor > ceiling:
        return False
    row = {"workspace_id": workspace_id, "account": entry.account.key,
           "currency": entry.currency, "minor": entry.minor}  # fmt: skip
    inserted = conn.execute(sql.new_balance, row).first() is not None
    return inserted or _add_to_balance(conn, workspace_id, entry, ceiling)


def post_transaction(
    conn: Connection,
    txn: Transaction,
    meta: PostingMeta,
    *,
    ceilings: Mapping[str, int] | None = None,
) -> bool:
    """Store `txn`, its entries and balances; False (nothing written) if it was already posted.

    `ceilings` maps account keys to the highest debit balance they may reach (an
    advertiser's credit limit); passing one raises FundsExhaustedError before any write.
    """
    sql = _sql(conn.dialect.name)
    key = once_key(txn)
    if find_by_once_key(conn, meta.workspace_id, key) is not None:
        return False
    guarded = ceilings or {}
    for entry in txn.entries:
        ceiling = guarded.get(entry.account.key)
        if ceiling is not None and not _add_to_balance(conn, meta.workspace_id, entry, ceiling):
            raise FundsExhaustedError(entry.account.key)
    conn.execute(
        sql.insert_txn,
        {
            "txn_id": txn.txn_id,
            "workspace_id": meta.workspace_id,
            "kind": txn.kind.value,
            "once_key": key,
            "reference": txn.reference,
            "reverses": txn.reverses,
            "occurred_at": txn.occurred_at,
            "event_at": meta.event_at,
            "currency": txn.currency,
            "campaign_id": txn.campaign_id,
            "goal_id": txn.goal_id,
            "event": txn.event.value if txn.event is not None else None,
            "quantity": txn.quantity,
            "conversion_id": meta.conversion_id,
            "advertiser_id": meta.advertiser_id,
            "publisher_id": meta.publisher_id,
            "memo": txn.memo[:500],
        },
    )
    conn.execute(
        sql.insert_entries,
        [
            {
                "txn_id": txn.txn_id,
                "line": line,
                "workspace_id": meta.workspace_id,
                "account": entry.account.key,
                "currency": entry.currency,
                "minor": entry.minor,
                "occurred_at": txn.occurred_at,
            }
            for line, entry in enumerate(txn.entries)
        ],
    )
    free = [entry for entry in txn.entries if entry.account.key not in guarded]
    if free:
        conn.execute(
            sql.add_balances,
            [
                {"workspace_id": meta.workspace_id, "account": entry.account.key,
                 "currency": entry.currency, "minor": entry.minor}
                for entry in free
            ],
        )  # fmt: skip
    return True


def find_by_once_key(conn: Connection, workspace_id: str, key: str) -> str | None:
    """The id of the transaction posted under `key`, if any."""
    found = conn.execute(_sql(conn.dialect.name).find_once, {"b_ws": workspace_id, "b_key": key})
    value = found.scalar_one_or_none()
    return None if value is None else str(value)


def _stored(
    rows: Sequence[RowMapping], entries: Mapping[str, list[Entry]]
) -> list[StoredTransaction]:
    result = []
    for row in rows:
        txn = Transaction(
            txn_id=row["txn_id"],
            kind=TransactionKind(row["kind"]),
            occurred_at=utc(row["occurred_at"]),
            entries=tuple(entries[row["txn_id"]]),
            reference=row["reference"],
            reverses=row["reverses"],
            campaign_id=row["campaign_id"],
            goal_id=row["goal_id"],
            event=BillableEvent(row["event"]) if row["event"] else None,
            quantity=row["quantity"],
            memo=row["memo"],
        )
        event_at = utc(row["event_at"]) if row["event_at"] is not None else None
        result.append(
            StoredTransaction(
                txn, row["conversion_id"], row["advertiser_id"], row["publisher_id"], event_at
            )
        )
    return result


def _load(conn: Connection, query: Select[Any]) -> list[StoredTransaction]:
    rows = conn.execute(query).mappings().all()
    if not rows:
        return []
    ids = [row["txn_id"] for row in rows]
    entries: dict[str, list[Entry]] = {txn_id: [] for txn_id in ids}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for entry in conn.execute(
            select(ledger_entries)
            .where(ledger_entries.c.txn_id.in_(chunk))
            .order_by(ledger_entries.c.txn_id, ledger_entries.c.line)
        ).mappings():
            entries[entry["txn_id"]].append(
                Entry(account_of_key(entry["account"]), entry["currency"], int(entry["minor"]))
            )
    return _stored(rows, entries)


def select_transactions(
    conn: Connection,
    workspace_id: str,
    *,
    account: str | None = None,
    kinds: Iterable[str] | None = None,
    campaign_id: str | None = None,
    conversion_id: str | None = None,
    advertiser_id: str | None = None,
    publisher_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int | None = None,
) -> list[StoredTransaction]:
    """Posted transactions in posting order, filtered; `after` is a (time, id) page cursor."""
    table = ledger_transactions
    query = select(table).where(table.c.workspace_id == workspace_id)
    if account is not None:
        query = query.where(
            exists().where(
                ledger_entries.c.txn_id == table.c.txn_id, ledger_entries.c.account == account
            )
        )
    if kinds is not None:
        query = query.where(table.c.kind.in_(list(kinds)))
    for column, value in (
        (table.c.campaign_id, campaign_id),
        (table.c.conversion_id, conversion_id),
        (table.c.advertiser_id, advertiser_id),
        (table.c.publisher_id, publisher_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(table.c.occurred_at >= since)
    if until is not None:
        query = query.where(table.c.occurred_at < until)
    if after is not None:
        moment, txn_id = after
        query = query.where(
            or_(
                table.c.occurred_at > moment,
                and_(table.c.occurred_at == moment, table.c.txn_id > txn_id),
            )
        )
    query = query.order_by(*_HISTORY_ORDER)
    if limit is not None:
        query = query.limit(limit)
    return _load(conn, query)


def get_transaction(conn: Connection, workspace_id: str, txn_id: str) -> StoredTransaction | None:
    """One posted transaction of the workspace, or None."""
    found = _load(
        conn,
        select(ledger_transactions).where(
            ledger_transactions.c.workspace_id == workspace_id,
            ledger_transactions.c.txn_id == txn_id,
        ),
    )
    return found[0] if found else None


def conversions_with_transactions(
    conn: Connection, conversions: Iterable[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which (workspace id, conversion id) pairs have any transaction posted, in one read
    per 500 ids (a batch of new conversions usually has none)."""
    wanted = set(conversions)
    ids = sorted({conversion_id for _, conversion_id in wanted})
    found: set[tuple[str, str]] = set()
    table = ledger_transactions
    for start in range(0, len(ids), 500):
        rows = conn.execute(
            select(table.c.workspace_id, table.c.conversion_id)
            .where(table.c.conversion_id.in_(ids[start : start + 500]))
            .distinct()
        ).all()
        found.update((str(row[0]), str(row[1])) for row in rows)
    return found & wanted


def charges_of_conversion(
    conn: Connection, workspace_id: str, conversion_id: str
) -> list[StoredTransaction]:
    """Every transaction posted for a conversion (charges and their follow-ups), oldest first."""
    return select_transactions(conn, workspace_id, conversion_id=conversion_id)


def follow_ups(conn: Connection, workspace_id: str, txn_id: str) -> list[str]:
    """Kinds of the transactions that point at `txn_id` (approval, reversal, clawback...)."""
    return [
        str(kind)
        for kind in conn.execute(
            select(ledger_transactions.c.kind).where(
                ledger_transactions.c.workspace_id == workspace_id,
                ledger_transactions.c.reverses == txn_id,
            )
        ).scalars()
    ]


def account_balance(conn: Connection, workspace_id: str, account: str, currency: str) -> int:
    """The running balance of one account (debit positive), 0 when it never moved."""
    params = {"b_ws": workspace_id, "b_account": account, "b_currency": currency}
    value = conn.execute(_sql(conn.dialect.name).read_balance, params).scalar_one_or_none()
    return int(value or 0)


def all_balances(conn: Connection, workspace_id: str) -> dict[tuple[str, str], int]:
    """Every running balance of the workspace: (account key, currency) -> minor units."""
    rows = conn.execute(
        select(ledger_balances).where(ledger_balances.c.workspace_id == workspace_id)
    ).mappings()
    return {(row["account"], row["currency"]): int(row["minor"]) for row in rows}


def _counter_params(key: CounterKey) -> dict[str, str]:
    return {"b_campaign": key.campaign_id, "b_limit": key.limit_id, "b_subject": key.subject,
            "b_bucket": key.bucket}  # fmt: skip


def read_counters(conn: Connection, keys: Iterable[CounterKey]) -> dict[CounterKey, int]:
    """The stored value of each counter (missing counters are left out: they are 0)."""
    by_campaign: dict[str, set[CounterKey]] = {}
    for key in keys:
        by_campaign.setdefault(key.campaign_id, set()).add(key)
    result: dict[CounterKey, int] = {}
    statement = _sql(conn.dialect.name).read_counters
    for campaign_id, wanted in by_campaign.items():
        rows = conn.execute(
            statement,
            {
                "b_campaign": campaign_id,
                "b_keys": [(key.limit_id, key.subject, key.bucket) for key in wanted],
            },
        )
        for row in rows:
            result[CounterKey(campaign_id, row.limit_id, row.subject, row.bucket)] = int(row.value)
    return result


def add_to_counter(
    conn: Connection,
    workspace_id: str,
    key: CounterKey,
    amount: int,
    ceiling: int | None,
    now: datetime,
) -> bool:
    """Add `amount` to a counter unless it would pass `ceiling`; True when it was added.

    The condition is part of the UPDATE, so two writers can never both take the last unit.
    """
    sql = _sql(conn.dialect.name)
    params: dict[str, Any] = {**_counter_params(key), "b_amount": amount, "b_now": now}
    if ceiling is None:
        changed = conn.execute(sql.bump_counter, params)
    else:
        changed = conn.execute(sql.bump_counter_capped, {**params, "b_ceiling": ceiling})
    if changed.rowcount == 1:
        return True
    if conn.execute(sql.read_counter, _counter_params(key)).first() is not None:
        return False
    if ceiling is not None and amount > ceiling:
        return False
    row = {"campaign_id": key.campaign_id, "limit_id": key.limit_id, "subject": key.subject,
           "bucket": key.bucket, "workspace_id": workspace_id, "value": amount,
           "updated_at": now}  # fmt: skip
    inserted = conn.execute(sql.new_counter, row).first() is not None
    return inserted or add_to_counter(conn, workspace_id, key, amount, ceiling, now)


def release_counter(conn: Connection, key: CounterKey, amount: int, now: datetime) -> None:
    """Take `amount` off a counter (a reversed spend), never below zero."""
    conn.execute(
        update(spend_counters)
        .where(
            spend_counters.c.campaign_id == key.campaign_id,
            spend_counters.c.limit_id == key.limit_id,
            spend_counters.c.subject == key.subject,
            spend_counters.c.bucket == key.bucket,
        )
        .values(
            value=case((spend_counters.c.value > amount, spend_counters.c.value - amount), else_=0),
            updated_at=now,
        )
    )


def billed_decisions(conn: Connection, event_ids: Sequence[str]) -> dict[str, str | None]:
    """For clicks/impressions already decided: event id -> charge txn id (None: not charged)."""
    result: dict[str, str | None] = {}
    for start in range(0, len(event_ids), 500):
        chunk = list(event_ids[start : start + 500])
        for row in conn.execute(
            select(billed_events.c.event_id, billed_events.c.txn_id).where(
                billed_events.c.event_id.in_(chunk)
            )
        ):
            result[row.event_id] = row.txn_id
    return result


def record_billed(
    conn: Connection,
    workspace_id: str,
    campaign_id: str,
    decisions: Mapping[str, str | None],
    now: datetime,
) -> None:
    """Remember the charge (or None) of each click/impression, so a redone batch reuses it."""
    if decisions:
        conn.execute(
            insert(billed_events),
            [
                {
                    "event_id": event_id,
                    "workspace_id": workspace_id,
                    "campaign_id": campaign_id,
                    "txn_id": txn_id,
                    "billed_at": now,
                }
                for event_id, txn_id in decisions.items()
            ],
        )


def allocate_statement_number(conn: Connection, workspace_id: str, kind: str, year: int) -> int:
    """The next sequence of a gapless (workspace, kind, year) series, under the row's lock."""
    table = statement_sequences
    match = and_(table.c.workspace_id == workspace_id, table.c.kind == kind, table.c.year == year)
    bumped = conn.execute(
        update(table).where(match).values(last_sequence=table.c.last_sequence + 1)
    )
    if bumped.rowcount == 0:
        statement = _upsert(conn)(table).values(
            workspace_id=workspace_id, kind=kind, year=year, last_sequence=1
        )
        if _insert_new(conn, statement, table.c.year):
            return 1
        return allocate_statement_number(conn, workspace_id, kind, year)
    return int(conn.execute(select(table.c.last_sequence).where(match)).scalar_one())


def insert_statement(conn: Connection, values: Mapping[str, Any]) -> None:
    """Store an issued statement (never updated afterwards)."""
    conn.execute(insert(billing_statements).values(**values))


def payout_covers(conn: Connection, workspace_id: str, publisher_id: str, at: datetime) -> bool:
    """Whether an issued payout statement of the publisher covers the instant `at`."""
    table = billing_statements
    found = conn.execute(
        select(func.count())
        .select_from(table)
        .where(
            table.c.workspace_id == workspace_id,
            table.c.kind == "payout",
            table.c.party_id == publisher_id,
            table.c.period_start <= at,
            table.c.period_end > at,
        )
    ).scalar_one()
    return bool(found)


def campaign_holds(conn: Connection, workspace_id: str | None = None) -> list[dict[str, Any]]:
    """Campaigns billing capped or paused (all workspaces when none is given)."""
    query = select(billing_holds)
    if workspace_id is not None:
        query = query.where(billing_holds.c.workspace_id == workspace_id)
    return [dict(row) for row in conn.execute(query.order_by(billing_holds.c.since)).mappings()]


def campaign_hold(conn: Connection, campaign_id: str) -> dict[str, Any] | None:
    """Why billing holds this campaign, or None."""
    row = (
        conn.execute(select(billing_holds).where(billing_holds.c.campaign_id == campaign_id))
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def put_hold(
    conn: Connection,
    *,
    workspace_id: str,
    campaign_id: str,
    status: str,
    reason: str,
    until: datetime | None,
    now: datetime,
) -> None:
    """Record (or replace) why billing holds a campaign and when to look again."""
    statement = _upsert(conn)(billing_holds).values(
        campaign_id=campaign_id,
        workspace_id=workspace_id,
        status=status,
        reason=reason[:200],
        until=until,
        since=now,
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[billing_holds.c.campaign_id],
            set_={"status": status, "reason": reason[:200], "until": until},
        )
    )


def delete_hold(conn: Connection, campaign_id: str) -> None:
    """Forget a campaign's billing hold."""
    conn.execute(billing_holds.delete().where(billing_holds.c.campaign_id == campaign_id))
