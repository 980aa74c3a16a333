"""follower orders and fan-outs of the replication pipeline

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATUSES = "'PENDING', 'SUBMITTED', 'REJECTED', 'FAILED', 'SKIPPED'"


def upgrade() -> None:
    op.create_table(
        "fanouts",
        sa.Column("master_order_id", sa.BigInteger(), primary_key=True),
        sa.Column("master_user_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("state IN ('RUNNING', 'DONE')", name="ck_fanouts_state"),
        schema="replicator",
    )
    op.create_table(
        "follower_orders",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("master_order_id", sa.BigInteger(), nullable=False),
        sa.Column("follower_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger()),  # NULL: the follower had no linked account
        sa.Column("tag", sa.String(20), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("exchange", sa.String(8), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("order_type", sa.String(8), nullable=False),
        sa.Column("product", sa.String(8), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("price", sa.Numeric(18, 4)),
        sa.Column("trigger_price", sa.Numeric(18, 4)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.String(300), nullable=False, server_default=""),
        sa.Column("status_reason_code", sa.String(40), nullable=False, server_default=""),
        sa.Column("broker_order_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("latency_ms", sa.BigInteger()),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("sequence", sa.BigInteger(), nullable=False, server_default="1"),
        # The last sequence published to ORDER_UPDATES: a crash between recording and publishing
        # leaves it behind `sequence`, and the resumed run publishes what is missing.
        sa.Column("published_sequence", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("master_order_id", "follower_id", name="uq_follower_orders_master_order_id"),
        sa.UniqueConstraint("tag", name="uq_follower_orders_tag"),
        sa.CheckConstraint(f"status IN ({STATUSES})", name="ck_follower_orders_status"),
        schema="replicator",
    )
    op.create_index(
        "ix_follower_orders_follower_id", "follower_orders", ["follower_id", "id"], schema="replicator"
    )


def downgrade() -> None:
    op.drop_index("ix_follower_orders_follower_id", table_name="follower_orders", schema="replicator")
    op.drop_table("follower_orders", schema="replicator")
    op.drop_table("fanouts", schema="replicator")
