import asyncio

import grpc
import pytest

from copytrade.auth.v1 import auth_pb2_grpc
from copytrade.core.migrate import upgrade_all
from copytrade.platform.v1 import platform_pb2_grpc
from services.auth.server import AuthProcess


@pytest.fixture(scope="session")
async def auth_channel(base_settings):
    """The real auth servicers in an in-process grpc.aio server on a free port."""
    await asyncio.to_thread(upgrade_all, base_settings)
    process = AuthProcess(base_settings)
    port = await process.grpc.start(host="127.0.0.1", port=0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield channel
    await channel.close()
    await process.grpc.stop(drain_seconds=0, grace_seconds=0)
    await process.close()


@pytest.fixture(scope="session")
def auth_stub(auth_channel):
    return auth_pb2_grpc.AuthServiceStub(auth_channel)


@pytest.fixture(scope="session")
def platform_stub(auth_channel):
    return platform_pb2_grpc.PlatformServiceStub(auth_channel)
