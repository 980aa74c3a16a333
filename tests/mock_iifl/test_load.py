"""A load check, not a benchmark: 5,000 concurrent places at zero latency all succeed. Prints the rate."""

from __future__ import annotations

import asyncio
import hashlib
import time

import aiohttp

from tests.mock_iifl.conftest import ORDER_V1, MockClient

ACCOUNTS = 500
ORDERS_EACH = 10  # the per-session place limit: rate limits stay on


async def test_five_thousand_concurrent_places_complete_without_errors(mock: MockClient) -> None:
    await mock.configure(rate_limits={"enabled": True})
    url = mock.server.url
    # 500 accounts nobody registered: the daily login's auth code provisions each one.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def login(i: int) -> str:
            client_id = f"LOAD{i:04d}"
            async with http.post(
                f"{url}/_mock/v1/authcode", json={"client_id": client_id, "app_secret": "s"}
            ) as r:
                code = (await r.json())["auth_code"]
            checksum = hashlib.sha256(f"{client_id}{code}s".encode()).hexdigest()
            async with http.post(f"{url}/v1/getusersession", json={"checkSum": checksum}) as r:
                return (await r.json())["userSession"]

        tokens = await asyncio.gather(*(login(i) for i in range(ACCOUNTS)))

        async def place(token: str, n: int) -> tuple[int, str]:
            order = [{**ORDER_V1, "orderTag": f"L{n}"}]
            async with http.post(
                f"{url}/v1/orders", json=order, headers={"Authorization": f"Bearer {token}"}
            ) as r:
                body = await r.json(content_type=None)
                return r.status, body["result"][0]["status"]

        started = time.perf_counter()
        results = await asyncio.gather(*(place(token, n) for token in tokens for n in range(ORDERS_EACH)))
        elapsed = time.perf_counter() - started
    total = ACCOUNTS * ORDERS_EACH
    print(f"\nmock IIFL: {total} concurrent places in {elapsed:.2f}s = {total / elapsed:,.0f} req/s")
    assert results.count((200, "Success")) == total
    inspected = await mock.inspect()
    assert inspected["totals"]["orders"] == total
    assert inspected["totals"]["duplicates"] == 0
    assert inspected["stats"]["rate_limited"]["total"] == 0
