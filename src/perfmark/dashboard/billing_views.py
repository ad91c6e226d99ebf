"""Read-only billing figures for the partner pages: ledger balances and issued statements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.schema import ledger_balances
from perfmark.billing.domain.statements import StatementKind
from perfmark.billing.services.statements import list_statements
from perfmark.domain.accounts import Role
from perfmark.money import Money
from perfmark.services.container import Container, Principal

__all__ = ["PartyBalances", "StatementRow", "party_balances", "statements"]

#: Ledger account kinds (see docs/billing.md); balances are credit-normal, so shown negated.
_ADVERTISER = "advertiser"
_PENDING = "publisher_pending"
_PAYABLE = "publisher_payable"
STATEMENTS_SHOWN = 100


@dataclass(frozen=True)
class PartyBalances:
    """A party's ledger balances by account kind, as amounts owed to it (or, negative, by it)."""

    by_kind: dict[str, tuple[Money, ...]]

    def get(self, kind: str) -> tuple[Money, ...]:
        """The balances of one account kind (empty when it has none)."""
        return self.by_kind.get(kind, ())


def _own_party(principal: Principal) -> str | None:
    if principal.role is Role.ADVERTISER:
        return principal.advertiser_id or ""
    if principal.role is Role.PUBLISHER:
        return principal.publisher_id or ""
    return None


def party_balances(container: Container, principal: Principal) -> dict[str, PartyBalances]:
    """Ledger balances of advertisers and publishers by party id (a portal user: its own)."""
    own = _own_party(principal)
    with transaction(container.engine) as conn:
        rows = conn.execute(
            select(ledger_balances).where(ledger_balances.c.workspace_id == principal.workspace_id)
        ).mappings()
        found: dict[str, dict[str, list[Money]]] = {}
        for row in rows:
            kind, _, party = str(row["account"]).partition(":")
            if kind not in (_ADVERTISER, _PENDING, _PAYABLE) or (own is not None and party != own):
                continue
            # Credit-normal accounts: a credit (negative) balance is what the party is owed.
            amount = -Money.from_minor(int(row["minor"]), row["currency"])
            found.setdefault(party, {}).setdefault(kind, []).append(amount)
    return {
        party: PartyBalances({kind: tuple(amounts) for kind, amounts in kinds.items()})
        for party, kinds in found.items()
    }


@dataclass(frozen=True)
class StatementRow:
    """An issued invoice or payout statement as listed."""

    id: str
    kind: str
    party_id: str
    number: str
    period_start: datetime
    period_end: datetime
    issued_at: datetime
    amount_due: str


def statements(container: Container, principal: Principal, kind: str) -> tuple[StatementRow, ...]:
    """Issued statements of one kind (invoice or payout), newest first; portal users: own.

    Read through billing's own service, which scopes them and decodes their bodies.
    """
    page = list_statements(container, principal, StatementKind(kind), limit=STATEMENTS_SHOWN)
    rows = [
        StatementRow(
            id=issued.id,
            kind=issued.statement.kind.value,
            party_id=issued.statement.party_id,
            number=issued.statement.number or "",
            period_start=issued.statement.period_start,
            period_end=issued.statement.period_end,
            issued_at=issued.statement.issued_at or issued.statement.period_end,
            amount_due=", ".join(str(amount) for amount in issued.statement.amount_due),
        )
        for issued in page.items
    ]
    return tuple(sorted(rows, key=lambda row: row.issued_at, reverse=True))
