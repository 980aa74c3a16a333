"""The durable hand-off: order and outbox row in one commit, then JetStream, exactly once."""

import time

from sqlalchemy import func, select, update

from copytrade.core import jetstream
from copytrade.events.v1 import events_pb2
from services.orders.models import OutboxMessage
from services.orders.server import OrdersProcess
from services.orders.validation import new_order
from tests.orders.test_place_order import request, wait_for_messages


async def test_accepted_order_reaches_jetstream_with_its_message_id_at_once(orders_stub, js, new_user):
    user_id, auth = new_user()
    subject = jetstream.accepted_subject(user_id)
    subscription = await js.subscribe(subject)
    try:
        placed = (
            await orders_stub.PlaceOrder(
                request(order_type="SL", price=2450.5, trigger_price=2449.9, product="MIS"), metadata=auth
            )
        ).order
        started = time.monotonic()
        message = await subscription.next_msg(timeout=2)
        # Woken by the commit, not found by the 1 s poll.
        assert time.monotonic() - started < 0.5
    finally:
        await subscription.unsubscribe()
    assert message.headers["Nats-Msg-Id"] == f"order-{placed.id}"
    event = events_pb2.OrderAccepted.FromString(message.data)
    assert (event.order_id, event.master_user_id) == (placed.id, user_id)
    assert (event.symbol, event.exchange, event.side, event.order_type, event.product) == (
        "RELIANCE", "NSE", "BUY", "SL", "MIS",
    )  # fmt: skip
    assert (event.quantity, event.price, event.trigger_price) == (10, "2450.50", "2449.90")
    assert event.accepted_at.endswith("Z") and len(event.accepted_at) == len("2026-04-01T09:15:00.123456Z")


async def test_placing_stores_a_row_naming_the_order_and_sending_marks_it_sent(
    orders_process, orders_stub, js, new_user
):
    user_id, auth = new_user()
    placed = (await orders_stub.PlaceOrder(request(), metadata=auth)).order
    await wait_until_sent(orders_process, placed.id)
    async with orders_process.sessions() as session:
        row = (
            await session.scalars(select(OutboxMessage).where(OutboxMessage.message_id == f"order-{placed.id}"))
        ).one()
    # One statement stored both: the row names the order rather than carrying a message.
    assert (row.order_id, row.payload, row.subject) == (placed.id, None, jetstream.accepted_subject(user_id))
    assert row.attempts == 0


async def test_an_accepted_order_is_sent_without_waiting_for_the_outbox_loop(
    orders_process, orders_stub, js, new_user, monkeypatch
):
    import asyncio

    user_id, auth = new_user()
    subject = jetstream.accepted_subject(user_id)
    stalled = asyncio.Event()

    async def stall() -> int:  # a loop pass that never ends, as behind a slow claim
        await stalled.wait()
        return 0

    monkeypatch.setattr(orders_process.publisher, "publish_batch", stall)
    try:
        placed = (await orders_stub.PlaceOrder(request(), metadata=auth)).order
        await wait_for_messages(js, subject, 1)
        await wait_until_sent(orders_process, placed.id)
    finally:
        stalled.set()


async def test_an_order_whose_immediate_send_fails_is_sent_by_the_outbox_loop(
    orders_process, orders_stub, js, new_user, monkeypatch
):
    user_id, auth = new_user()
    subject = jetstream.accepted_subject(user_id)
    publisher = orders_process.publisher
    publish = publisher._js.publish
    failed: list[str] = []

    async def fail_the_first(subject_, payload, **kwargs):
        if subject_ == subject and not failed:
            failed.append(subject_)
            raise TimeoutError("NATS did not answer")
        return await publish(subject_, payload, **kwargs)

    monkeypatch.setattr(publisher._js, "publish", fail_the_first)
    placed = (await orders_stub.PlaceOrder(request(), metadata=auth)).order
    await wait_until_sent(orders_process, placed.id)
    assert failed == [subject]
    await wait_for_messages(js, subject, 1)
    stored = await js.get_last_msg(jetstream.ORDERS_STREAM, subject)
    assert events_pb2.OrderAccepted.FromString(stored.data).order_id == placed.id


