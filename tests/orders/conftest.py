import asyncio
import random

import grpc
import pytest

from copytrade.core import jetstream
from copytrade.core.migrate import upgrade_all
from copytrade.core.tokens import issue_access_token
from copytrade.orders.v1 import orders_pb2_grpc
from services.orders.server import OrdersProcess


@pytest.fixture(scope="session")
async def migrated(base_settings):
    await asyncio.to_thread(upgrade_all, base_settings)


@pytest.fixture(scope="session")
async def orders_process(base_settings, migrated):
    """The real orders process (servicers, outbox publisher) on an in-process server on a free port."""
    process = OrdersProcess(base_settings)
    await process.start(host="127.0.0.1", port=0)
    yield process
    await process.grpc.stop(drain_seconds=0, grace_seconds=0)
    await process.close()


@pytest.fixture(scope="session")
async def orders_stub(orders_process):
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{orders_process.grpc.port}")
    yield orders_pb2_grpc.OrderServiceStub(channel)
    await channel.close()


@pytest.fixture(scope="session")
async def js(base_settings):
    nc = await jetstream.connect(base_settings, "orders-tests")
    context = nc.jetstream()
    await jetstream.ensure_streams(context)
    yield context
    await nc.close()


@pytest.fixture
def new_user(base_settings):
    """Token metadata for a fresh user id: the orders service trusts the token, not the auth tables."""

    def make(role: str = "MASTER") -> tuple[int, tuple[tuple[str, str], ...]]:
        user_id = random.randrange(10**12, 2**62)
        token, _ = issue_access_token(base_settings, user_id, role)
        return user_id, (("authorization", f"Bearer {token}"),)

    return make
