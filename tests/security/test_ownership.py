"""Reading or changing someone else's orders, subscriptions, broker account or statistics by id.

One small world per module: a master with an order, a follower who follows them with a linked
broker account (so the order is copied into the follower's account), and intruders of both roles.
Every call that takes an id is tried by every intruder; the victims' data must be untouched after.
"""

import asyncio
import base64
import json
import uuid

import grpc
import httpx
import pytest

from copytrade.broker.v1 import broker_pb2, broker_pb2_grpc
from copytrade.orders.v1 import orders_pb2, orders_pb2_grpc
from copytrade.replicator.v1 import replicator_pb2, replicator_pb2_grpc
from tests.security.actors import Actors, grpc_code

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def world(stack):
    counter = iter(range(1_000_000))
    run = uuid.uuid4().hex[:6]

    def unique(prefix: str = "u") -> str:
        return f"{prefix}{run}{next(counter)}"

    async with httpx.AsyncClient(base_url=stack.envoy_url, timeout=30) as rest:
        actors = Actors(stack, rest, unique)
        master, follower = await actors.user("MASTER"), await actors.user("FOLLOWER")
        intruder_master, intruder_follower = await actors.user("MASTER"), await actors.user("FOLLOWER")
        account = await actors.link_xts(follower)
        subscription = await actors.follow(follower, master, copy_strategy="FIXED_QUANTITY", fixed_quantity=2)
        order = await actors.place(master)
        copy = await _wait_for_copy(rest, follower, int(order["id"]))
        yield {
            "master": master,
            "follower": follower,
            "intruders": {"master": intruder_master, "follower": intruder_follower},
            "account": account,
            "subscription": subscription,
            "order": order,
            "copy": copy,
        }


async def _wait_for_copy(rest, follower, master_order_id: int) -> dict:
    for _ in range(200):
        orders = (await rest.get("/api/orders/my-orders", headers=follower.headers)).json().get("orders", [])
        copies = [o for o in orders if int(o["master_order_id"]) == master_order_id]
        if copies:
            return copies[0]
        await asyncio.sleep(0.05)
    raise AssertionError("the master's order was never copied to the follower")


def intruders(world):
    return list(world["intruders"].items())


async def test_nobody_reads_someone_elses_order_by_id(rest, world):
    missing = await rest.get("/api/orders/9000000000000", headers=world["master"].headers)
    assert missing.status_code == 404
    targets = {"master's order": world["order"]["id"], "follower's copy": world["copy"]["id"]}
    readers = {**dict(intruders(world)), "the order's follower": world["follower"]}
    for target, order_id in targets.items():
        for who, actor in readers.items():
            if (target, who) == ("follower's copy", "the order's follower"):
                continue  # their own
            for path in (f"/api/orders/{order_id}", f"/api/orders/{order_id}/replication"):
                response = await rest.get(path, headers=actor.headers)
                # Exactly like an order that does not exist: ids reveal nothing.
                assert response.status_code == 404, (target, who, path, response.text)
                assert response.json() == {"code": 5, "message": f"order {order_id} not found", "details": []}
    # The control: the owners do see them.
    assert (await rest.get(f"/api/orders/{world['order']['id']}", headers=world["master"].headers)).status_code == 200
    assert (await rest.get(f"/api/orders/{world['copy']['id']}", headers=world["follower"].headers)).status_code == 200


async def test_nobody_reads_someone_elses_order_over_grpc(stack, world):
    order_id = int(world["order"]["id"])
    for _, actor in intruders(world):
        async with grpc.aio.insecure_channel(stack.grpc_target("orders")) as channel:
            stub = orders_pb2_grpc.OrderServiceStub(channel)
            calls = {
                "get": stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), metadata=actor.metadata),
                "report": stub.GetReplicationReport(
                    orders_pb2.GetReplicationReportRequest(order_id=order_id), metadata=actor.metadata
                ),
                "watch": stub.WatchOrders(
                    orders_pb2.WatchOrdersRequest(order_id=order_id, heartbeat_seconds=5),
                    metadata=actor.metadata,
                    timeout=5,
                ),
            }
            for name, call in calls.items():
                assert await grpc_code(call) == grpc.StatusCode.NOT_FOUND, name


async def test_nobody_cancels_someone_elses_order(rest, world):
    order_id = world["order"]["id"]
    before = (await rest.get(f"/api/orders/{order_id}", headers=world["master"].headers)).json()["order"]
    for _, actor in intruders(world):
        for keep in (False, True):
            response = await rest.post(
                f"/api/orders/{order_id}:cancel", json={"keep_follower_orders": keep}, headers=actor.headers
            )
            assert response.status_code in (404, 501), response.text
    after = (await rest.get(f"/api/orders/{order_id}", headers=world["master"].headers)).json()["order"]
    assert before["status"] != "CANCELLED" and after["status"] != "CANCELLED"


