"""What the service interceptor answers for errors a servicer did not map itself."""

import grpc
import pytest
from sqlalchemy.exc import DBAPIError

from copytrade.core.server import GrpcService
from copytrade.core.settings import Settings
from copytrade.orders.v1 import orders_pb2, orders_pb2_grpc

_ORDERS = orders_pb2.DESCRIPTOR.services_by_name["OrderService"]
PUBLIC = frozenset(f"/{_ORDERS.full_name}/{name}" for name in ("PlaceOrder", "GetOrder"))


class Servicer(orders_pb2_grpc.OrderServiceServicer):
    async def PlaceOrder(self, request, context):
        # What asyncpg's "connection was closed" becomes after a PostgreSQL restart.
        raise DBAPIError("INSERT ...", {}, ConnectionResetError("closed"), connection_invalidated=True)

    async def GetOrder(self, request, context):
        raise DBAPIError("SELECT ...", {}, ValueError("a bug, not a lost connection"))


@pytest.fixture
async def stub():
    service = GrpcService(Settings(), "orders", public_methods=PUBLIC)
    service.add(orders_pb2_grpc.add_OrderServiceServicer_to_server, Servicer(), _ORDERS)
    port = await service.start(host="127.0.0.1", port=0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield orders_pb2_grpc.OrderServiceStub(channel)
    await service.stop(drain_seconds=0, grace_seconds=0)


async def test_a_lost_database_connection_is_unavailable_so_that_clients_retry(stub):
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.PlaceOrder(orders_pb2.PlaceOrderRequest())
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "database connection was lost" in refused.value.details()


async def test_any_other_database_error_is_internal_with_a_reference_and_no_details(stub):
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.GetOrder(orders_pb2.GetOrderRequest())
    assert failed.value.code() is grpc.StatusCode.INTERNAL
    assert "reference" in failed.value.details() and "SELECT" not in failed.value.details()
