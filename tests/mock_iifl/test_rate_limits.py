"""Per-session rate limits from IIFL_API.md's table: the call over the limit gets 429 with no body."""

from __future__ import annotations

import asyncio

from tests.mock_iifl.conftest import ORDER_V1, ORDER_XTS, MockClient


async def burst(mock: MockClient, count: int, call) -> list[int]:
    replies = await asyncio.gather(*(call(i) for i in range(count)))
    return sorted(reply.status for reply in replies)


async def test_eleven_places_in_a_second_get_one_429_without_a_body(mock: MockClient) -> None:
    await mock.configure(rate_limits={"enabled": True})
    token = await mock.v1_session("RL1")
    statuses = await burst(mock, 11, lambda i: mock.v1_place(token, {**ORDER_V1, "orderTag": f"r{i}"}))
    assert statuses == [200] * 10 + [429]
    over = await mock.v1_place(token, ORDER_V1)
    assert (over.status, over.text) == (429, "")
    # Another session has its own window.
    other = await mock.v1_session("RL2")
    assert (await mock.v1_place(other, ORDER_V1)).status == 200
    await asyncio.sleep(1.05)
    assert (await mock.v1_place(token, ORDER_V1)).status == 200
    inspected = await mock.inspect()
    assert inspected["stats"]["rate_limited"] == {"total": 2, "iifl_v1.place": 2}
    assert inspected["totals"]["orders"] == 12  # refused calls placed nothing


async def test_reads_are_held_to_three_a_second(mock: MockClient) -> None:
    await mock.configure(rate_limits={"enabled": True})
    token = await mock.v1_session("RL3")
    assert await burst(mock, 4, lambda i: mock.call("GET", "/v1/orders", token=token)) == [200, 200, 200, 429]
    assert await burst(mock, 10, lambda i: mock.call("GET", "/v1/limits", token=token)) == [200] * 10


async def test_xts_order_writes_share_one_bucket(mock: MockClient) -> None:
    await mock.configure(rate_limits={"enabled": True})
    token = await mock.xts_session("rlkey")
    placed = await burst(
        mock,
        8,
        lambda i: mock.xts("POST", "orders", token, json={**ORDER_XTS, "orderUniqueIdentifier": f"w{i}"}),
    )
    cancels = await burst(mock, 3, lambda i: mock.xts("DELETE", "orders", token, params={"appOrderID": "1"}))
    assert placed == [200] * 8
    assert cancels.count(429) == 1  # 8 places + 2 cancels fill the 10/s bucket


async def test_limits_can_be_raised_per_run_and_per_account(mock: MockClient) -> None:
    await mock.configure(rate_limits={"enabled": True, "per_second": {"iifl_v1.orders": 5}})
    token = await mock.v1_session("RL4")
    assert await burst(mock, 6, lambda i: mock.call("GET", "/v1/orders", token=token)) == [200] * 5 + [429]
    free = await mock.v1_session("RL5", config={"rate_limits": {"enabled": False}})
    assert await burst(mock, 20, lambda i: mock.call("GET", "/v1/orders", token=free)) == [200] * 20


async def test_rate_limits_are_on_by_default(mock: MockClient) -> None:
    await mock.control("POST", "reset", {})
    assert (await mock.control("GET", "config"))["rate_limits"]["enabled"] is True
    latency = (await mock.control("GET", "config"))["latency"]
    assert (latency["kind"], latency["min_ms"], latency["max_ms"]) == ("uniform", 50.0, 150.0)