async def test_watch_streams_carry_only_the_callers_own_orders(stack, world):
    master = world["master"]
    watchers = {"victim": master, **{f"intruding {role}": actor for role, actor in intruders(world)}}
    seen: dict[str, list] = {name: [] for name in watchers}

    async def watch(name, actor):
        async with grpc.aio.insecure_channel(stack.grpc_target("orders")) as channel:
            stub = orders_pb2_grpc.OrderServiceStub(channel)
            call = stub.WatchOrders(
                orders_pb2.WatchOrdersRequest(include_follower_orders=True, heartbeat_seconds=5),
                metadata=actor.metadata,
                timeout=4,
            )
            try:
                async for event in call:
                    seen[name].append(event)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc

    tasks = [asyncio.create_task(watch(name, actor)) for name, actor in watchers.items()]
    await asyncio.sleep(1.0)  # every stream is subscribed before the order is placed
    async with httpx.AsyncClient(base_url=stack.envoy_url, timeout=30) as rest:
        placed = await Actors(stack, rest, None).place(master)
    await asyncio.gather(*tasks)

    def order_ids(events) -> set[int]:
        ids = set()
        for event in events:
            if event.HasField("order_update"):
                ids.add(event.order_update.order.id)
                ids.add(event.order_update.order.master_order_id)
            if event.HasField("replication_summary"):
                ids.add(event.replication_summary.master_order_id)
        return ids - {0}

    # The control: the master hears about their own order.
    assert int(placed["id"]) in order_ids(seen["victim"])
    for name in watchers.keys() - {"victim"}:
        leaked = order_ids(seen[name])
        assert not leaked, (name, leaked)


async def test_statistics_and_order_lists_are_the_callers_own(rest, world):
    master_ids = {o["id"] for o in (await rest.get("/api/orders/my-orders", headers=world["master"].headers)).json()["orders"]}
    assert world["order"]["id"] in master_ids
    stats = (await rest.get("/api/orders/stats/summary", headers=world["master"].headers)).json()
    assert int(stats["total_orders"]) >= 1
    for _, actor in intruders(world):
        for query in ("", f"?user_id={world['master'].id}", f"?userId={world['master'].id}"):
            listed = await rest.get(f"/api/orders/my-orders{query}", headers=actor.headers)
            if query:
                assert listed.status_code == 400, listed.text
                continue
            assert listed.json().get("orders", []) == []
            summary = await rest.get(f"/api/orders/stats/summary{query}", headers=actor.headers)
            assert summary.json()["total_orders"] == "0", summary.text
        # A page token made up to point into someone else's orders yields only one's own.
        forged = base64.urlsafe_b64encode(json.dumps({"after": 0, "user_id": world["master"].id}).encode()).decode()
        response = await rest.get(f"/api/orders/my-orders?page_token={forged}", headers=actor.headers)
        assert response.status_code == 400 or response.json().get("orders", []) == []


async def test_nobody_changes_someone_elses_subscription(rest, world):
    master_id = world["master"].id
    follower = world["follower"]
    before = (await rest.get("/api/masters/following", headers=follower.headers)).json()["subscriptions"]
    assert [s["id"] for s in before] == [world["subscription"]["id"]]
    for _, actor in intruders(world):
        attempts = [
            ("PATCH", f"/api/masters/{master_id}/follow", {"copy_strategy": "FIXED_RATIO", "ratio": 50}),
            ("PATCH", f"/api/masters/{master_id}/follow", {"fixed_quantity": 9999, "follower_id": follower.id}),
            ("DELETE", f"/api/masters/{master_id}/follow", None),
            ("POST", f"/api/masters/{master_id}:unfollow", {"follower_id": follower.id}),
            ("POST", f"/api/masters/{master_id}/follow:pause", {}),
            ("POST", f"/api/masters/{master_id}/follow:resume", {}),
        ]
        for method, path, body in attempts:
            response = await rest.request(method, path, json=body, headers=actor.headers)
            assert response.status_code in (403, 404), (method, path, response.text)
        # A forged page token shows the intruder their own subscriptions only.
        forged = base64.urlsafe_b64encode(json.dumps({"after": 0}).encode()).decode()
        mine = await rest.get(f"/api/masters/following?page_token={forged}", headers=actor.headers)
        assert mine.status_code == 200 and mine.json().get("subscriptions", []) == []
        followers = await rest.get("/api/masters/me/followers", headers=actor.headers)
        assert follower.username not in followers.text
    after = (await rest.get("/api/masters/following", headers=follower.headers)).json()["subscriptions"]
    assert after == before


