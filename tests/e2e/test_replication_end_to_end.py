"""The product, end to end through Envoy: followers link their IIFL accounts and follow a master, the
master places an order, and each follower's sized copy lands once in their own account at the
(mock) broker, visible in the master's order and each follower's history."""

from decimal import Decimal

import httpx
import pytest

from tests.e2e.flows import eventually, link_and_follow, place_market_buy, register_and_login

pytestmark = pytest.mark.e2e
async def test_a_master_order_is_copied_to_every_follower_once(stack, rest, unique):
    master = await register_and_login(rest, unique, "MASTER")
    strategies = [
        {"copy_strategy": "FIXED_RATIO", "ratio": 1.0},  # the seed's body: the master's 5 shares
        {"copy_strategy": "FIXED_QUANTITY", "fixed_quantity": 3},
        {"copy_strategy": "PERCENTAGE", "percentage": 50},  # half of ₹10,000 at RELIANCE's price
    ]
    followers = []
    for strategy in strategies:
        follower = await register_and_login(rest, unique, "FOLLOWER")
        await link_and_follow(rest, unique, follower, master, strategy)
        followers.append(follower)

    order_id = await place_market_buy(rest, master["headers"], "RELIANCE", 5)

    async def master_view():
        return (await rest.get(f"/api/orders/{order_id}", headers=master["headers"])).json()

    def all_submitted(view) -> bool:
        copies = view.get("follower_orders", [])
        return len(copies) == 3 and all(c["status"] not in ("PENDING", "") for c in copies)

    view = await eventually(master_view, all_submitted)
    copies = {c["user_id"]: c for c in view.get("follower_orders", [])}
    assert set(copies) == {f["id"] for f in followers}, view
    # ₹10,000 of capital at RELIANCE's ₹1,412.30: 5 shares fit, and 50% of it buys 3.
    assert [copies[f["id"]]["quantity"] for f in followers] == ["5", "3", "3"], view
    assert all(c["status"] == "SUBMITTED" and c["broker_order_id"] for c in copies.values()), view

    # The master's replication report and statistics agree with the copies' own latencies.
    answer = await rest.get(f"/api/orders/{order_id}/replication", headers=master["headers"])
    assert answer.status_code == 200, answer.text
    report = answer.json()
    summary = report["summary"]
    assert (summary["followers_targeted"], summary["placed"], summary.get("pending", "0")) == ("3", "3", "0")
    assert summary["complete"] is True
    latencies = sorted(Decimal(c["replication_latency_ms"]) for c in copies.values())
    assert [Decimal(summary["first_follower_latency_ms"]), Decimal(summary["last_follower_latency_ms"])] == [
        latencies[0], latencies[-1],
    ]  # fmt: skip
    assert [f["follower_id"] for f in report["followers"]] == sorted((f["id"] for f in followers), key=int)
    assert {f["outcome"] for f in report["followers"]} == {"PLACED"}
    stats = (await rest.get("/api/orders/stats/summary", headers=master["headers"])).json()
    assert (stats["replicated_orders"], stats["replication_success_percent"]) == ("3", "100.00"), stats
    assert Decimal(stats["replication_latency_p50_ms"]) == latencies[1], stats
    assert latencies[1] <= Decimal(stats["replication_latency_p95_ms"]) <= latencies[2], stats
    # Nobody else learns that the order exists.
    other = await rest.get(f"/api/orders/{order_id}/replication", headers=followers[0]["headers"])
    assert other.status_code == 404, other.text

    # Each follower sees their own copy.
    for follower in followers:
        mine = await rest.get("/api/orders/my-orders", headers=follower["headers"])
        assert [o["master_order_id"] for o in mine.json()["orders"]] == [order_id]

    # The broker's ground truth: one order per follower account, none twice.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.settings.mock_iifl_port}") as mock:
        inspection = (await mock.get("/_mock/inspect", params={"by_tag": "1"})).json()
    assert inspection["totals"]["duplicates"] == 0
    received = {tag: n for account in inspection["accounts"] for tag, n in account["orders"].get("by_tag", {}).items()}
    assert all(received.get(copy["order_tag"]) == 1 for copy in copies.values()), (received, copies)


async def test_linking_unlinking_and_linking_again_reach_the_next_master_order(stack, rest, unique):
    """The replicator keeps which account each follower trades through between master orders: a
    link or unlink must reach the very next one, not one after the cache's expiry."""
    master = await register_and_login(rest, unique, "MASTER")
    follower = await register_and_login(rest, unique, "FOLLOWER")
    followed = await rest.post(
        "/api/masters/follow",
        json={"master_id": int(master["id"]), "copy_strategy": "FIXED_QUANTITY", "fixed_quantity": 2},
        headers=follower["headers"],
    )
    assert followed.status_code == 200, followed.text

    async def copy_of_next_order() -> dict:
        order_id = await place_market_buy(rest, master["headers"], "TCS", 1)

        async def view():
            return (await rest.get(f"/api/orders/{order_id}", headers=master["headers"])).json()

        def final(v) -> bool:
            copies = v.get("follower_orders", [])
            return len(copies) == 1 and copies[0]["status"] not in ("PENDING", "")

        copies = (await eventually(view, final))["follower_orders"]
        assert len(copies) == 1, copies
        return copies[0]

    first = await copy_of_next_order()
    assert (first["status"], first["status_reason_code"]) == ("FAILED", "ACCOUNT_NOT_LINKED"), first

    app_key = unique("K")
    link = {"dialect": "XTS", "client_code": app_key, "app_key": app_key, "app_secret": "s3cret"}
    linked = await rest.post("/api/broker/accounts", json=link, headers=follower["headers"])
    assert linked.status_code == 200, linked.text
    second = await copy_of_next_order()
    assert second["status"] == "SUBMITTED" and second["broker_order_id"], second

    unlinked = await rest.delete("/api/broker/accounts/me", headers=follower["headers"])
    assert unlinked.status_code == 200, unlinked.text
    third = await copy_of_next_order()
    assert (third["status"], third["status_reason_code"]) == ("FAILED", "ACCOUNT_NOT_LINKED"), third

    # Linked again: a new account (a new id), which the next copy must use.
    relinked = await rest.post("/api/broker/accounts", json=link, headers=follower["headers"])
    assert relinked.status_code == 200, relinked.text
    fourth = await copy_of_next_order()
    assert fourth["status"] == "SUBMITTED" and fourth["broker_order_id"], fourth
