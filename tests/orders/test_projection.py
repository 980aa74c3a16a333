"""ORDER_UPDATES projected into the read model: follower orders appear, stale updates are dropped."""

import asyncio
import random
import time

from copytrade.core import jetstream
from copytrade.events.v1 import events_pb2
from copytrade.orders.v1 import orders_pb2
from tests.orders.test_place_order import request
from tests.orders.test_reading import new_user_token


async def publish(js, change: events_pb2.OrderStatusChanged) -> None:
    await js.publish(
        jetstream.updates_subject(change.user_id),
        change.SerializeToString(),
        headers={"Nats-Msg-Id": f"update-{change.order_id}-{change.sequence}-{change.master_order_id}"},
    )


def follower_update(
    master_order_id: int, follower_id: int, source_id: int, sequence: int, status: str, **extra
):
    change = events_pb2.OrderStatusChanged(
        order_id=source_id, user_id=follower_id, master_order_id=master_order_id, status=status, sequence=sequence,
        changed_at="2026-11-23T09:15:00.123456Z", **extra,
    )  # fmt: skip
    return change


DETAILS = events_pb2.FollowerOrderDetails(
    symbol="RELIANCE", exchange="NSE", side="BUY", order_type="LIMIT", product="CNC", quantity=4,
    price="2450.5", tag="F1234",
)  # fmt: skip


async def eventually(check, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result is not None or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


async def test_follower_orders_appear_under_the_master_order(orders_stub, orders_process, js, new_user):
    master_id, master = new_user()
    order_id = (await orders_stub.PlaceOrder(request(order_type="LIMIT"), metadata=master)).order.id
    follower_id = random.randrange(10**12, 2**62)
    source_id = random.randrange(10**12, 2**62)
    # A later update that overtook the one with the details: it waits, then applies.
    await publish(js, follower_update(order_id, follower_id, source_id, 2, "OPEN", broker_order_id="B77",
                                      replication_latency_ms=95))  # fmt: skip
    await publish(js, follower_update(order_id, follower_id, source_id, 1, "SUBMITTED", details=DETAILS))

    async def opened():
        got = await orders_stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), metadata=master)
        copies = list(got.follower_orders)
        return copies if copies and copies[0].status == "OPEN" else None

    copies = await eventually(opened)
    assert copies is not None, "the follower order never reached OPEN"
    (copy,) = copies
    assert (copy.user_id, copy.master_order_id, copy.master_user_id) == (follower_id, order_id, master_id)
    assert (copy.symbol, copy.order_type, copy.quantity, copy.price, copy.order_tag) == (
        "RELIANCE", "LIMIT", 4, "2450.50", "F1234",
    )  # fmt: skip
    assert (copy.broker_order_id, copy.replication_latency_ms, copy.is_master_order) == ("B77", "95.0", False)

    # A stale repeat of the first update changes nothing.
    await publish(js, follower_update(order_id, follower_id, source_id, 1, "FAILED", details=DETAILS))
    await asyncio.sleep(0.3)
    got = await orders_stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), metadata=master)
    assert got.follower_orders[0].status == "OPEN"

    # The follower sees their copy among their own orders; the master's list stays their own.
    theirs = await orders_stub.ListMyOrders(
        orders_pb2.ListMyOrdersRequest(), metadata=new_user_token(orders_process, follower_id)
    )
    assert [o.id for o in theirs.orders] == [copy.id]
    mine = await orders_stub.ListMyOrders(orders_pb2.ListMyOrdersRequest(), metadata=master)
    assert [o.id for o in mine.orders] == [order_id]


async def test_an_update_whose_details_never_come_is_dropped_after_waiting(
    orders_stub, orders_process, js, new_user, monkeypatch
):
    from services.orders import projection

    monkeypatch.setattr(projection, "MAX_WAITS", 2)  # two deliveries a second apart, not ten minutes
    _, master = new_user()
    order_id = (await orders_stub.PlaceOrder(request(order_type="LIMIT"), metadata=master)).order.id
    follower_id = random.randrange(10**12, 2**62)
    source_id = random.randrange(10**12, 2**62)
    await publish(js, follower_update(order_id, follower_id, source_id, 2, "OPEN", broker_order_id="B78"))
    await asyncio.sleep(projection.RETRY_SECONDS * 3)  # delivered twice, then given up
    # Its details come only now: the dropped update is not applied any more.
    await publish(js, follower_update(order_id, follower_id, source_id, 1, "SUBMITTED", details=DETAILS))

    async def created():
        got = await orders_stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), metadata=master)
        return list(got.follower_orders) or None

    copies = await eventually(created)
    assert copies is not None, "the follower order never appeared"
    await asyncio.sleep(projection.RETRY_SECONDS * 2)  # long enough for a retried OPEN to have landed
    got = await orders_stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), metadata=master)
    assert [c.status for c in got.follower_orders] == ["SUBMITTED"]


async def test_master_order_status_updates_apply_in_sequence(orders_stub, js, new_user):
    master_id, master = new_user()
    order_id = (await orders_stub.PlaceOrder(request(), metadata=master)).order.id
    for sequence, status in ((2, "EXECUTED"), (1, "OPEN")):
        await publish(
            js,
            events_pb2.OrderStatusChanged(
                order_id=order_id, user_id=master_id, status=status, sequence=sequence, filled_quantity=10,
                average_price="2451.2", changed_at="2026-11-23T09:15:01Z",
            ),
        )  # fmt: skip

    async def executed():
        got = await orders_stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), metadata=master)
        return got.order if got.order.status == "EXECUTED" else None

    order = await eventually(executed)
    assert order is not None
    assert (order.filled_quantity, order.average_price) == (10, "2451.20")
    await asyncio.sleep(0.3)
    got = await orders_stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), metadata=master)
    assert got.order.status == "EXECUTED"  # the older OPEN came second and was dropped
