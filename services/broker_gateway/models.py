"""The broker gateway's tables, in its own `broker_gateway` schema."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Identity,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from copytrade.core.db import schema_metadata

SCHEMA = "broker_gateway"
DIALECTS = ("IIFL_CAPITAL_V1", "XTS")
# LINKED: a live broker session. NEEDS_RELOGIN: the daily session lapsed (or was never opened); the
# user must log in at the broker again, and every order for the account comes back with that reason.
STATUSES = ("LINKED", "NEEDS_RELOGIN")


class Base(DeclarativeBase):
    metadata = schema_metadata(SCHEMA)


class LinkedAccount(Base):
    __tablename__ = "linked_accounts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, nullable=False, unique=True)
    dialect: Mapped[str] = mapped_column(String(32), nullable=False)
    client_code: Mapped[str] = mapped_column(String(32), nullable=False)
    # Fernet tokens (settings.credentials_key): the app key and secret, and the broker session token.
    credentials_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    session_encrypted: Mapped[str | None] = mapped_column(Text)
    app_key_hint: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    status_reason: Mapped[str] = mapped_column(String(200), nullable=False, server_default="")
    session_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())

    __table_args__ = (
        # One platform user per broker account: two users trading one account would double orders.
        UniqueConstraint("dialect", "client_code", name="uq_linked_accounts_broker_account"),
        CheckConstraint(f"dialect IN {DIALECTS}", name="dialect"),
        CheckConstraint(f"status IN {STATUSES}", name="status"),
    )
