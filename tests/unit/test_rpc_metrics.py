"""The gRPC server metrics: every call counted once, under the status code it ended with."""

import grpc
import pytest
from prometheus_client import REGISTRY

from copytrade.core import errors
from copytrade.core.server import GrpcService
from copytrade.core.settings import Settings
from copytrade.orders.v1 import orders_pb2, orders_pb2_grpc

_ORDERS = orders_pb2.DESCRIPTOR.services_by_name["OrderService"]
SERVICE = _ORDERS.full_name
PUBLIC = frozenset(f"/{SERVICE}/{name}" for name in ("PlaceOrder", "GetOrder", "WatchOrders"))


class Servicer(orders_pb2_grpc.OrderServiceServicer):
    async def PlaceOrder(self, request, context):
        raise errors.InvalidArgument("must be positive", field="quantity")

    async def GetOrder(self, request, context):
        return orders_pb2.GetOrderResponse()

    async def WatchOrders(self, request, context):
        yield orders_pb2.WatchOrdersResponse()
        raise errors.NotFound("gone")


def handled(method: str, code: str) -> float:
    labels = {"grpc_service": SERVICE, "grpc_method": method, "grpc_code": code}
    return REGISTRY.get_sample_value("copytrade_grpc_server_handled_total", labels) or 0.0


def timed(method: str, code: str) -> float:
    labels = {"grpc_service": SERVICE, "grpc_method": method, "grpc_code": code}
    return REGISTRY.get_sample_value("copytrade_grpc_server_handling_seconds_count", labels) or 0.0


@pytest.fixture
async def stub():
    service = GrpcService(Settings(), "orders", public_methods=PUBLIC)
    service.add(orders_pb2_grpc.add_OrderServiceServicer_to_server, Servicer(), _ORDERS)
    port = await service.start(host="127.0.0.1", port=0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield orders_pb2_grpc.OrderServiceStub(channel)
    await service.stop(drain_seconds=0, grace_seconds=0)


async def test_a_refused_call_is_counted_with_its_code(stub):
    before = handled("PlaceOrder", "INVALID_ARGUMENT"), timed("PlaceOrder", "INVALID_ARGUMENT")
    # Process-wide counters: other tests' in-process servers may have placed orders already.
    ok_before = handled("PlaceOrder", "OK")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.PlaceOrder(orders_pb2.PlaceOrderRequest())
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (handled("PlaceOrder", "INVALID_ARGUMENT"), timed("PlaceOrder", "INVALID_ARGUMENT")) == (
        before[0] + 1,
        before[1] + 1,
    )
    assert handled("PlaceOrder", "OK") == ok_before


async def test_a_successful_call_is_counted_ok(stub):
    before = handled("GetOrder", "OK")
    await stub.GetOrder(orders_pb2.GetOrderRequest(order_id=1))
    assert handled("GetOrder", "OK") == before + 1


async def test_a_token_missing_is_unauthenticated(stub):
    before = handled("ListMyOrders", "UNAUTHENTICATED")
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.ListMyOrders(orders_pb2.ListMyOrdersRequest())
    assert handled("ListMyOrders", "UNAUTHENTICATED") == before + 1


async def test_a_stream_is_counted_once_when_it_ends_with_its_final_code(stub):
    before = handled("WatchOrders", "NOT_FOUND"), handled("WatchOrders", "OK")
    call = stub.WatchOrders(orders_pb2.WatchOrdersRequest())
    received = 0
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        async for _ in call:
            received += 1
    assert (received, ended.value.code()) == (1, grpc.StatusCode.NOT_FOUND)
    assert (handled("WatchOrders", "NOT_FOUND"), handled("WatchOrders", "OK")) == (before[0] + 1, before[1])
