"""PlaceOrder over real gRPC, backed by real PostgreSQL and NATS."""

import math
import uuid

import grpc
import pytest
from sqlalchemy import func, select

from copytrade.orders.v1 import orders_pb2
from services.orders.models import OutboxMessage

Code = grpc.StatusCode
SEED = {"symbol": "RELIANCE", "side": "BUY", "order_type": "MARKET", "quantity": 10, "price": 2450.50}


def request(**fields) -> orders_pb2.PlaceOrderRequest:
    return orders_pb2.PlaceOrderRequest(**{**SEED, **fields})


async def field_error(call) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    error = raised.value
    return error.code(), error.details(), error.details().split(":", 1)[0]


async def outbox_rows(process, order_id: int) -> int:
    async with process.sessions() as session:
        return await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.message_id == f"order-{order_id}")
        )


async def test_seed_market_order_is_accepted_pending(orders_stub, new_user):
    user_id, auth = new_user()
    response = await orders_stub.PlaceOrder(request(), metadata=auth)
    order = response.order
    assert order.id > 0 and order.user_id == user_id and order.is_master_order
    assert (order.symbol, order.exchange, order.side, order.order_type) == (
        "RELIANCE",
        "NSE",
        "BUY",
        "MARKET",
    )
    # Defaults: CNC on a cash exchange, DAY validity; the MARKET price is the recorded reference price.
    assert (order.product, order.validity, order.quantity) == ("CNC", "DAY", 10)
    assert order.price == "2450.50" and order.trigger_price == ""
    assert order.status == "PENDING"
    assert order.created_at.endswith("Z")
    assert not response.idempotent_replay


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"order_type": "LIMIT", "price": 2450.5}, ("LIMIT", "2450.50", "")),
        ({"order_type": "sl", "price": 2450.5, "trigger_price": 2449.9}, ("SL", "2450.50", "2449.90")),
        ({"order_type": "SL-M", "price": 0, "trigger_price": 2449.9}, ("SL-M", "", "2449.90")),
        ({"order_type": "SLM", "side": "sell", "price": 0, "trigger_price": 2400}, ("SL-M", "", "2400.00")),
        ({"order_type": "market", "price": 0}, ("MARKET", "", "")),
    ],
)
async def test_each_order_type(orders_stub, new_user, fields, expected):
    _, auth = new_user()
    order = (await orders_stub.PlaceOrder(request(**fields), metadata=auth)).order
    assert (order.order_type, order.price, order.trigger_price) == expected


