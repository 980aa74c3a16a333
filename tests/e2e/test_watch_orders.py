"""WatchOrders through Envoy: server-sent events for REST clients, a native gRPC stream for tools."""

import asyncio
import json
import struct

import grpc
import httpx
import pytest

from copytrade.orders.v1 import orders_pb2, orders_pb2_grpc
from tests.e2e.flows import link_and_follow, register_and_login

pytestmark = pytest.mark.e2e
# Long enough for the streams to subscribe before the order is placed: nothing is sent until then.
SUBSCRIBE_SECONDS = 0.5


async def sse_events(response):
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            yield json.loads(line.removeprefix("data:"))


async def test_watch_streams_the_copies_as_sse_and_grpc(stack, rest, unique):
    master = await register_and_login(rest, unique, "MASTER")
    follower = await register_and_login(rest, unique, "FOLLOWER")
    await link_and_follow(
        rest, unique, follower, master, {"copy_strategy": "FIXED_QUANTITY", "fixed_quantity": 2}
    )

    async def place() -> str:
        await asyncio.sleep(SUBSCRIBE_SECONDS)
        placed = await rest.post(
            "/api/orders/place",
            json={"symbol": "RELIANCE", "side": "BUY", "order_type": "MARKET", "quantity": 5},
            headers=master["headers"],
        )
        assert placed.status_code == 200, placed.text
        return placed.json()["order"]["id"]

    async def follower_over_grpc() -> orders_pb2.OrderStatusChange:
        async with grpc.aio.insecure_channel(stack.envoy_target) as channel:
            call = orders_pb2_grpc.OrderServiceStub(channel).WatchOrders(
                orders_pb2.WatchOrdersRequest(),
                metadata=(("authorization", follower["headers"]["Authorization"]),),
            )
            try:
                async for event in call:
                    if event.HasField("order_update"):
                        return event.order_update
            finally:
                call.cancel()
        raise AssertionError("the follower's stream ended without an update")

    follower_watch = asyncio.create_task(follower_over_grpc())
    placing = asyncio.create_task(place())
    updates, summary = [], None
    async with rest.stream(
        "GET", "/api/orders/watch", params={"include_follower_orders": "true"}, headers=master["headers"]
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async with asyncio.timeout(20):
            async for event in sse_events(response):
                if "order_update" in event:
                    updates.append(event["order_update"]["order"])
                    assert event["cursor"]
                if "replication_summary" in event and event["replication_summary"].get("complete"):
                    summary = event["replication_summary"]
                    break
    order_id = await placing
    assert summary["master_order_id"] == order_id
    assert (summary["followers_targeted"], summary["placed"]) == ("1", "1"), summary
    assert {(u["user_id"], u["master_order_id"]) for u in updates} == {(follower["id"], order_id)}

    copy = await asyncio.wait_for(follower_watch, 20)
    assert copy.order.master_order_id == int(order_id)
    assert copy.order.user_id == int(follower["id"])


async def test_a_bad_watch_request_is_a_400_naming_the_field(stack, rest, unique):
    user = await register_and_login(rest, unique, "FOLLOWER")
    answer = await rest.get("/api/orders/watch", params={"heartbeat_seconds": 3}, headers=user["headers"])
    assert answer.status_code == 400, answer.text
    assert "heartbeat_seconds" in answer.text


async def test_watch_over_grpc_web_through_envoy(stack, rest, unique):
    """A browser's gRPC-Web stream: data frames as events arrive, then the end event and trailers."""
    user = await register_and_login(rest, unique, "FOLLOWER")
    payload = orders_pb2.WatchOrdersRequest(heartbeat_seconds=5).SerializeToString()
    frame = b"\x00" + struct.pack(">I", len(payload)) + payload
    headers = {
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
        # The deadline ends the stream: the server says so with an explicit end event first.
        "grpc-timeout": "3S",
        "authorization": user["headers"]["Authorization"],
    }
    async with httpx.AsyncClient(base_url=stack.envoy_url, timeout=20) as client:
        response = await client.post("/copytrade.orders.v1.OrderService/WatchOrders", content=frame, headers=headers)
    assert response.status_code == 200, response.text
    body, events, trailers = response.content, [], b""
    while body:
        flag, length = body[0], struct.unpack(">I", body[1:5])[0]
        chunk, body = body[5 : 5 + length], body[5 + length :]
        if flag & 0x80:
            trailers = chunk
        else:
            events.append(orders_pb2.WatchOrdersResponse.FromString(chunk))
    assert events and events[-1].HasField("end"), events
    assert events[-1].end.reason
    assert b"grpc-status:0" in trailers
