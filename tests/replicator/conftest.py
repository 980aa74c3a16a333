import asyncio

import grpc
import pytest

from copytrade.auth.v1 import auth_pb2_grpc
from copytrade.core.migrate import upgrade_all
from copytrade.replicator.v1 import replicator_pb2_grpc
from services.auth.server import AuthProcess
from services.replicator.server import ReplicatorProcess


@pytest.fixture(scope="session")
async def auth_port(base_settings):
    """The real auth process (the user directory the replicator asks) on a free port."""
    await asyncio.to_thread(upgrade_all, base_settings)
    process = AuthProcess(base_settings)
    port = await process.grpc.start(host="127.0.0.1", port=0)
    yield port
    await process.grpc.stop(drain_seconds=0, grace_seconds=0)
    await process.close()


@pytest.fixture(scope="session")
def replicator_settings(base_settings, auth_port):
    return base_settings.model_copy(update={"auth_grpc_target": f"127.0.0.1:{auth_port}"})


@pytest.fixture(scope="session")
async def replicator(replicator_settings):
    process = ReplicatorProcess(replicator_settings)
    await process.connect()
    await process.grpc.start(host="127.0.0.1", port=0)
    yield process
    await process.grpc.stop(drain_seconds=0, grace_seconds=0)
    await process.close()


@pytest.fixture(scope="session")
async def replicator_stub(replicator):
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{replicator.grpc.port}")
    yield replicator_pb2_grpc.ReplicatorServiceStub(channel)
    await channel.close()


@pytest.fixture(scope="session")
async def auth_stub(auth_port):
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{auth_port}")
    yield auth_pb2_grpc.AuthServiceStub(channel)
    await channel.close()