async def test_a_row_naming_a_missing_order_does_not_hold_back_the_others(orders_process, js, new_user):
    from sqlalchemy import insert

    user_id, _ = new_user()
    subject = jetstream.accepted_subject(user_id)
    async with orders_process.sessions() as session, session.begin():
        missing, stored = (
            await session.scalars(
                insert(OutboxMessage)
                .values([
                    {"subject": subject, "message_id": f"order-missing-{user_id}", "order_id": -user_id, "payload": None},
                    {"subject": subject, "message_id": f"order-stored-{user_id}", "order_id": None, "payload": b"kept"},
                ])
                .returning(OutboxMessage.id)
            )
        ).all()  # fmt: skip
    orders_process.publisher.wake()
    await wait_for_messages(js, subject, 1)
    async with orders_process.sessions() as session:
        rows = {
            row.id: row
            for row in await session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_([missing, stored])))
        }
    assert rows[stored].sent_at is not None
    assert rows[missing].sent_at is None and rows[missing].attempts >= 1
    async with orders_process.sessions() as session, session.begin():
        await session.execute(update(OutboxMessage).where(OutboxMessage.id == missing).values(sent_at=func.now()))


async def test_market_order_event_carries_no_limit_price(orders_stub, js, new_user):
    user_id, auth = new_user()
    placed = (await orders_stub.PlaceOrder(request(), metadata=auth)).order
    subject = jetstream.accepted_subject(user_id)
    await wait_for_messages(js, subject, 1)
    stored = await js.get_last_msg(jetstream.ORDERS_STREAM, subject)
    event = events_pb2.OrderAccepted.FromString(stored.data)
    assert event.order_id == placed.id and event.price == "" and event.trigger_price == ""


async def test_crash_between_commit_and_publish_is_sent_once_by_the_next_process(
    base_settings, orders_process, js, new_user
):
    user_id, _ = new_user()
    subject = jetstream.accepted_subject(user_id)
    # A process that commits and dies before its publisher runs: the order and its row are stored.
    crashed = OrdersProcess(base_settings)
    try:
        validated = new_order(request(), orders_process.instruments, None)
        placed = await crashed.store.place(user_id, validated, replicate=True)
    finally:
        await crashed.close()
    # The next process sends what is unsent when it starts.
    restarted = OrdersProcess(base_settings)
    await restarted.start_background()
    try:
        await wait_for_messages(js, subject, 1)
        # It published, then "crashed" before marking the row sent: the row goes out again.
        async with restarted.sessions() as session, session.begin():
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.message_id == f"order-{placed.order.id}")
                .values(sent_at=None)
            )
        restarted.publisher.wake()
        await wait_until_sent(restarted, placed.order.id)
    finally:
        await restarted.close()
    # JetStream dropped the repeat by its Nats-Msg-Id: one message for the order, ever.
    await wait_for_messages(js, subject, 1)
    stored = await js.get_last_msg(jetstream.ORDERS_STREAM, subject)
    assert stored.headers["Nats-Msg-Id"] == f"order-{placed.order.id}"


async def wait_until_sent(process, order_id: int, timeout: float = 5.0) -> None:
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with process.sessions() as session:
            sent_at = await session.scalar(
                select(OutboxMessage.sent_at).where(OutboxMessage.message_id == f"order-{order_id}")
            )
        if sent_at is not None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"outbox row of order {order_id} not sent within {timeout} s")


async def test_sent_rows_are_pruned_after_a_day(orders_process):
    from datetime import timedelta

    from sqlalchemy import func, insert

    def sent(ago: timedelta) -> dict:
        when = func.now() - ago
        return {"subject": "orders.accepted.0", "message_id": "pruned", "payload": b"", "created_at": when,
                "sent_at": when}  # fmt: skip

    async with orders_process.sessions() as session, session.begin():
        old, recent = (
            await session.scalars(
                insert(OutboxMessage)
                .values([sent(timedelta(days=2)), sent(timedelta(hours=3))])
                .returning(OutboxMessage.id)
            )
        ).all()
    await orders_process.publisher.prune()
    async with orders_process.sessions() as session:
        left = set(await session.scalars(select(OutboxMessage.id).where(OutboxMessage.id.in_([old, recent]))))
    assert left == {recent}
