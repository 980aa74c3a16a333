"""follower orders: drop published_sequence

Updates are published after each result is recorded and all again when a master order is
redelivered (JetStream deduplicates them by message id), so the per-row mark, one more UPDATE of
every follower order per fan-out, is gone.

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
    op.drop_column("follower_orders", "published_sequence", schema="replicator")


def downgrade() -> None:
    op.add_column(
        "follower_orders",
        sa.Column("published_sequence", sa.BigInteger(), nullable=False, server_default="0"),
        schema="replicator",
    )