async def test_derivative_defaults_to_nrml_and_accepts_the_exchange_symbol(orders_stub, new_user):
    _, auth = new_user()
    future = await orders_stub.PlaceOrder(
        request(symbol="nifty26decfut", exchange="nfo", quantity=130, order_type="LIMIT", price=24500.1),
        metadata=auth,
    )
    assert (future.order.symbol, future.order.exchange, future.order.product) == (
        "NIFTY26DECFUT",
        "NFO",
        "NRML",
    )
    cash = await orders_stub.PlaceOrder(request(symbol="RELIANCE-EQ", product="mis"), metadata=auth)
    assert (cash.order.symbol, cash.order.product) == ("RELIANCE", "MIS")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"symbol": ""}, "symbol"),
        ({"symbol": "NOSUCHSTOCK"}, "symbol"),
        ({"symbol": "NIFTY26DECFUT"}, "symbol"),  # a derivative looked up on NSE cash
        ({"exchange": "MCX"}, "exchange"),
        ({"side": ""}, "side"),
        ({"side": "HOLD"}, "side"),
        ({"order_type": "STOP"}, "order_type"),
        ({"product": "MTF"}, "product"),
        ({"product": "NRML"}, "product"),  # carry-forward is for derivatives
        ({"validity": "GTC"}, "validity"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": -5}, "quantity"),
        ({"quantity": 70807}, "quantity"),  # above RELIANCE's freeze quantity
        ({"symbol": "NIFTY26DECFUT", "exchange": "NFO", "quantity": 10}, "quantity"),  # off the lot of 65
        ({"price": 2450.55}, "price"),  # off the 0.10 tick
        ({"price": -1}, "price"),
        ({"price": math.nan}, "price"),
        ({"price": math.inf}, "price"),
        ({"price": 1e20}, "price"),  # would not fit the column: a clear 400, never a 500
        ({"order_type": "LIMIT", "price": 0}, "price"),
        ({"order_type": "SL", "price": 0, "trigger_price": 2449.9}, "price"),
        ({"order_type": "SL", "price": 2450.5, "trigger_price": 0}, "trigger_price"),
        ({"order_type": "SL-M", "trigger_price": 0}, "trigger_price"),
        (
            {"order_type": "SL", "price": 2450.5, "trigger_price": 2460},
            "trigger_price",
        ),  # BUY stop above limit
        ({"order_type": "LIMIT", "trigger_price": 2449.9}, "trigger_price"),
        ({"trigger_price": -2}, "trigger_price"),
        ({"idempotency_key": "x" * 65}, "idempotency_key"),
        ({"idempotency_key": "has space"}, "idempotency_key"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    orders_stub, orders_process, new_user, fields, field
):
    _, auth = new_user()
    code, details, named = await field_error(orders_stub.PlaceOrder(request(**fields), metadata=auth))
    assert code == Code.INVALID_ARGUMENT, details
    assert named == field, details
    # Nothing half-written: the user has no order.
    listed = await orders_stub.ListMyOrders(orders_pb2.ListMyOrdersRequest(), metadata=auth)
    assert list(listed.orders) == []


async def test_follower_may_not_place(orders_stub, new_user):
    _, auth = new_user("FOLLOWER")
    code, details, _ = await field_error(orders_stub.PlaceOrder(request(), metadata=auth))
    assert code == Code.PERMISSION_DENIED, details


async def test_no_token_is_unauthenticated(orders_stub):
    code, _, _ = await field_error(orders_stub.PlaceOrder(request()))
    assert code == Code.UNAUTHENTICATED


async def test_same_key_twice_is_one_order_one_outbox_row_one_message(
    orders_stub, orders_process, js, new_user
):
    from copytrade.core import jetstream

    user_id, auth = new_user()
    key = str(uuid.uuid4())
    first = await orders_stub.PlaceOrder(request(idempotency_key=key), metadata=auth)
    # The header form (what Envoy makes of `Idempotency-Key`) and an equal-valued price spelling.
    second = await orders_stub.PlaceOrder(request(price=2450.5), metadata=(*auth, ("idempotency-key", key)))
    assert second.order.id == first.order.id
    assert (first.idempotent_replay, second.idempotent_replay) == (False, True)
    assert await outbox_rows(orders_process, first.order.id) == 1
    subject = jetstream.accepted_subject(user_id)
    await wait_for_messages(js, subject, 1)
    listed = await orders_stub.ListMyOrders(orders_pb2.ListMyOrdersRequest(), metadata=auth)
    assert [o.id for o in listed.orders] == [first.order.id]


async def test_same_key_different_body_is_already_exists(orders_stub, new_user):
    _, auth = new_user()
    key = str(uuid.uuid4())
    await orders_stub.PlaceOrder(request(idempotency_key=key), metadata=auth)
    code, details, named = await field_error(
        orders_stub.PlaceOrder(request(idempotency_key=key, quantity=11), metadata=auth)
    )
    assert (code, named) == (Code.ALREADY_EXISTS, "idempotency_key"), details


async def test_keys_are_per_user_and_header_must_match_field(orders_stub, new_user):
    key = str(uuid.uuid4())
    _, alice = new_user()
    _, bob = new_user()
    a = await orders_stub.PlaceOrder(request(idempotency_key=key), metadata=alice)
    b = await orders_stub.PlaceOrder(request(idempotency_key=key), metadata=bob)
    assert a.order.id != b.order.id and not b.idempotent_replay
    code, _, named = await field_error(
        orders_stub.PlaceOrder(request(idempotency_key=key), metadata=(*alice, ("idempotency-key", "other")))
    )
    assert (code, named) == (Code.INVALID_ARGUMENT, "idempotency_key")


async def test_concurrent_requests_with_one_key_place_one_order(orders_stub, orders_process, new_user):
    import asyncio

    _, auth = new_user()
    key = str(uuid.uuid4())
    answers = await asyncio.gather(
        *(orders_stub.PlaceOrder(request(idempotency_key=key), metadata=auth) for _ in range(8))
    )
    assert len({a.order.id for a in answers}) == 1
    assert sum(not a.idempotent_replay for a in answers) == 1
    assert await outbox_rows(orders_process, answers[0].order.id) == 1


async def wait_for_messages(js, subject: str, expected: int, timeout: float = 5.0) -> None:
    import asyncio

    from copytrade.core.jetstream import ORDERS_STREAM

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        info = await js.stream_info(ORDERS_STREAM, subjects_filter=subject)
        count = (info.state.subjects or {}).get(subject, 0)
        if count == expected or asyncio.get_running_loop().time() > deadline:
            assert count == expected
            return
        await asyncio.sleep(0.02)
