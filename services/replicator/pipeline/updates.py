"""OrderStatusChanged for follower orders, published to ORDER_UPDATES.

Each update's message id is `update-<order_id>-<sequence>`, so a publish repeated after a crash, or
by a redelivered master order that publishes its orders' states again, is stored once (within
JetStream's deduplication window; past it, readers drop an update whose sequence is not newer).
Every update carries the order's details, so a read model can create the row from whichever it
receives first.
"""

from __future__ import annotations

import asyncio
import weakref
from datetime import UTC, datetime
from decimal import Decimal

from nats.js import JetStreamContext

from copytrade.core.jetstream import updates_subject
from copytrade.events.v1 import events_pb2
from services.replicator.pipeline.store import FollowerOrder

# Past this, publishes still unacknowledged are abandoned (NATS away): the caller fails, the master
# order is redelivered, and the same message ids are published again (JetStream stores them once).
PUBLISH_TIMEOUT_SECONDS = 10.0

# JetStream contexts whose shared reply subscription for pipelined publishes exists: nats-py makes
# it on the first publish_async, and two first calls at once would each make one.
_ready: weakref.WeakSet[JetStreamContext] = weakref.WeakSet()
_first_publish = asyncio.Lock()


def decimal_text(value: Decimal | None) -> str:
    if value is None:
        return ""
    # normalize() drops the database's trailing zeros; "f" keeps 1E+3 as 1000.
    return format(value.normalize(), "f")


def status_changed(order: FollowerOrder, changed_at: str) -> events_pb2.OrderStatusChanged:
    return events_pb2.OrderStatusChanged(
        order_id=order.id,
        user_id=order.follower_id,
        master_order_id=order.master_order_id,
        status=order.status,
        status_reason=order.status_reason,
        status_reason_code=order.status_reason_code,
        broker_order_id=order.broker_order_id,
        replication_latency_ms=order.latency_ms or 0,
        sequence=order.sequence,
        changed_at=changed_at,
        # Every update: it may be the first a reader receives.
        details=events_pb2.FollowerOrderDetails(
            symbol=order.symbol,
            exchange=order.exchange,
            side=order.side,
            order_type=order.order_type,
            product=order.product,
            quantity=order.quantity,
            price=decimal_text(order.price),
            trigger_price=decimal_text(order.trigger_price),
            tag=order.tag,
        ),
    )


async def publish(js: JetStreamContext, orders: list[FollowerOrder]) -> None:
    """Publish each order's current state; returns once JetStream has stored every one.

    Pipelined: every message is written before any acknowledgement is awaited, and all of them
    come back on one reply subscription (js.publish would open a request and wait for each).
    """
    if not orders:
        return
    changed_at = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")

    async def send(order: FollowerOrder) -> asyncio.Future:
        return await js.publish_async(
            updates_subject(order.follower_id),
            status_changed(order, changed_at).SerializeToString(),
            headers={"Nats-Msg-Id": f"update-{order.id}-{order.sequence}"},
        )

    pending = []
    rest = orders
    if js not in _ready:
        async with _first_publish:
            if js not in _ready:
                pending.append(await send(orders[0]))
                rest = orders[1:]
                _ready.add(js)
    pending.extend([await send(order) for order in rest])
    # On timeout wait_for cancels the gather and with it every future, which frees their places.
    await asyncio.wait_for(asyncio.gather(*pending), PUBLISH_TIMEOUT_SECONDS)
