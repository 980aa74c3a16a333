"""OrderStatusChanged for follower orders, published to ORDER_UPDATES.

Each update's message id is `update-<order_id>-<sequence>`, so a publish repeated after a crash is
stored once; the first update JetStream receives for an order carries its details, whatever its
status by then, so a read model can create the row from it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from nats.js import JetStreamContext

from copytrade.core.jetstream import updates_subject
from copytrade.events.v1 import events_pb2
from services.replicator.pipeline.store import FollowerOrder

# Publishes awaiting their acknowledgement at once: enough to hide the round trip, few enough not
# to flood the server with a 5,000-follower fan-out.
CONCURRENT_PUBLISHES = 256


def decimal_text(value: Decimal | None) -> str:
    if value is None:
        return ""
    # normalize() drops the database's trailing zeros; "f" keeps 1E+3 as 1000.
    return format(value.normalize(), "f")


def status_changed(order: FollowerOrder, changed_at: str) -> events_pb2.OrderStatusChanged:
    update = events_pb2.OrderStatusChanged(
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
    )
    if order.published_sequence == 0:
        update.details.CopyFrom(
            events_pb2.FollowerOrderDetails(
                symbol=order.symbol,
                exchange=order.exchange,
                side=order.side,
                order_type=order.order_type,
                product=order.product,
                quantity=order.quantity,
                price=decimal_text(order.price),
                trigger_price=decimal_text(order.trigger_price),
                tag=order.tag,
            )
        )
    return update


async def publish(js: JetStreamContext, orders: list[FollowerOrder]) -> None:
    """Publish each order's current state; returns once JetStream has stored every one."""
    changed_at = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    gate = asyncio.Semaphore(CONCURRENT_PUBLISHES)

    async def one(order: FollowerOrder) -> None:
        async with gate:
            await js.publish(
                updates_subject(order.follower_id),
                status_changed(order, changed_at).SerializeToString(),
                headers={"Nats-Msg-Id": f"update-{order.id}-{order.sequence}"},
            )

    await asyncio.gather(*(one(order) for order in orders))
