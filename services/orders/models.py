"""The orders service's tables, in its own `orders` schema.

`orders` holds every order the caller can read; `outbox` holds the JetStream messages that must be
published because an order was stored (see services/orders/outbox.py). Both are written in one
transaction, so an order is never stored without its hand-off, nor handed off without being stored.
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
    LargeBinary,
    Numeric,
    String,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from copytrade.core.db import schema_metadata

SCHEMA = "orders"
# Rupees with four decimal places: the finest tick size in the contract files is 0.0025.
PRICE = Numeric(18, 4)


class Base(DeclarativeBase):
    metadata = schema_metadata(SCHEMA)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    is_master_order: Mapped[bool] = mapped_column(nullable=False, server_default=text("true"))
    master_order_id: Mapped[int | None] = mapped_column(BigInteger)
    master_user_id: Mapped[int | None] = mapped_column(BigInteger)
    symbol: Mapped[str] = mapped_column(String(64), nullable=False)
    exchange: Mapped[str] = mapped_column(String(8), nullable=False)
    side: Mapped[str] = mapped_column(String(4), nullable=False)
    order_type: Mapped[str] = mapped_column(String(8), nullable=False)
    product: Mapped[str] = mapped_column(String(8), nullable=False)
    validity: Mapped[str] = mapped_column(String(8), nullable=False)
    quantity: Mapped[int] = mapped_column(BigInteger, nullable=False)
    price: Mapped[Decimal | None] = mapped_column(PRICE)
    trigger_price: Mapped[Decimal | None] = mapped_column(PRICE)
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="PENDING")
    status_reason_code: Mapped[str] = mapped_column(String(40), nullable=False, server_default="")
    status_reason: Mapped[str] = mapped_column(String(500), nullable=False, server_default="")
    broker_order_id: Mapped[str] = mapped_column(String(40), nullable=False, server_default="")
    order_tag: Mapped[str] = mapped_column(String(20), nullable=False, server_default="")
    filled_quantity: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    average_price: Mapped[Decimal | None] = mapped_column(PRICE)
    replication_latency_ms: Mapped[Decimal | None] = mapped_column(Numeric(12, 1))
    # For a follower order, its id in the replicator, which numbers follower orders itself.
    source_order_id: Mapped[int | None] = mapped_column(BigInteger)
    # The last ORDER_UPDATES sequence applied; older or repeated updates are dropped.
    sequence: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    idempotency_key: Mapped[str | None] = mapped_column(String(64))
    # SHA-256 of the normalised request, to tell a replay from a different order under the same key.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint("quantity > 0 OR status IN ('SKIPPED', 'FAILED')", name="quantity_positive"),
        # ListMyOrders: one user's orders, newest first (ids grow with time).
        Index("ix_orders_user_id_id", "user_id", text("id DESC")),
        Index(
            "ix_orders_master_order_id",
            "master_order_id",
            postgresql_where=text("master_order_id IS NOT NULL"),
        ),
        Index(
            "uq_orders_source_order_id",
            "source_order_id",
            unique=True,
            postgresql_where=text("source_order_id IS NOT NULL"),
        ),
        # Keys are per user; the partial index leaves keyless orders out.
        Index(
            "uq_orders_user_id_idempotency_key",
            "user_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )


class OutboxMessage(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    subject: Mapped[str] = mapped_column(String(200), nullable=False)
    # JetStream's Nats-Msg-Id: a publish repeated after a crash is stored once.
    message_id: Mapped[str] = mapped_column(String(200), nullable=False)
    # The message, or (PlaceOrder's rows) the order whose OrderAccepted the publisher renders: the
    # order and its row are stored by one statement, before the order has an id to put in a message.
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    order_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    # The placing request's W3C traceparent (tracing on only), sent on as the message's header.
    traceparent: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        CheckConstraint("payload IS NOT NULL OR order_id IS NOT NULL", name="payload_or_order"),
        # The publisher's scan: only unsent rows, oldest first.
        Index("ix_outbox_unsent", "id", postgresql_where=text("sent_at IS NULL")),
    )
