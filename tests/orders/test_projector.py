"""The read model's projection as its own process (services/orders/projector.py), as the stack runs it."""

import random

from sqlalchemy import text

from copytrade.orders.v1 import orders_pb2
from services.orders.projector import ProjectorProcess
from services.orders.server import OrdersProcess
from tests.orders.test_place_order import request
from tests.orders.test_projection import DETAILS, eventually, follower_update, publish


async def test_an_orders_service_told_so_leaves_the_projection_to_the_projector(base_settings, migrated):
    process = OrdersProcess(base_settings.model_copy(update={"orders_projection_in_process": False}))
    await process.start_background()
    try:
        assert process.publisher is not None  # accepted orders still reach JetStream
        assert process.projection is None
    finally:
        await process.close()


async def test_the_projector_applies_follower_updates(base_settings, orders_process, orders_stub, js, new_user):
    master_id, master = new_user()
    order_id = (await orders_stub.PlaceOrder(request(order_type="LIMIT"), metadata=master)).order.id
    # The session's orders service projects too (in-process, the default): paused, so that only the
    # projector can be the one that applies this update.
    assert orders_process.projection is not None
    await orders_process.projection.stop()
    projector = ProjectorProcess(base_settings)
    try:
        await projector.start()
        # Rows found by key however stale the read model's statistics (copytrade/core/db.py).
        async with projector.engine.connect() as conn:
            assert await conn.scalar(text("SHOW enable_seqscan")) == "off"
        follower_id = random.randrange(10**12, 2**62)
        source_id = random.randrange(10**12, 2**62)
        await publish(js, follower_update(order_id, follower_id, source_id, 1, "SUBMITTED", details=DETAILS,
                                          broker_order_id="B9"))  # fmt: skip

        async def submitted():
            got = await orders_stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), metadata=master)
            return list(got.follower_orders) or None

        copies = await eventually(submitted)
        assert copies is not None, "the projector never applied the update"
        (copy,) = copies
        assert (copy.user_id, copy.master_user_id, copy.status, copy.broker_order_id) == (
            follower_id, master_id, "SUBMITTED", "B9",
        )  # fmt: skip
    finally:
        await projector.close()
        await orders_process.projection.start()
