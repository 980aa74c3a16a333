"""orders: an outbox row may name its order instead of carrying the message

PlaceOrder stores the order and its outbox row in one statement, before the order has an id the
message could carry; the row names the order and the publisher renders OrderAccepted from it.
Rows written before this keep their payload, and every row has one or the other.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("order_id", sa.BigInteger()), schema="orders")
    op.alter_column("outbox", "payload", existing_type=sa.LargeBinary(), nullable=True, schema="orders")
    op.create_check_constraint(
        op.f("ck_outbox_payload_or_order"), "outbox", "payload IS NOT NULL OR order_id IS NOT NULL", schema="orders"
    )


def downgrade() -> None:
    # Sent rows that name their order get an empty payload: they are only kept for inspection. An
    # unsent one stops the downgrade, since the older publisher could not render its message.
    op.execute("UPDATE orders.outbox SET payload = '' WHERE payload IS NULL AND sent_at IS NOT NULL")
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM orders.outbox WHERE payload IS NULL) THEN"
        " RAISE EXCEPTION 'unsent outbox rows name their order: publish them before downgrading'; END IF; END $$"
    )
    op.drop_constraint(op.f("ck_outbox_payload_or_order"), "outbox", schema="orders", type_="check")
    op.alter_column("outbox", "payload", existing_type=sa.LargeBinary(), nullable=False, schema="orders")
    op.drop_column("outbox", "order_id", schema="orders")
