"""The auth service's tables, in its own `auth` schema."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, Index, Numeric, String, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from copytrade.core.db import schema_metadata

SCHEMA = "auth"
ROLES = ("MASTER", "FOLLOWER", "ADMIN")
# The seed gave every user ₹10,000 of paper capital until a broker account is linked.
DEFAULT_BALANCE = Decimal("10000.00")


class Base(DeclarativeBase):
    metadata = schema_metadata(SCHEMA)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), nullable=False)
    username: Mapped[str] = mapped_column(String(32), nullable=False)
    hashed_password: Mapped[str] = mapped_column(String(60), nullable=False)
    full_name: Mapped[str] = mapped_column(String(100), nullable=False, server_default="")
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    iifl_account_id: Mapped[str] = mapped_column(String(32), nullable=False, server_default="")
    balance: Mapped[Decimal] = mapped_column(Numeric(18, 2), nullable=False, server_default=text("10000.00"))
    is_active: Mapped[bool] = mapped_column(nullable=False, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())

    __table_args__ = (
        CheckConstraint(f"role IN {ROLES}", name="role"),
        CheckConstraint("balance >= 0", name="balance_not_negative"),
        # Case-insensitive uniqueness: "Alice" and "alice" are one user.
        Index("uq_users_email_lower", func.lower(email), unique=True),
        Index("uq_users_username_lower", func.lower(username), unique=True),
    )
