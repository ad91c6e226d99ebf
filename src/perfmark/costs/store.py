"""The cost and exchange-rate tables: reads and writes on the caller's connection."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection, Sequence
from decimal import Decimal

from sqlalchemy import Connection, bindparam, delete, insert, select, text, tuple_

from perfmark.adapters.store.schema import campaigns, cost_entries, exchange_rates
from perfmark.billing.domain.pricing import ExchangeRate
from perfmark.clock import utc
from perfmark.costs.domain import CampaignRef, CostRow, ImportPeriod
from perfmark.money import currency_exponent

__all__ = [
    "CostCursor",
    "campaign_ids_of_advertiser",
    "campaign_refs",
    "lock_cost_source",
    "replace_costs",
    "select_costs",
    "select_rates",
    "spend_from_micros",
    "spend_to_micros",
    "upsert_rates",
]

#: Spend is stored as an integer count of millionths of the currency unit.
MICROS_PER_UNIT = Decimal(10) ** 6

#: The position after which a page of costs starts: (day, campaign id, source).
CostCursor = tuple[dt.date, str, str]


def spend_to_micros(spend: Decimal) -> int:
    """Exact millionths of a spend that has at most 6 decimals (checked when it was parsed)."""
    micros = spend * MICROS_PER_UNIT
    if micros != micros.to_integral_value():
        raise ValueError(f"spend {spend} has more than 6 decimals")
    return int(micros)


def spend_from_micros(micros: int, currency: str) -> Decimal:
    """The spend as a Decimal, shown with the currency's minor-unit decimals when exact."""
    amount = Decimal(micros).scaleb(-6)
    quantum = Decimal(1).scaleb(-currency_exponent(currency))
    shown = amount.quantize(quantum)
    return shown if shown == amount else amount.normalize()


def campaign_refs(conn: Connection, workspace_id: str) -> list[CampaignRef]:
    """Every campaign of the workspace (archived ones too: their past costs still count)."""
    rows = conn.execute(
        select(campaigns.c.id, campaigns.c.name, campaigns.c.archived_at).where(
            campaigns.c.workspace_id == workspace_id
        )
    )
    return [CampaignRef(row.id, row.name, row.archived_at is not None) for row in rows]


def campaign_ids_of_advertiser(
    conn: Connection, workspace_id: str, advertiser_id: str
) -> list[str]:
    """The ids of one advertiser's campaigns (what an advertiser key may see)."""
    return list(
        conn.execute(
            select(campaigns.c.id).where(
                campaigns.c.workspace_id == workspace_id,
                campaigns.c.advertiser_id == advertiser_id,
            )
        ).scalars()
    )


