"""users

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
        "users",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("username", sa.String(32), nullable=False),
        sa.Column("hashed_password", sa.String(60), nullable=False),
        sa.Column("full_name", sa.String(100), nullable=False, server_default=""),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("iifl_account_id", sa.String(32), nullable=False, server_default=""),
        sa.Column("balance", sa.Numeric(18, 2), nullable=False, server_default=sa.text("10000.00")),
        sa.Column("is_active", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("role IN ('MASTER', 'FOLLOWER', 'ADMIN')", name="ck_users_role"),
        sa.CheckConstraint("balance >= 0", name="ck_users_balance_not_negative"),
        schema="auth",
    )
    op.create_index("uq_users_email_lower", "users", [sa.text("lower(email)")], unique=True, schema="auth")
    op.create_index("uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True, schema="auth")


def downgrade() -> None:
    op.drop_table("users", schema="auth")
