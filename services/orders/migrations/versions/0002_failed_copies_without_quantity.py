"""orders: a copy that failed before reaching the broker may carry no quantity

A follower order refused at planning (no linked account, a lapsed broker session) is FAILED with
quantity 0, like a SKIPPED one; the old check refused it, and the read model silently lost it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("ck_orders_quantity_positive", "orders", schema="orders", type_="check")
    op.create_check_constraint(
        "ck_orders_quantity_positive", "orders", "quantity > 0 OR status IN ('SKIPPED', 'FAILED')", schema="orders"
    )


def downgrade() -> None:
    op.drop_constraint("ck_orders_quantity_positive", "orders", schema="orders", type_="check")
    op.create_check_constraint(
        "ck_orders_quantity_positive", "orders", "quantity > 0 OR status = 'SKIPPED'", schema="orders"
    )
