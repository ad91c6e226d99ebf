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
    "advertiser_webhooks",
    "advertisers",
    "api_keys",
    "billed_events",
    "billing_holds",
    "billing_statements",
    "campaigns",
    "clicks",
    "config_version",
    "conversions",
    "cost_entries",
    "exchange_rates",
    "goals",
    "idempotency_keys",
    "identities",
    "ledger_balances",
    "ledger_entries",
    "ledger_transactions",
    "links",
    "metadata",
    "offers",
    "postback_attempts",
    "postback_deliveries",
    "publishers",
    "sessions",
    "spend_counters",
    "statement_sequences",
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

# --- Billing (issue 6): ledger, spend counters, statements, outbound postbacks. -----------
# Money in these tables is signed integer minor units of the row's currency (exact on both
# databases); the migration adds triggers that refuse UPDATE and DELETE of ledger rows and
# issued statements.

#: One immutable, balanced ledger transaction. `once_key` carries the Journal's refusals as
#: one unique key per workspace: `charge:<reference>`, `topup:<reference>`,
#: `payout:<reference>`, `approval:<charge txn>`, `reverse:<txn>` (reversal, clawback or
#: correction), so a retried event is never charged twice and nothing is reversed twice.
ledger_transactions = Table(
    "ledger_transactions",
    metadata,
    Column("txn_id", ID, primary_key=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("once_key", String(160), nullable=False),
    Column("reference", String(128), nullable=False),
    Column("reverses", ID, ForeignKey("ledger_transactions.txn_id"), nullable=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("event_at", DateTime(timezone=True), nullable=True),
    Column("currency", String(3), nullable=False),
    Column("campaign_id", ID, nullable=True),
    Column("goal_id", ID, nullable=True),
    Column("event", String(16), nullable=True),
    Column("quantity", Integer, nullable=False),
    Column("conversion_id", ID, nullable=True),
    Column("advertiser_id", ID, nullable=True),
    Column("publisher_id", ID, nullable=True),
    Column("memo", String(500), nullable=False),
    UniqueConstraint("workspace_id", "once_key", name="uq_ledger_transactions_once_key"),
    Index("ix_ledger_transactions_workspace_occurred", "workspace_id", "occurred_at"),
    Index("ix_ledger_transactions_conversion", "conversion_id"),
    Index("ix_ledger_transactions_reverses", "reverses"),
)

#: The entries of a transaction (debit positive, credit negative), immutable.
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("txn_id", ID, ForeignKey("ledger_transactions.txn_id"), primary_key=True),
    Column("line", Integer, primary_key=True),
    Column("workspace_id", ID, nullable=False),
    Column("account", String(80), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("minor", BigInteger, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Index("ix_ledger_entries_account", "workspace_id", "account", "currency"),
)

#: Running balance of each account (the sum of its entries), updated with every posting so
#: a prepaid balance is reserved by one conditional UPDATE.
ledger_balances = Table(
    "ledger_balances",
    metadata,
    Column("workspace_id", ID, primary_key=True),
    Column("account", String(80), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("minor", BigInteger, nullable=False),
)

#: Budget and cap counters (money in minor units, counts as counts) per period bucket.
spend_counters = Table(
    "spend_counters",
    metadata,
    Column("campaign_id", ID, primary_key=True),
    Column("limit_id", String(160), primary_key=True),
    Column("subject", ID, primary_key=True),
    Column("bucket", String(16), primary_key=True),
    Column("workspace_id", ID, nullable=False),
    Column("value", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: Each click or impression the ledger has decided on: charged by `txn_id`, or not charged
#: (NULL: past a budget). A batch redone after a crash finds its events here.
billed_events = Table(
    "billed_events",
    metadata,
    Column("event_id", String(40), primary_key=True),
    Column("workspace_id", ID, nullable=False),
    Column("campaign_id", ID, nullable=False),
    Column("txn_id", ID, ForeignKey("ledger_transactions.txn_id"), nullable=True, index=True),
    Column("billed_at", DateTime(timezone=True), nullable=False),
)

#: Issued invoices and payout statements: numbered, immutable, with the digest of their CSV.
billing_statements = Table(
    "billing_statements",
    metadata,
    Column("id", ID, primary_key=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("party_id", ID, nullable=False),
    Column("number", String(32), nullable=False),
    Column("period_start", DateTime(timezone=True), nullable=False),
    Column("period_end", DateTime(timezone=True), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("body", JSON, nullable=False),
    Column("digest", String(64), nullable=False),
    UniqueConstraint("workspace_id", "number", name="uq_billing_statements_number"),
    UniqueConstraint(
        "workspace_id", "kind", "party_id", "period_start", name="uq_billing_statements_period"
    ),
    Index("ix_billing_statements_party", "workspace_id", "kind", "party_id", "period_end"),
)

#: The last number allocated in each gapless series (workspace, kind, year).
statement_sequences = Table(
    "statement_sequences",
    metadata,
    Column("workspace_id", ID, primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("last_sequence", Integer, nullable=False),
)

#: Campaigns that billing set to capped or paused, and when to look at them again.
billing_holds = Table(
    "billing_holds",
    metadata,
    Column("campaign_id", ID, primary_key=True),
    Column("workspace_id", ID, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(200), nullable=False),
    Column("until", DateTime(timezone=True), nullable=True),
    Column("since", DateTime(timezone=True), nullable=False),
)

#: Where an advertiser's conversion webhooks go (signed with its postback secret).
advertiser_webhooks = Table(
    "advertiser_webhooks",
    metadata,
    Column("advertiser_id", ID, primary_key=True),
    Column("workspace_id", ID, nullable=False),
    Column("url", String(2048), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: Outbound postbacks (to publishers) and webhooks (to advertisers) and their state.
postback_deliveries = Table(
    "postback_deliveries",
    metadata,
    Column("id", ID, primary_key=True),
    Column("workspace_id", ID, nullable=False),
    Column("dedupe_key", String(160), nullable=False),
    Column("target", String(16), nullable=False),
    Column("party_id", ID, nullable=False),
    Column("conversion_id", ID, nullable=True, index=True),
    Column("topic", String(32), nullable=False),
    Column("method", String(8), nullable=False),
    Column("url", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("total_attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(500), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("workspace_id", "dedupe_key", name="uq_postback_deliveries_dedupe_key"),
    Index("ix_postback_deliveries_due", "status", "next_attempt_at"),
)

#: The delivery log: one row per attempt.
postback_attempts = Table(
    "postback_attempts",
    metadata,
    Column("delivery_id", ID, ForeignKey("postback_deliveries.id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("error", String(500), nullable=False),
    Column("duration_ms", Integer, nullable=False),
)

#: Dashboard sign-ins. `id` is the SHA-256 digest of the cookie's token, so a copy of the
#: store cannot be replayed as a session; `csrf_token` is checked on every unsafe request.
sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", ID, ForeignKey("users.id"), nullable=False, index=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

# --- Optimizer (issue 8): automated rules, their audit log, experiments and bandit weights ---

__all__ += [
    "optimize_audit",
    "optimize_experiments",
    "optimize_parked_items",
    "optimize_rule_targets",
    "optimize_rules",
    "optimize_weight_history",
]

#: Automated rules: the rule as JSON; `next_run_at` is when the scheduler runs it next.
optimize_rules = Table(
    "optimize_rules",
    metadata,
    Column("id", ID, primary_key=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("data", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("next_run_at", DateTime(timezone=True), nullable=True),
    Column("last_run_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("archived_at", DateTime(timezone=True), nullable=True),
    Index("ix_optimize_rules_due", "enabled", "next_run_at"),
)

#: When a rule last fired on each target (its cooldown starts there).
optimize_rule_targets = Table(
    "optimize_rule_targets",
    metadata,
    Column("rule_id", ID, ForeignKey("optimize_rules.id"), primary_key=True),
    Column("target_id", String(300), primary_key=True),
    Column("last_fired_at", DateTime(timezone=True), nullable=False),
)

#: Every evaluation and action of rules, bandit allocations and the budget autopilot.
optimize_audit = Table(
    "optimize_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False),
    Column("source", String(16), nullable=False),
    Column("source_id", String(64), nullable=False),
    Column("target_kind", String(16), nullable=False),
    Column("target_id", String(300), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("status", String(32), nullable=False),
    Column("applied", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("data", JSON, nullable=False),
    Index("ix_optimize_audit_source", "workspace_id", "source_id", "at"),
    Index("ix_optimize_audit_at", "workspace_id", "at"),
)

#: A/B/n experiments over a campaign's landing pages or creatives, or over offers.
optimize_experiments = Table(
    "optimize_experiments",
    metadata,
    Column("id", ID, primary_key=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("campaign_id", ID, nullable=True),
    Column("status", String(16), nullable=False),
    Column("data", JSON, nullable=False),
    Column("next_allocation_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("archived_at", DateTime(timezone=True), nullable=True),
    Index("ix_optimize_experiments_due", "status", "next_allocation_at"),
)

#: The arms' rotation weights from each moment on (a sample-ratio check needs what was served).
optimize_weight_history = Table(
    "optimize_weight_history",
    metadata,
    Column("experiment_id", ID, ForeignKey("optimize_experiments.id"), primary_key=True),
    Column("at", DateTime(timezone=True), primary_key=True),
    Column("weights", JSON, nullable=False),
)

#: Landing pages and creatives a rule took out of a rotation, kept so a resume can restore them.
optimize_parked_items = Table(
    "optimize_parked_items",
    metadata,
    Column("campaign_id", ID, ForeignKey("campaigns.id"), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False),
    Column("data", JSON, nullable=False),
    Column("parked_at", DateTime(timezone=True), nullable=False),
)
