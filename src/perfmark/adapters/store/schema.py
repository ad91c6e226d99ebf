"""Table definitions of the store; Alembic migrations are written against this metadata."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "RESOURCE_TABLES",
    "advertisers",
    "api_keys",
    "campaigns",
    "clicks",
    "config_version",
    "conversions",
    "cost_entries",
    "exchange_rates",
    "goals",
    "idempotency_keys",
    "identities",
    "links",
    "metadata",
    "offers",
    "publishers",
    "users",
    "workspaces",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(32)


def _timestamps() -> list[Column[object]]:
    return [
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("archived_at", DateTime(timezone=True), nullable=True),
        Column("version", Integer, nullable=False, default=1),
    ]


workspaces = Table(
    "workspaces",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("data", JSON, nullable=False),
    *_timestamps(),
    Column("write_key", String(64), nullable=True, unique=True),
)


def _resource(name: str, *columns: Column[object] | Index | UniqueConstraint) -> Table:
    """A workspace-owned object: indexed columns for filters, the full spec as JSON."""
    return Table(
        name,
        metadata,
        Column("id", ID, primary_key=True),
        Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False, index=True),
        Column("name", String(200), nullable=False),
        Column("data", JSON, nullable=False),
        *_timestamps(),
        *columns,
    )


advertisers = _resource(
    "advertisers",
    Column("currency", String(3), nullable=False),
    Column("postback_secret", String(128), nullable=False),
)
publishers = _resource(
    "publishers",
    Column("channel", String(32), nullable=False, index=True),
    Column("postback_secret", String(128), nullable=False),
)
offers = _resource(
    "offers", Column("advertiser_id", ID, ForeignKey("advertisers.id"), nullable=False)
)
goals = _resource(
    "goals",
    Column("key", String(64), nullable=False),
    Column("advertiser_id", ID, ForeignKey("advertisers.id"), nullable=True),
    UniqueConstraint("workspace_id", "key", name="uq_goals_workspace_key"),
)
campaigns = _resource(
    "campaigns",
    Column("advertiser_id", ID, ForeignKey("advertisers.id"), nullable=False, index=True),
    Column("offer_id", ID, ForeignKey("offers.id"), nullable=False),
    Column("channel", String(32), nullable=False, index=True),
    Column("status", String(16), nullable=False, index=True),
)
links = _resource(
    "links",
    Column("campaign_id", ID, ForeignKey("campaigns.id"), nullable=False, index=True),
    Column("publisher_id", ID, ForeignKey("publishers.id"), nullable=False, index=True),
    Column("slug", String(64), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
)
users = _resource(
    "users",
    Column("email", String(320), nullable=False),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(256), nullable=True),
    UniqueConstraint("workspace_id", "email", name="uq_users_workspace_email"),
)

#: Tables of the generic resources, by resource name.
RESOURCE_TABLES = {
    "advertisers": advertisers,
    "publishers": publishers,
    "offers": offers,
    "goals": goals,
    "campaigns": campaigns,
    "links": links,
    "users": users,
}

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", ID, primary_key=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("advertiser_id", ID, nullable=True),
    Column("publisher_id", ID, nullable=True),
    Column("lookup", String(16), nullable=False, index=True),
    Column("digest", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("workspace_id", ID, primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_fingerprint", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response_body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

clicks = Table(
    "clicks",
    metadata,
    Column("click_id", ID, primary_key=True),
    Column("workspace_id", ID, nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("campaign_id", ID, nullable=False),
    Column("publisher_id", ID, nullable=False),
    Column("advertiser_id", ID, nullable=False),
    Column("link_id", ID, nullable=False),
    Column("visitor_id", String(64), nullable=True),
    Column("is_bot", Boolean, nullable=False, default=False),
    Column("data", JSON, nullable=False),
    Index("ix_clicks_visitor", "workspace_id", "visitor_id", "ts"),
)

conversions = Table(
    "conversions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("workspace_id", ID, nullable=False, index=True),
    Column("event_id", String(40), nullable=False, unique=True),
    Column("txid", String(128), nullable=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("goal_id", ID, nullable=True),
    Column("goal_key", String(64), nullable=False),
    Column("click_id", ID, nullable=True, index=True),
    Column("campaign_id", ID, nullable=True, index=True),
    Column("publisher_id", ID, nullable=True),
    Column("advertiser_id", ID, nullable=True),
    Column("visitor_id", String(64), nullable=True),
    Column("customer_id", String(128), nullable=True),
    Column("value", Numeric(20, 6), nullable=True),
    Column("currency", String(3), nullable=True),
    Column("status", String(16), nullable=False),
    Column("source", String(16), nullable=False),
    Column("is_bot", Boolean, nullable=False, default=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("data", JSON, nullable=False),
    UniqueConstraint("workspace_id", "txid", name="uq_conversions_workspace_txid"),
)

identities = Table(
    "identities",
    metadata,
    Column("workspace_id", ID, primary_key=True),
    Column("visitor_id", String(128), primary_key=True),
    Column("customer_id", String(128), nullable=False, index=True),
    Column("ts", DateTime(timezone=True), nullable=False),
)

config_version = Table(
    "config_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
)

#: Ad-platform spend per campaign, day and source, replaced period by period on import.
#: Spend is kept in integer millionths of its currency: exact on SQLite and PostgreSQL alike.
cost_entries = Table(
    "cost_entries",
    metadata,
    Column("workspace_id", ID, ForeignKey("workspaces.id"), primary_key=True),
    Column("source", String(64), primary_key=True),
    Column("campaign_id", ID, ForeignKey("campaigns.id"), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("spend_micros", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("import_id", ID, nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Index("ix_cost_entries_workspace_day", "workspace_id", "day"),
)

#: Exchange rates of a workspace; `rate` is the exact decimal as text (no float on SQLite).
exchange_rates = Table(
    "exchange_rates",
    metadata,
    Column("workspace_id", ID, ForeignKey("workspaces.id"), primary_key=True),
    Column("base", String(3), primary_key=True),
    Column("quote", String(3), primary_key=True),
    Column("valid_from", DateTime(timezone=True), primary_key=True),
    Column("rate", String(64), nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
)
