"""The read model's feed: OrderStatusChanged from ORDER_UPDATES, upserted into `orders.orders`.

A follower order arrives with its details on its first update and becomes a row here (linked to its
master order, so GetOrder shows a master order with its copies and ListMyOrders shows a follower
theirs); later updates change its status. A master order's updates (master_order_id 0) change the
row PlaceOrder stored. Replicas share one durable pull consumer (`orders-projection`), so each
update is applied by one of them; redelivery and replicas mean updates may come late, twice or out
of order, so each row keeps the last applied `sequence` and an update that is not newer is dropped.

Follower orders keep the replicator's id in `source_order_id`: the replicator numbers them itself,
and those numbers would collide with this service's own order ids.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from decimal import Decimal, InvalidOperation

import structlog
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from copytrade.core.jetstream import ORDER_UPDATES_STREAM
from copytrade.events.v1 import events_pb2
from services.orders.models import Order

log = structlog.get_logger("copytrade.orders.projection")

DURABLE = "orders-projection"
BATCH = 256
# An update that came before the one carrying its order's details waits for it.
RETRY_SECONDS = 1.0


class NotYetKnown(Exception):
    """An update for a follower order whose first (detailed) update has not been applied yet."""


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text) if text else None
    except InvalidOperation:
        return None
    return value if value is not None and value.is_finite() else None


def _moment(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _state(change: events_pb2.OrderStatusChanged) -> dict[str, object]:
    """The columns every update sets."""
    return {
        "status": change.status,
        "status_reason": change.status_reason[:500],
        "status_reason_code": change.status_reason_code[:40],
        "broker_order_id": change.broker_order_id[:40],
        "filled_quantity": change.filled_quantity,
        "average_price": _decimal(change.average_price),
        "sequence": change.sequence,
        "updated_at": _moment(change.changed_at) or func.now(),
    }


async def apply(session: AsyncSession, change: events_pb2.OrderStatusChanged) -> bool:
    """Apply one update; False when it was stale. Raises NotYetKnown when it must wait."""
    state = _state(change)
    latency = Decimal(change.replication_latency_ms) if change.replication_latency_ms else None
    if change.master_order_id == 0:
        result = await session.execute(
            update(Order)
            .where(
                Order.id == change.order_id, Order.is_master_order.is_(True), Order.sequence < change.sequence
            )
            .values(**state)
        )
        return result.rowcount > 0
    if change.HasField("details"):
        details = change.details
        master_user = select(Order.user_id).where(Order.id == change.master_order_id).scalar_subquery()
        statement = insert(Order).values(
            source_order_id=change.order_id,
            user_id=change.user_id,
            is_master_order=False,
            master_order_id=change.master_order_id,
            master_user_id=master_user,
            symbol=details.symbol,
            exchange=details.exchange,
            side=details.side,
            order_type=details.order_type,
            product=details.product,
            validity="DAY",
            quantity=details.quantity,
            price=_decimal(details.price),
            trigger_price=_decimal(details.trigger_price),
            order_tag=details.tag[:20],
            replication_latency_ms=latency,
            **state,
        )
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=[Order.source_order_id],
            index_where=Order.source_order_id.is_not(None),
            set_={
                **{name: excluded[name] for name in state},
                "replication_latency_ms": func.coalesce(
                    excluded.replication_latency_ms, Order.replication_latency_ms
                ),
            },
            where=Order.sequence < excluded.sequence,
        )
        result = await session.execute(statement)
        return result.rowcount > 0
    values = dict(state)
    if latency is not None:
        values["replication_latency_ms"] = latency
    result = await session.execute(
        update(Order)
        .where(Order.source_order_id == change.order_id, Order.sequence < change.sequence)
        .values(**values)
        .returning(Order.id)
    )
    if result.first() is not None:
        return True
    known = await session.scalar(select(Order.id).where(Order.source_order_id == change.order_id))
    if known is None:
        raise NotYetKnown(change.order_id)
    return False


class UpdatesProjection:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], js: JetStreamContext) -> None:
        self._sessions = sessions
        self._js = js
        self._task: asyncio.Task[None] | None = None
        self._subscription: JetStreamContext.PullSubscription | None = None

    async def start(self) -> None:
        self._subscription = subscription = await self._js.pull_subscribe(
            "orders.updates.*",
            durable=DURABLE,
            stream=ORDER_UPDATES_STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL),
        )
        self._task = asyncio.create_task(self._run(subscription), name="orders-projection")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._subscription is not None:
            # A pull cancelled mid-fetch leaves the subscription waiting: without this, the
            # connection's drain would wait its full timeout (30 s) for it at every shutdown.
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None

    async def _run(self, subscription: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                messages = await subscription.fetch(BATCH, timeout=1)
            except TimeoutError:  # nats-py raises its own subclass or the builtin one: nothing came
                continue
            except Exception:  # NATS away: the consumer resumes where it was
                log.warning("fetching order updates failed; retrying", exc_info=True)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            for message in messages:
                await self._handle(message)

    async def _handle(self, message: Msg) -> None:
        try:
            change = events_pb2.OrderStatusChanged.FromString(message.data)
        except DecodeError:
            log.error("dropping an undecodable order update", subject=message.subject)
            await message.term()
            return
        try:
            async with self._sessions() as session, session.begin():
                await apply(session, change)
        except NotYetKnown:
            await message.nak(delay=RETRY_SECONDS)
            return
        except (IntegrityError, DataError):
            # The update itself can never be stored: retrying would only fill the log
            # forever. Say so loudly and let it go (JetStream keeps it in the stream for a replay).
            log.exception("order update refused by the database; dropped", order_id=change.order_id)
            await message.term()
            return
        except Exception:  # PostgreSQL away: JetStream delivers it again
            log.warning(
                "applying an order update failed; will retry", order_id=change.order_id, exc_info=True
            )
            await message.nak(delay=RETRY_SECONDS)
            return
        await message.ack()
