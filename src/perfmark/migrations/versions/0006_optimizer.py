"""optimizer: rules, their targets and audit log, experiments, weight history, parked items

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 13:58:09.864375
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "optimize_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("target_kind", sa.String(length=16), nullable=False),
        sa.Column("target_id", sa.String(length=300), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_optimize_audit_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_optimize_audit")),
    )
    with op.batch_alter_table("optimize_audit", schema=None) as batch_op:
        batch_op.create_index("ix_optimize_audit_at", ["workspace_id", "at"], unique=False)
        batch_op.create_index(
            "ix_optimize_audit_source", ["workspace_id", "source_id", "at"], unique=False
        )

    op.create_table(
        "optimize_experiments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("campaign_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("next_allocation_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_optimize_experiments_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_optimize_experiments")),
    )
    with op.batch_alter_table("optimize_experiments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_optimize_experiments_due", ["status", "next_allocation_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_optimize_experiments_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "optimize_rules",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_optimize_rules_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_optimize_rules")),
    )
    with op.batch_alter_table("optimize_rules", schema=None) as batch_op:
        batch_op.create_index("ix_optimize_rules_due", ["enabled", "next_run_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_optimize_rules_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "optimize_rule_targets",
        sa.Column("rule_id", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=300), nullable=False),
        sa.Column("last_fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["optimize_rules.id"],
            name=op.f("fk_optimize_rule_targets_rule_id_optimize_rules"),
        ),
        sa.PrimaryKeyConstraint("rule_id", "target_id", name=op.f("pk_optimize_rule_targets")),
    )
    op.create_table(
        "optimize_weight_history",
        sa.Column("experiment_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("weights", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["optimize_experiments.id"],
            name=op.f("fk_optimize_weight_history_experiment_id_optimize_experiments"),
        ),
        sa.PrimaryKeyConstraint("experiment_id", "at", name=op.f("pk_optimize_weight_history")),
    )
    op.create_table(
        "optimize_parked_items",
        sa.Column("campaign_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_optimize_parked_items_campaign_id_campaigns"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_optimize_parked_items_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint(
            "campaign_id", "kind", "key", name=op.f("pk_optimize_parked_items")
        ),
    )


def downgrade() -> None:
    op.drop_table("optimize_parked_items")
    op.drop_table("optimize_weight_history")
    op.drop_table("optimize_rule_targets")
    with op.batch_alter_table("optimize_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_optimize_rules_workspace_id"))
        batch_op.drop_index("ix_optimize_rules_due")

    op.drop_table("optimize_rules")
    with op.batch_alter_table("optimize_experiments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_optimize_experiments_workspace_id"))
        batch_op.drop_index("ix_optimize_experiments_due")

    op.drop_table("optimize_experiments")
    with op.batch_alter_table("optimize_audit", schema=None) as batch_op:
        batch_op.drop_index("ix_optimize_audit_source")
        batch_op.drop_index("ix_optimize_audit_at")

    op.drop_table("optimize_audit")
