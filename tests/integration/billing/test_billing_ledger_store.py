"""The stored ledger: behaves like the reference Journal, always balances, never changes a row."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.schema import (
    ledger_balances,
    ledger_entries,
    ledger_transactions,
    workspaces,
)
from perfmark.billing import store
from perfmark.billing.domain.ledger import (
    Journal,
    Transaction,
    build_approval,
    build_charge,
    build_payout,
    build_reversal,
    build_topup,
)
from perfmark.domain.pricing import BillableEvent
from perfmark.errors import ConflictError
from perfmark.ids import new_id
from perfmark.money import Money
from perfmark.services.container import Container

START = datetime(2026, 1, 5, tzinfo=UTC)
ADVERTISERS = ("adv_a", "adv_b")
PUBLISHERS = ("pub_x", "pub_y")


def new_workspace(container: Container) -> str:
    workspace_id = new_id("ws")
    with transaction(container.engine) as conn:
        conn.execute(
            insert(workspaces).values(
                id=workspace_id,
                name="ledger test",
                data={"name": "ledger test"},
                created_at=START,
                updated_at=START,
                version=1,
            )
        )
    return workspace_id


# One step of a history: (operation, index of the party or of the earlier charge, amounts).
step = st.tuples(
    st.sampled_from(["topup", "charge", "approve", "reverse", "payout", "repeat"]),
    st.integers(0, 50),
    st.integers(0, 50_000),
    st.integers(0, 50_000),
    st.booleans(),
)


def _build(
    operation: str,
    pick: int,
    first: int,
    second: int,
    flag: bool,
    posted: list[Transaction],
    charges: list[Transaction],
    reversed_ids: set[str],
    at: datetime,
) -> Transaction | None:
    money = Decimal(first) / 100
    if operation == "topup":
        return build_topup(ADVERTISERS[pick % 2], Money(money + 1, "USD"),
                           reference=f"wire-{pick % 7}", occurred_at=at)  # fmt: skip
    if operation == "charge":
        cost, payout = sorted((Decimal(first) / 1000, Decimal(second) / 1000))[::-1]
        return build_charge(
            advertiser_id=ADVERTISERS[pick % 2], publisher_id=PUBLISHERS[pick % 2],
            cost=Money(cost, "USD"), payout=Money(payout, "USD"),
            event=BillableEvent.CONVERSION, reference=f"cnv_{pick % 13}", occurred_at=at,
            campaign_id="cmp_1", goal_id="goal_1", on_hold=flag,
        )  # fmt: skip
    if operation == "payout":
        return build_payout(PUBLISHERS[pick % 2], Money(money + 1, "USD"),
                            reference=f"stm-{pick % 5}", occurred_at=at)  # fmt: skip
    if operation == "repeat" and posted:
        return posted[pick % len(posted)]  # the very same transaction again
    if not charges:
        return None
    # The services approve only held charges that were not reversed (the store's unique
    # keys then refuse a second approval); draw from those.
    held = [c for c in charges if c.entries[1].account.kind == "publisher_pending"]
    held = [c for c in held if c.txn_id not in reversed_ids]
    if operation == "approve" and held:
        return build_approval(held[pick % len(held)], occurred_at=at)
    return None


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=st.lists(step, min_size=1, max_size=25))
def test_the_stored_ledger_posts_and_refuses_exactly_like_the_journal(
    any_container: Container, history: list[tuple[str, int, int, int, bool]]
) -> None:
    workspace_id = new_workspace(any_container)
    journal = Journal()
    posted: list[Transaction] = []
    charges: list[Transaction] = []
    approved: set[str] = set()
    at = START
    with transaction(any_container.engine) as conn:
        for operation, pick, first, second, flag in history:
            at += timedelta(minutes=1)
            txn: Transaction | None
            if operation == "reverse":
                live = [c for c in charges if not journal.is_reversed(c.txn_id)]
                if not live:
                    continue
                charge = live[pick % len(live)]
                held = charge.entries[1].account.kind == "publisher_pending"
                was_approved = charge.txn_id in approved
                txn = build_reversal(
                    charge, approved=was_approved, occurred_at=at, reason="refunded",
                    publisher_paid=flag and (not held or was_approved),
                )  # fmt: skip
            else:
                reversed_ids = {c.txn_id for c in charges if journal.is_reversed(c.txn_id)}
                txn = _build(
                    operation, pick, first, second, flag, posted, charges, reversed_ids, at
                )
            if txn is None:
                continue
            try:
                journal.post(txn)
                expected = True
            except ConflictError:
                expected = False
            got = store.post_transaction(conn, txn, store.PostingMeta(workspace_id))
            assert got == expected, (operation, txn.kind, txn.reference)
            if got:
                posted.append(txn)
                if txn.kind.value == "charge":
                    charges.append(txn)
                if txn.kind.value == "approval":
                    approved.add(txn.reverses or "")
        stored = {
            (store.account_of_key(account), currency): minor
            for (account, currency), minor in store.all_balances(conn, workspace_id).items()
            if minor != 0
        }
        assert stored == {key: value for key, value in journal.balances().items() if value}
        # Every transaction balances in the entries table itself, and so does the whole ledger.
        sums = conn.execute(
            select(ledger_entries.c.txn_id, func.sum(ledger_entries.c.minor))
            .where(ledger_entries.c.workspace_id == workspace_id)
            .group_by(ledger_entries.c.txn_id)
        ).all()
        assert len(sums) == len(posted) and all(total == 0 for _txn, total in sums)
        total = conn.execute(
            select(func.coalesce(func.sum(ledger_balances.c.minor), 0)).where(
                ledger_balances.c.workspace_id == workspace_id
            )
        ).scalar_one()
        assert total == 0
        # A reversed charge nets to zero on every account with its approval and reversal.
        for charge in charges:
            if not journal.is_reversed(charge.txn_id):
                continue
            net: dict[str, int] = defaultdict(int)
            for item in store.select_transactions(conn, workspace_id):
                if charge.txn_id in (item.txn.txn_id, item.txn.reverses):
                    for entry in item.txn.entries:
                        net[entry.account.key] += entry.minor
            assert set(net.values()) == {0}, net


def _posted_charge(container: Container) -> tuple[str, Transaction]:
    workspace_id = new_workspace(container)
    charge = build_charge(
        advertiser_id="adv_a", publisher_id="pub_x", cost=Money.of("10", "USD"),
        payout=Money.of("7", "USD"), event=BillableEvent.CONVERSION, reference="cnv_1",
        occurred_at=START, campaign_id="cmp_1",
    )  # fmt: skip
    with transaction(container.engine) as conn:
        assert store.post_transaction(conn, charge, store.PostingMeta(workspace_id))
    return workspace_id, charge


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entries SET minor = minor + 1",
        "DELETE FROM ledger_entries",
        "UPDATE ledger_transactions SET memo = 'edited'",
        "DELETE FROM ledger_transactions",
    ],
)
def test_ledger_rows_cannot_be_edited_or_deleted(any_container: Container, statement: str) -> None:
    _posted_charge(any_container)
    with pytest.raises(DBAPIError, match="immutable"), transaction(any_container.engine) as conn:
        conn.execute(text(statement))


def test_the_database_refuses_a_second_charge_of_the_same_reference(
    any_container: Container,
) -> None:
    workspace_id, charge = _posted_charge(any_container)
    twin = build_charge(
        advertiser_id="adv_a", publisher_id="pub_x", cost=Money.of("1", "USD"),
        payout=Money.of("0", "USD"), event=BillableEvent.CONVERSION, reference="cnv_1",
        occurred_at=START, campaign_id="cmp_1",
    )  # fmt: skip
    with transaction(any_container.engine) as conn:
        assert not store.post_transaction(conn, twin, store.PostingMeta(workspace_id))
    # Even a writer that skips the check cannot: the unique key is in the database.
    with pytest.raises(IntegrityError), transaction(any_container.engine) as conn:
        conn.execute(
            insert(ledger_transactions).values(
                txn_id=twin.txn_id,
                workspace_id=workspace_id,
                kind="charge",
                once_key=store.once_key(twin),
                reference="cnv_1",
                occurred_at=START,
                currency="USD",
                quantity=1,
                memo="",
            )
        )
    assert charge.reference == twin.reference
