"""The mock IIFL server as the stack runs it: `python -m mock_iifl`, a real process on free ports.

One server for the session, started from stack.apps' own entry (so the entry is tested too) and
stopped by pid. Each test starts from POST /_mock/reset with fast, deterministic settings: no
latency, quick order steps, rate limits off (the rate-limit tests turn them on).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from stack import ManagedProcess, apps
from stack.context import StackContext, settings_from_env
from stack.ports import free_port_env

FAST = {
    "latency": {"kind": "zero"},
    "lifecycle": {"ack_ms": 30, "fill_ms": 30},
    "rate_limits": {"enabled": False},
    "seed": 7,
}
ORDER_V1 = {
    "instrumentId": "2885",
    "exchange": "NSEEQ",
    "transactionType": "BUY",
    "quantity": "5",
    "orderComplexity": "REGULAR",
    "product": "INTRADAY",
    "orderType": "MARKET",
    "validity": "DAY",
    "marketProtectionPercent": "2",
}
ORDER_XTS = {
    "exchangeSegment": "NSECM",
    "exchangeInstrumentID": 2885,
    "productType": "MIS",
    "orderType": "MARKET",
    "orderSide": "BUY",
    "timeInForce": "DAY",
    "disclosedQuantity": 0,
    "orderQuantity": 5,
    "limitPrice": 0,
    "stopPrice": 0,
}


@dataclass(frozen=True)
class MockServer:
    port: int
    h2_port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def h2_url(self) -> str:
        return f"http://127.0.0.1:{self.h2_port}"


@pytest.fixture(scope="session")
async def mock_server() -> AsyncIterator[MockServer]:
    folder = Path(tempfile.mkdtemp(prefix="mock-iifl-test-"))
    env = {**free_port_env(folder), "PYTHONUNBUFFERED": "1"}
    ctx = StackContext(settings_from_env(env), {**os.environ, **env})
    entry = next(app for app in apps.APPS if app.name == "mock_iifl")
    process = ManagedProcess(entry.spec(ctx), folder / "mock_iifl.log")
    await process.start()
    try:
        await process.wait_ready()
        assert process.pid is not None
        yield MockServer(ctx.settings.mock_iifl_port, ctx.settings.mock_iifl_h2_port, process.pid)
    finally:
        code = await process.stop()
        shutil.rmtree(folder, ignore_errors=True)
    assert code == 0, "the mock did not stop cleanly on SIGTERM"


@dataclass
class Reply:
    status: int
    body: Any  # JSON, or the raw text when the body is not JSON
    text: str


class MockClient:
    """Talks to the mock like a broker client would, plus its control API."""

    def __init__(self, server: MockServer, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        bearer: bool = True,
        json: Any = None,
        params: dict | None = None,
        timeout: float = 10,
    ) -> Reply:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}" if bearer else token
        async with self.http.request(
            method,
            self.server.url + path,
            json=json,
            params=params,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            text = await response.text()
            try:
                body = await response.json(content_type=None) if text else None
            except ValueError:
                body = text
            return Reply(response.status, body, text)

    async def control(self, method: str, path: str, json: Any = None, params: dict | None = None) -> Any:
        reply = await self.call(method, f"/_mock/{path}", json=json, params=params)
        assert reply.status in (200, 201), reply.text
        return reply.body

    async def configure(self, **sections: Any) -> dict:
        return await self.control("POST", "config", sections)

    async def inspect(self, **query: str) -> dict:
        return await self.control("GET", "inspect", params=query or None)

    async def account(self, dialect: str, client_id: str) -> dict:
        return await self.control("GET", f"accounts/{dialect}/{client_id}")

    # IIFL Capital v1.

    async def v1_register(self, client_id: str, secret: str = "secret1", **fields: Any) -> dict:
        return await self.control(
            "POST", "accounts", {"dialect": "iifl_v1", "client_id": client_id, "app_secret": secret, **fields}
        )

    async def v1_login(self, client_id: str, auth_code: str, secret: str = "secret1") -> Reply:
        checksum = hashlib.sha256(f"{client_id}{auth_code}{secret}".encode()).hexdigest()
        return await self.call("POST", "/v1/getusersession", json={"checkSum": checksum})

    async def v1_session(self, client_id: str, secret: str = "secret1", **fields: Any) -> str:
        """Register (or, if known, log in again with a fresh auth code) and return a session token."""
        if await self._exists("iifl_v1", client_id):
            code = (await self.control("POST", f"accounts/iifl_v1/{client_id}/authcode"))["auth_code"]
        else:
            code = (await self.v1_register(client_id, secret, **fields))["auth_code"]
        reply = await self.v1_login(client_id, code, secret)
        assert reply.body["status"] == "Ok", reply.text
        return reply.body["userSession"]

    async def v1_place(self, token: str, *orders: dict) -> Reply:
        return await self.call("POST", "/v1/orders", token=token, json=list(orders))

    async def v1_book(self, token: str) -> list[dict]:
        reply = await self.call("GET", "/v1/orders", token=token)
        result = reply.body["result"]
        return [] if isinstance(result, dict) else result

    async def v1_order(self, token: str, order_id: str) -> dict:
        return next(row for row in await self.v1_book(token) if row["brokerOrderId"] == order_id)

    # XTS.

    async def xts_session(self, app_key: str, secret: str = "xsecret") -> str:
        reply = await self.xts_login(app_key, secret)
        assert reply.body["type"] == "success", reply.text
        return reply.body["result"]["token"]

    async def xts_login(self, app_key: str, secret: str = "xsecret") -> Reply:
        return await self.call(
            "POST",
            "/interactive/user/session",
            json={"appKey": app_key, "secretKey": secret, "source": "WEBAPI"},
        )

    async def xts(self, method: str, path: str, token: str, **kwargs: Any) -> Reply:
        return await self.call(method, f"/interactive/{path}", token=token, bearer=False, **kwargs)

    async def xts_order(self, token: str, app_order_id: int) -> dict:
        reply = await self.xts("GET", "orders", token)
        return next(row for row in reply.body["result"] if row["AppOrderID"] == app_order_id)

    async def _exists(self, dialect: str, client_id: str) -> bool:
        return (await self.call("GET", f"/_mock/accounts/{dialect}/{client_id}")).status == 200


@pytest.fixture
async def mock(mock_server: MockServer) -> AsyncIterator[MockClient]:
    async with aiohttp.ClientSession() as http:
        client = MockClient(mock_server, http)
        await client.control("POST", "reset", {"config": FAST})
        yield client


async def eventually(
    probe: Callable[[], Awaitable[Any]], accept: Callable[[Any], bool], timeout: float = 5.0
) -> Any:
    """Poll probe until accept(result); fail with the last result if it never does."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await probe()
        if accept(result):
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last: {result!r}")
        await asyncio.sleep(0.02)
