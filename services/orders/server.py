"""The orders service's process: master orders, history, statistics, live updates.

OrderService's RPCs are declared in protos/copytrade/orders/v1/orders.proto; until the replication
work builds them, each answers UNIMPLEMENTED (never INTERNAL) behind the same token checks.
"""

from copytrade.core.server import serve_services
from copytrade.core.settings import Settings
from copytrade.orders.v1 import orders_pb2, orders_pb2_grpc


async def serve(settings: Settings) -> None:
    await serve_services(
        settings,
        "orders",
        [
            (
                orders_pb2_grpc.add_OrderServiceServicer_to_server,
                orders_pb2_grpc.OrderServiceServicer(),
                orders_pb2.DESCRIPTOR.services_by_name["OrderService"],
            )
        ],
    )
