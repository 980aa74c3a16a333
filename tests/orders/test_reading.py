"""ListMyOrders, GetOrder and GetOrderStats: each caller sees their own orders only."""

import grpc
import pytest
from sqlalchemy import insert

from copytrade.orders.v1 import orders_pb2
from services.orders.models import Order
from tests.orders.test_place_order import field_error, request

Code = grpc.StatusCode


async def place_many(stub, auth, *variants) -> list[int]:
    return [(await stub.PlaceOrder(request(**fields), metadata=auth)).order.id for fields in variants]


async def test_my_orders_are_paged_newest_first(orders_stub, new_user):
    _, auth = new_user()
    ids = await place_many(orders_stub, auth, *({"quantity": q} for q in range(1, 6)))
    seen, token, pages = [], "", 0
    while True:
        page = await orders_stub.ListMyOrders(
            orders_pb2.ListMyOrdersRequest(page_size=2, page_token=token), metadata=auth
        )
        seen += [o.id for o in page.orders]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))
    assert pages == 3


async def test_my_orders_filter_by_symbol_and_status(orders_stub, new_user):
    _, auth = new_user()
    reliance, infy = await place_many(orders_stub, auth, {}, {"symbol": "INFY", "price": 0})
    by_symbol = await orders_stub.ListMyOrders(orders_pb2.ListMyOrdersRequest(symbol="infy"), metadata=auth)
    assert [o.id for o in by_symbol.orders] == [infy]
    pending = await orders_stub.ListMyOrders(orders_pb2.ListMyOrdersRequest(status="pending"), metadata=auth)
    assert [o.id for o in pending.orders] == [infy, reliance]
    executed = await orders_stub.ListMyOrders(
        orders_pb2.ListMyOrdersRequest(status="EXECUTED"), metadata=auth
    )
    assert list(executed.orders) == []


async def test_another_users_orders_are_not_listed(orders_stub, new_user):
    _, alice = new_user()
    _, bob = new_user()
    await place_many(orders_stub, alice, {})
    listed = await orders_stub.ListMyOrders(orders_pb2.ListMyOrdersRequest(), metadata=bob)
    assert list(listed.orders) == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"status": "DONE"}, "status"),
        ({"page_size": -1}, "page_size"),
        ({"page_token": "not-a-token"}, "page_token"),
    ],
)
async def test_bad_list_requests_name_the_field(orders_stub, new_user, fields, field):
    _, auth = new_user()
    code, details, named = await field_error(
        orders_stub.ListMyOrders(orders_pb2.ListMyOrdersRequest(**fields), metadata=auth)
    )
    assert (code, named) == (Code.INVALID_ARGUMENT, field), details


async def test_page_token_is_tied_to_its_filters(orders_stub, new_user):
    _, auth = new_user()
    await place_many(orders_stub, auth, {}, {})
    first = await orders_stub.ListMyOrders(orders_pb2.ListMyOrdersRequest(page_size=1), metadata=auth)
    code, _, named = await field_error(
        orders_stub.ListMyOrders(
            orders_pb2.ListMyOrdersRequest(page_size=1, page_token=first.next_page_token, symbol="INFY"),
            metadata=auth,
        )
    )
    assert (code, named) == (Code.INVALID_ARGUMENT, "page_token")


async def test_get_order_is_owner_only_and_not_found_otherwise(orders_stub, new_user):
    _, alice = new_user()
    _, bob = new_user()
    (order_id,) = await place_many(orders_stub, alice, {"order_type": "LIMIT"})
    mine = await orders_stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), metadata=alice)
    assert (mine.order.id, mine.order.order_type, mine.order.price) == (order_id, "LIMIT", "2450.50")
    # Someone else's order answers exactly like one that does not exist.
    theirs = await field_error(
        orders_stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), metadata=bob)
    )
    missing = await field_error(
        orders_stub.GetOrder(orders_pb2.GetOrderRequest(order_id=2**62), metadata=bob)
    )
    assert theirs[0] == missing[0] == Code.NOT_FOUND
    assert theirs[1].replace(str(order_id), "N") == missing[1].replace(str(2**62), "N")


