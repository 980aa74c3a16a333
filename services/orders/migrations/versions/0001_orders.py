"""orders and outbox

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

PRICE = sa.Numeric(18, 4)


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("is_master_order", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        sa.Column("master_order_id", sa.BigInteger()),
        sa.Column("master_user_id", sa.BigInteger()),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("exchange", sa.String(8), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("order_type", sa.String(8), nullable=False),
        sa.Column("product", sa.String(8), nullable=False),
        sa.Column("validity", sa.String(8), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("price", PRICE),
        sa.Column("trigger_price", PRICE),
        sa.Column("status", sa.String(20), nullable=False, server_default="PENDING"),
        sa.Column("status_reason_code", sa.String(40), nullable=False, server_default=""),
        sa.Column("status_reason", sa.String(500), nullable=False, server_default=""),
        sa.Column("broker_order_id", sa.String(40), nullable=False, server_default=""),
        sa.Column("order_tag", sa.String(20), nullable=False, server_default=""),
        sa.Column("filled_quantity", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("average_price", PRICE),
        sa.Column("replication_latency_ms", sa.Numeric(12, 1)),
        sa.Column("source_order_id", sa.BigInteger()),
        sa.Column("sequence", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("idempotency_key", sa.String(64)),
        sa.Column("request_hash", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        # A follower copy skipped because it sized to zero (or could not be funded) keeps quantity 0.
        sa.CheckConstraint("quantity > 0 OR status = 'SKIPPED'", name="ck_orders_quantity_positive"),
        schema="orders",
    )
    op.create_index("ix_orders_user_id_id", "orders", ["user_id", sa.text("id DESC")], schema="orders")
    op.create_index(
        "ix_orders_master_order_id",
        "orders",
        ["master_order_id"],
        schema="orders",
        postgresql_where=sa.text("master_order_id IS NOT NULL"),
    )
    op.create_index(
        "uq_orders_source_order_id",
        "orders",
        ["source_order_id"],
        unique=True,
        schema="orders",
        postgresql_where=sa.text("source_order_id IS NOT NULL"),
    )
    op.create_index(
        "uq_orders_user_id_idempotency_key",
        "orders",
        ["user_id", "idempotency_key"],
        unique=True,
        schema="orders",
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        schema="orders",
    )
    op.create_index(
        "ix_outbox_unsent", "outbox", ["id"], schema="orders", postgresql_where=sa.text("sent_at IS NULL")
    )


def downgrade() -> None:
    op.drop_table("outbox", schema="orders")
    op.drop_table("orders", schema="orders")
