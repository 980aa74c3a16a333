"""The broker gateway run in process against the session's mock IIFL, for tests of it and of its
callers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import grpc

from copytrade.core.migrate import upgrade_all
from copytrade.core.settings import Settings
from services.broker_gateway.server import BrokerGatewayProcess
from tests.mock_iifl.conftest import FAST, MockClient, MockServer


@contextlib.asynccontextmanager
async def running_gateway(
    base_settings: Settings, mock_server: MockServer, *, order_deadline_seconds: float
) -> AsyncIterator[BrokerGatewayProcess]:
    """A gateway on a free port; `.settings` points callers at it, `.channel` is a client channel."""
    settings = base_settings.model_copy(
        update={
            "mock_iifl_port": mock_server.port,
            # Short, so that tests of timeouts and unknown outcomes end quickly.
            "broker_request_timeout_seconds": 1.0,
            "broker_order_deadline_seconds": order_deadline_seconds,
            "broker_warm_connections": 0,
        }
    )
    await asyncio.to_thread(upgrade_all, settings)
    process = BrokerGatewayProcess(settings)
    port = await process.grpc.start(host="127.0.0.1", port=0)
    process.settings = settings.model_copy(update={"broker_gateway_grpc_target": f"127.0.0.1:{port}"})
    process.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield process
    finally:
        await process.channel.close()
        await process.grpc.stop(drain_seconds=0, grace_seconds=0)
        await process.close()


@contextlib.asynccontextmanager
async def fresh_mock(mock_server: MockServer) -> AsyncIterator[MockClient]:
    """The mock's control client, the mock reset to fast, deterministic defaults."""
    async with aiohttp.ClientSession() as http:
        client = MockClient(mock_server, http)
        await client.control("POST", "reset", {"config": FAST})
        yield client
