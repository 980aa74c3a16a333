"""subscriptions

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("follower_id", sa.BigInteger(), nullable=False),
        sa.Column("master_id", sa.BigInteger(), nullable=False),
        sa.Column("copy_strategy", sa.String(16), nullable=False),
        sa.Column("ratio", sa.Numeric(7, 4)),
        sa.Column("percentage", sa.Numeric(5, 2)),
        sa.Column("fixed_quantity", sa.BigInteger()),
        sa.Column("max_quantity", sa.BigInteger()),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("follower_id", "master_id", name="uq_subscriptions_follower_id_master_id"),
        sa.CheckConstraint(
            "copy_strategy IN ('FIXED_RATIO', 'PERCENTAGE', 'FIXED_QUANTITY')",
            name="ck_subscriptions_copy_strategy",
        ),
        sa.CheckConstraint("status IN ('ACTIVE', 'PAUSED')", name="ck_subscriptions_status"),
        sa.CheckConstraint("follower_id <> master_id", name="ck_subscriptions_not_self"),
        sa.CheckConstraint(
            "(copy_strategy = 'FIXED_RATIO') = (ratio IS NOT NULL)"
            " AND (copy_strategy = 'PERCENTAGE') = (percentage IS NOT NULL)"
            " AND (copy_strategy = 'FIXED_QUANTITY') = (fixed_quantity IS NOT NULL)",
            name="ck_subscriptions_one_parameter",
        ),
        sa.CheckConstraint("ratio > 0 AND ratio <= 100", name="ck_subscriptions_ratio_range"),
        sa.CheckConstraint("percentage > 0 AND percentage <= 100", name="ck_subscriptions_percentage_range"),
        sa.CheckConstraint("fixed_quantity >= 1", name="ck_subscriptions_fixed_quantity_positive"),
        sa.CheckConstraint("max_quantity >= 1", name="ck_subscriptions_max_quantity_positive"),
        schema="replicator",
    )
    op.create_index(
        "ix_subscriptions_master_id_status", "subscriptions", ["master_id", "status"], schema="replicator"
    )


def downgrade() -> None:
    op.drop_table("subscriptions", schema="replicator")