def lock_cost_source(conn: Connection, workspace_id: str, source: str) -> None:
    """Serialise imports of one workspace's source until the transaction ends.

    Without it, two PostgreSQL transactions importing the same period both delete nothing
    new and then collide on insert. SQLite needs nothing: its writers already take turns
    (BEGIN IMMEDIATE).
    """
    if conn.dialect.name != "postgresql":
        return
    digest = hashlib.blake2b(f"costs:{workspace_id}:{source}".encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def replace_costs(
    conn: Connection,
    workspace_id: str,
    source: str,
    period: ImportPeriod,
    rows: Sequence[CostRow],
    *,
    import_id: str,
    now: dt.datetime,
) -> int:
    """Delete the source's rows of the imported campaigns in the period, insert `rows`.

    Returns how many stored rows were deleted. Atomic only inside the caller's transaction.
    """
    campaign_ids = sorted({row.campaign_id for row in rows})
    deleted = conn.execute(
        delete(cost_entries).where(
            cost_entries.c.workspace_id == workspace_id,
            cost_entries.c.source == source,
            cost_entries.c.campaign_id.in_(campaign_ids),
            cost_entries.c.day >= period.start,
            cost_entries.c.day <= period.end,
        )
    ).rowcount
    if rows:
        conn.execute(
            insert(cost_entries),
            [
                {
                    "workspace_id": workspace_id,
                    "source": source,
                    "campaign_id": row.campaign_id,
                    "day": row.date,
                    "spend_micros": spend_to_micros(row.spend),
                    "currency": row.currency,
                    "import_id": import_id,
                    "imported_at": now,
                }
                for row in rows
            ],
        )
    return max(int(deleted), 0)


def select_costs(
    conn: Connection,
    workspace_id: str,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    campaign_ids: Collection[str] | None = None,
    source: str | None = None,
    after: CostCursor | None = None,
    limit: int | None = None,
) -> list[CostRow]:
    """Cost rows in (day, campaign, source) order, filtered; days from `start` to `end` included."""
    table = cost_entries
    query = select(
        table.c.day, table.c.campaign_id, table.c.source, table.c.spend_micros, table.c.currency
    ).where(table.c.workspace_id == workspace_id)
    if start is not None:
        query = query.where(table.c.day >= start)
    if end is not None:
        query = query.where(table.c.day <= end)
    if campaign_ids is not None:
        query = query.where(table.c.campaign_id.in_(sorted(campaign_ids)))
    if source is not None:
        query = query.where(table.c.source == source)
    if after is not None:
        query = query.where(tuple_(table.c.day, table.c.campaign_id, table.c.source) > after)
    query = query.order_by(table.c.day, table.c.campaign_id, table.c.source)
    if limit is not None:
        query = query.limit(limit)
    return [
        CostRow(
            date=row.day,
            campaign_id=row.campaign_id,
            source=row.source,
            spend=spend_from_micros(row.spend_micros, row.currency),
            currency=row.currency,
        )
        for row in conn.execute(query)
    ]


def upsert_rates(
    conn: Connection, workspace_id: str, rates: Sequence[ExchangeRate], now: dt.datetime
) -> int:
    """Store rates, replacing any of the same pair and start; returns how many were replaced."""
    table = exchange_rates
    pairs = {(rate.base, rate.quote) for rate in rates}
    existing: set[tuple[str, str, dt.datetime]] = set()
    for base, quote in sorted(pairs):
        for row in conn.execute(
            select(table.c.valid_from).where(
                table.c.workspace_id == workspace_id, table.c.base == base, table.c.quote == quote
            )
        ):
            existing.add((base, quote, utc(row.valid_from)))
    replaced = [rate for rate in rates if (rate.base, rate.quote, rate.valid_from) in existing]
    if replaced:
        conn.execute(
            delete(table).where(
                table.c.workspace_id == workspace_id,
                table.c.base == bindparam("b_base"),
                table.c.quote == bindparam("b_quote"),
                table.c.valid_from == bindparam("b_valid_from"),
            ),
            [
                {"b_base": rate.base, "b_quote": rate.quote, "b_valid_from": rate.valid_from}
                for rate in replaced
            ],
        )
    if rates:
        conn.execute(
            insert(table),
            [
                {
                    "workspace_id": workspace_id,
                    "base": rate.base,
                    "quote": rate.quote,
                    "valid_from": rate.valid_from,
                    "rate": str(rate.rate),
                    "imported_at": now,
                }
                for rate in rates
            ],
        )
    return len(replaced)


def select_rates(
    conn: Connection, workspace_id: str, *, base: str | None = None, quote: str | None = None
) -> list[ExchangeRate]:
    """The workspace's rates in (base, quote, valid_from) order, optionally of one currency."""
    table = exchange_rates
    query = select(table.c.base, table.c.quote, table.c.rate, table.c.valid_from).where(
        table.c.workspace_id == workspace_id
    )
    if base is not None:
        query = query.where(table.c.base == base)
    if quote is not None:
        query = query.where(table.c.quote == quote)
    query = query.order_by(table.c.base, table.c.quote, table.c.valid_from)
    return [
        ExchangeRate(row.base, row.quote, Decimal(row.rate), utc(row.valid_from))
        for row in conn.execute(query)
    ]
