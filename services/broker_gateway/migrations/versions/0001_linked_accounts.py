"""linked broker accounts

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
        "linked_accounts",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("dialect", sa.String(32), nullable=False),
        sa.Column("client_code", sa.String(32), nullable=False),
        sa.Column("credentials_encrypted", sa.Text(), nullable=False),
        sa.Column("session_encrypted", sa.Text()),
        sa.Column("app_key_hint", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.String(200), nullable=False, server_default=""),
        sa.Column("session_expires_at", sa.DateTime(timezone=True)),
        sa.Column("last_login_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("user_id", name="uq_linked_accounts_user_id"),
        sa.UniqueConstraint("dialect", "client_code", name="uq_linked_accounts_broker_account"),
        sa.CheckConstraint("dialect IN ('IIFL_CAPITAL_V1', 'XTS')", name="ck_linked_accounts_dialect"),
        sa.CheckConstraint("status IN ('LINKED', 'NEEDS_RELOGIN')", name="ck_linked_accounts_status"),
        schema="broker_gateway",
    )


def downgrade() -> None:
    op.drop_table("linked_accounts", schema="broker_gateway")
