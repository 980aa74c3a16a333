"""orders: the outbox keeps the placing request's trace context

The publisher sends a row after PlaceOrder has answered; the row's W3C traceparent lets the
published message, and so the whole replication, join the trace of the order (copytrade/core/tracing.py).
Empty when tracing is off.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("traceparent", sa.String(64)), schema="orders")


def downgrade() -> None:
    op.drop_column("outbox", "traceparent", schema="orders")
