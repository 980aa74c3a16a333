"""Reading and writing orders in PostgreSQL.

Placing an order writes the order and its outbox message in one transaction: once it commits the
order is durably accepted and its hand-off to JetStream is certain (services/orders/outbox.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, String, bindparam, cast, func, literal, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from copytrade.core import db, jetstream
from copytrade.core.errors import AlreadyExists
from copytrade.events.v1 import events_pb2
from services.orders.models import Order, OutboxMessage
from services.orders.validation import NewOrder

IDEMPOTENCY_WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Placed:
    order: Order
    replay: bool
    # The new order's outbox row, for the publisher to send at once (services/orders/outbox.py).
    outbox_id: int | None = None


def rfc3339(moment: datetime, timespec: str = "milliseconds") -> str:
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def decimal_text(value: Decimal | None) -> str:
    """Rupees as the API shows them: at least two decimal places, no trailing zeros beyond."""
    if value is None:
        return ""
    normal = value.normalize()
    exponent = normal.as_tuple().exponent  # a letter, not a number, for NaN and the infinities
    if isinstance(exponent, int) and exponent > -2:
        normal = normal.quantize(Decimal("0.01"))
    return format(normal, "f")


def accepted_event(order: Order) -> events_pb2.OrderAccepted:
    # Per events.proto the event carries a limit price only; a MARKET/SL-M reference price stays here.
    limit = order.order_type in ("LIMIT", "SL")
    return events_pb2.OrderAccepted(
        order_id=order.id,
        master_user_id=order.user_id,
        symbol=order.symbol,
        exchange=order.exchange,
        side=order.side,
        order_type=order.order_type,
        product=order.product,
        quantity=order.quantity,
        price=decimal_text(order.price) if limit else "",
        trigger_price=decimal_text(order.trigger_price),
        accepted_at=rfc3339(order.created_at, "microseconds"),
    )


def _place_statements() -> tuple[Select[Any], Select[Any]]:
    """PlaceOrder's statement, alone and with its outbox row, built once: building the CTE (a
    column proxy for each of the order's columns) and its cache key cost more CPU than running it.
    """
    columns = ("user_id", "symbol", "exchange", "side", "order_type", "product", "validity", "quantity",
               "price", "trigger_price", "idempotency_key", "request_hash")  # fmt: skip
    placed = (
        insert(Order)
        .values(is_master_order=True, **{name: bindparam(name) for name in columns})
        # A concurrent request with the same key waits here for the first to commit, then inserts
        # nothing and reads the first one's order (OrderStore._replayed).
        .on_conflict_do_nothing(
            index_elements=[Order.user_id, Order.idempotency_key],
            index_where=Order.idempotency_key.is_not(None),
        )
        .returning(*Order.__table__.c)
        .cte("placed")
    )
    # The row names the order: its OrderAccepted needs the id this same statement assigns.
    queued = (
        insert(OutboxMessage)
        .from_select(
            ["subject", "message_id", "order_id", "traceparent"],
            select(
                bindparam("subject", type_=String),
                literal("order-", String) + cast(placed.c.id, String),
                placed.c.id,
                bindparam("traceparent", type_=String),
            ),
        )
        .returning(OutboxMessage.id)
        .cte("queued")
    )
    order = aliased(Order, placed)
    return select(order), select(order, select(queued.c.id).scalar_subquery()).add_cte(queued)


_PLACE, _PLACE_AND_QUEUE = _place_statements()


class OrderStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._autocommit = db.autocommit_sessions(sessions)

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """For read-only queries kept in their own modules (services/orders/reports.py)."""
        return self._sessions

    async def place(
        self, user_id: int, new: NewOrder, *, replicate: bool, traceparent: str | None = None
    ) -> Placed:
        """Store the order (and, when `replicate`, its outbox row, with the request's `traceparent`
        for the publish to join), or return the order an earlier request with the same idempotency
        key stored.

        Without a key it is one statement, in autocommit: the order and its outbox row are two
        INSERTs of one statement, so they commit together without BEGIN and COMMIT round trips
        (four round trips and the ORM's unit of work had been most of PlaceOrder's time).
        """
        fingerprint = new.fingerprint() if new.idempotency_key is not None else None
        statement = _PLACE_AND_QUEUE if replicate else _PLACE
        values = {
            "user_id": user_id,
            "symbol": new.symbol,
            "exchange": new.exchange,
            "side": new.side,
            "order_type": new.order_type,
            "product": new.product,
            "validity": new.validity,
            "quantity": new.quantity,
            "price": new.price,
            "trigger_price": new.trigger_price,
            "idempotency_key": new.idempotency_key,
            "request_hash": fingerprint,
            "subject": jetstream.accepted_subject(user_id),
            "traceparent": traceparent,
        }
        if new.idempotency_key is None:
            async with self._autocommit() as session:
                row = (await session.execute(statement, values)).one()
            return Placed(row[0], replay=False, outbox_id=row[1] if replicate else None)
        async with self._sessions() as session, session.begin():
            await self._expire_key(session, user_id, new.idempotency_key)
            found = (await session.execute(statement, values)).one_or_none()
            if found is None:
                return Placed(
                    await self._replayed(session, user_id, new.idempotency_key, fingerprint), replay=True
                )
        return Placed(found[0], replay=False, outbox_id=found[1] if replicate else None)

    @staticmethod
    async def _expire_key(session: AsyncSession, user_id: int, key: str) -> None:
        # A key is only binding for IDEMPOTENCY_WINDOW; afterwards it may name a new order.
        await session.execute(
            update(Order)
            .where(
                Order.user_id == user_id,
                Order.idempotency_key == key,
                Order.created_at < func.now() - IDEMPOTENCY_WINDOW,
            )
            .values(idempotency_key=None)
        )

    @staticmethod
    async def _replayed(
        session: AsyncSession, user_id: int, key: str | None, fingerprint: str | None
    ) -> Order:
        earlier = await session.scalar(
            select(Order).where(Order.user_id == user_id, Order.idempotency_key == key)
        )
        if earlier is None or earlier.request_hash != fingerprint:
            raise AlreadyExists("was already used for a different order", field="idempotency_key")
        return earlier

    async def mine(
        self, user_id: int, *, limit: int, before_id: int | None, status: str | None, symbol: str | None
    ) -> list[Order]:
        """The user's orders, newest first, after the cursor."""
        query = select(Order).where(Order.user_id == user_id)
        if before_id is not None:
            query = query.where(Order.id < before_id)
        if status is not None:
            query = query.where(Order.status == status)
        if symbol is not None:
            query = query.where(Order.symbol == symbol)
        async with self._sessions() as session:
            return list(await session.scalars(query.order_by(Order.id.desc()).limit(limit)))

    async def owned(self, user_id: int, order_id: int) -> Order | None:
        async with self._sessions() as session:
            return await session.scalar(select(Order).where(Order.id == order_id, Order.user_id == user_id))

    async def followers_of(
        self, master_order_id: int, *, limit: int, after: tuple[int, int] | None
    ) -> list[Order]:
        """Follower orders copied from a master order, by follower id (then order id)."""
        query = select(Order).where(
            Order.master_order_id == master_order_id, Order.is_master_order.is_(False)
        )
        if after is not None:
            query = query.where(tuple_(Order.user_id, Order.id) > tuple_(*after))
        async with self._sessions() as session:
            return list(await session.scalars(query.order_by(Order.user_id, Order.id).limit(limit)))
