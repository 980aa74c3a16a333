"""The replicator's tables, in its own `replicator` schema.

`subscriptions` says which follower copies which master and how each copied order is sized. Ratios
and percentages are NUMERIC: a follower's quantity is computed from them, and a float would turn a
ratio of 0.1 into 0.1000000000000000055.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Numeric,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from copytrade.core.db import schema_metadata

SCHEMA = "replicator"
STRATEGIES = ("FIXED_RATIO", "PERCENTAGE", "FIXED_QUANTITY")
STATUSES = ("ACTIVE", "PAUSED")
# Up to 100 with 4 decimal places (FIXED_RATIO) and up to 100 with 2 (PERCENTAGE).
RATIO = Numeric(7, 4)
PERCENTAGE = Numeric(5, 2)


class Base(DeclarativeBase):
    metadata = schema_metadata(SCHEMA)


class Subscription(Base):
    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    follower_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    master_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    copy_strategy: Mapped[str] = mapped_column(String(16), nullable=False)
    ratio: Mapped[Decimal | None] = mapped_column(RATIO)
    percentage: Mapped[Decimal | None] = mapped_column(PERCENTAGE)
    fixed_quantity: Mapped[int | None] = mapped_column(BigInteger)
    # A risk cap on every copied order; NULL for none.
    max_quantity: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(8), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        UniqueConstraint("follower_id", "master_id", name="uq_subscriptions_follower_id_master_id"),
        CheckConstraint(f"copy_strategy IN {STRATEGIES}", name="copy_strategy"),
        CheckConstraint(f"status IN {STATUSES}", name="status"),
        CheckConstraint("follower_id <> master_id", name="not_self"),
        # Exactly the chosen strategy's parameter is set: the sizing code never guesses.
        CheckConstraint(
            "(copy_strategy = 'FIXED_RATIO') = (ratio IS NOT NULL)"
            " AND (copy_strategy = 'PERCENTAGE') = (percentage IS NOT NULL)"
            " AND (copy_strategy = 'FIXED_QUANTITY') = (fixed_quantity IS NOT NULL)",
            name="one_parameter",
        ),
        CheckConstraint("ratio > 0 AND ratio <= 100", name="ratio_range"),
        CheckConstraint("percentage > 0 AND percentage <= 100", name="percentage_range"),
        CheckConstraint("fixed_quantity >= 1", name="fixed_quantity_positive"),
        CheckConstraint("max_quantity >= 1", name="max_quantity_positive"),
        # The pipeline reads a master's active followers for every master order.
        Index("ix_subscriptions_master_id_status", "master_id", "status"),
    )