async def test_nobody_reads_or_changes_someone_elses_broker_account(stack, rest, world):
    follower = world["follower"]
    before = (await rest.get("/api/broker/accounts/me", headers=follower.headers)).json()["account"]
    for _, actor in intruders(world):
        attempts = [
            ("GET", "/api/broker/accounts/me", None, 404),
            ("GET", f"/api/broker/accounts/me?user_id={follower.id}", None, 400),
            ("GET", f"/api/broker/accounts/{before['id']}", None, 404),
            ("GET", f"/api/broker/accounts/{follower.id}", None, 404),
            ("POST", "/api/broker/accounts/me:relink", {"user_id": follower.id}, 404),
            ("POST", "/api/broker/accounts/me:relink", {"app_key": "evil", "app_secret": "evil"}, 404),
            ("DELETE", "/api/broker/accounts/me", None, 404),
            ("DELETE", f"/api/broker/accounts/{before['id']}", None, 404),
        ]
        for method, path, body, status in attempts:
            response = await rest.request(method, path, json=body, headers=actor.headers)
            assert response.status_code == status, (method, path, response.text)
        # Linking the victim's broker account to oneself is refused: one account, one user.
        taken = await rest.post(
            "/api/broker/accounts",
            json={"dialect": "XTS", "client_code": world["account"]["client_code"],
                  "app_key": world["account"]["app_key"], "app_secret": "guess"},
            headers=actor.headers,
        )  # fmt: skip
        assert taken.status_code in (400, 409), taken.text
        assert (await rest.get("/api/broker/accounts/me", headers=actor.headers)).status_code == 404
    after = (await rest.get("/api/broker/accounts/me", headers=follower.headers)).json()["account"]
    assert after == before
    # Over gRPC the account calls take no id at all: they act on the caller's account only.
    async with grpc.aio.insecure_channel(stack.grpc_target("broker_gateway")) as channel:
        stub = broker_pb2_grpc.BrokerAccountServiceStub(channel)
        for _, actor in intruders(world):
            assert await grpc_code(
                stub.GetLinkedAccount(broker_pb2.GetLinkedAccountRequest(), metadata=actor.metadata)
            ) == grpc.StatusCode.NOT_FOUND
    assert {f.name for f in broker_pb2.GetLinkedAccountRequest.DESCRIPTOR.fields} == set()
    assert {f.name for f in broker_pb2.UnlinkAccountRequest.DESCRIPTOR.fields} == set()
    assert "user_id" not in {f.name for f in broker_pb2.RelinkAccountRequest.DESCRIPTOR.fields}


async def test_subscription_calls_take_no_follower_id_over_grpc(stack, world):
    """The follower is always the caller: a gRPC client has no field to name anyone else."""
    for message in (
        replicator_pb2.UpdateFollowRequest, replicator_pb2.UnfollowRequest, replicator_pb2.PauseFollowingRequest,
        replicator_pb2.ResumeFollowingRequest, replicator_pb2.FollowRequest,
    ):  # fmt: skip
        assert "follower_id" not in {f.name for f in message.DESCRIPTOR.fields}, message
    async with grpc.aio.insecure_channel(stack.grpc_target("replicator")) as channel:
        stub = replicator_pb2_grpc.ReplicatorServiceStub(channel)
        for _, actor in intruders(world):
            request = replicator_pb2.UnfollowRequest(master_id=world["master"].id)
            assert await grpc_code(stub.Unfollow(request, metadata=actor.metadata)) in (
                grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.PERMISSION_DENIED,
            )


async def test_someone_elses_idempotency_key_yields_ones_own_order(rest, world):
    """Keys are per user: reusing a victim's key (and body) must not replay the victim's order to the
    intruder, nor stop the intruder's own order."""
    key = f"victim-{uuid.uuid4().hex}"
    body = {"symbol": "RELIANCE", "side": "BUY", "order_type": "MARKET", "quantity": 1}
    victims = await rest.post("/api/orders/place", json=body, headers={**world["master"].headers, "Idempotency-Key": key})
    assert victims.status_code == 200, victims.text
    intruder = world["intruders"]["master"]
    for attempt in (
        {"json": body, "headers": {**intruder.headers, "Idempotency-Key": key}},
        {"json": {**body, "idempotency_key": key}, "headers": intruder.headers},
    ):
        response = await rest.post("/api/orders/place", **attempt)
        assert response.status_code == 200, response.text
        order = response.json()["order"]
        assert order["user_id"] == str(intruder.id)
        assert order["id"] != victims.json()["order"]["id"]