async def test_get_order_shows_a_master_order_with_its_follower_orders(orders_stub, orders_process, new_user):
    master_id, master = new_user()
    follower_ids = sorted(new_user("FOLLOWER")[0] for _ in range(3))
    (order_id,) = await place_many(orders_stub, master, {})
    # Follower orders as the replication pipeline's updates will record them.
    async with orders_process.sessions() as session, session.begin():
        await session.execute(
            insert(Order),
            [
                {
                    "user_id": follower, "is_master_order": False, "master_order_id": order_id,
                    "master_user_id": master_id, "symbol": "RELIANCE", "exchange": "NSE", "side": "BUY",
                    "order_type": "MARKET", "product": "CNC", "validity": "DAY", "quantity": 5, "status": status,
                    "broker_order_id": broker_id, "replication_latency_ms": latency,
                }
                for follower, status, broker_id, latency in zip(
                    follower_ids, ("OPEN", "REJECTED", "SKIPPED"), ("B1", "", ""), (90, 110, None), strict=True
                )
            ],
        )  # fmt: skip
    first = await orders_stub.GetOrder(
        orders_pb2.GetOrderRequest(order_id=order_id, follower_page_size=2), metadata=master
    )
    rest = await orders_stub.GetOrder(
        orders_pb2.GetOrderRequest(
            order_id=order_id, follower_page_token=first.follower_orders_next_page_token
        ),
        metadata=master,
    )
    listed = [o.user_id for o in (*first.follower_orders, *rest.follower_orders)]
    assert listed == follower_ids and rest.follower_orders_next_page_token == ""
    assert all(o.master_order_id == order_id and not o.is_master_order for o in first.follower_orders)
    stats = await orders_stub.GetOrderStats(orders_pb2.GetOrderStatsRequest(), metadata=master)
    assert stats.total_orders == 1 and dict(stats.orders_by_status) == {"PENDING": 1}
    assert stats.replicated_orders == 3
    # Two attempted (the skipped one was not), one accepted by the broker.
    assert stats.replication_success_percent == "50.00"
    assert (stats.replication_latency_p50_ms, stats.replication_latency_p95_ms) == ("100.0", "109.0")
    # A follower sees their own follower order, not the others'.
    follower_token = new_user_token(orders_process, follower_ids[0])
    theirs = await orders_stub.ListMyOrders(orders_pb2.ListMyOrdersRequest(), metadata=follower_token)
    assert [o.user_id for o in theirs.orders] == [follower_ids[0]]


def new_user_token(process, user_id: int):
    from copytrade.core.tokens import issue_access_token

    token, _ = issue_access_token(process.settings, user_id, "FOLLOWER")
    return (("authorization", f"Bearer {token}"),)


async def test_stats_count_by_status_in_a_window(orders_stub, new_user):
    _, auth = new_user()
    await place_many(orders_stub, auth, {}, {}, {"order_type": "LIMIT"})
    stats = await orders_stub.GetOrderStats(orders_pb2.GetOrderStatsRequest(), metadata=auth)
    assert stats.total_orders == 3 and dict(stats.orders_by_status) == {"PENDING": 3}
    assert (stats.replicated_orders, stats.replication_success_percent, stats.replication_latency_p50_ms) == (
        0,
        "",
        "",
    )
    future = await orders_stub.GetOrderStats(
        orders_pb2.GetOrderStatsRequest(since="2999-01-01T00:00:00Z"), metadata=auth
    )
    assert future.total_orders == 0
    code, _, named = await field_error(
        orders_stub.GetOrderStats(orders_pb2.GetOrderStatsRequest(until="yesterday"), metadata=auth)
    )
    assert (code, named) == (Code.INVALID_ARGUMENT, "until")
