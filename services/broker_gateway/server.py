"""The broker gateway's process: IIFL sessions per linked account and the streaming fan-out.

BrokerGatewayService (internal) and BrokerAccountService (account linking, public through Envoy)
are declared in protos/copytrade/broker/v1/broker.proto; until the broker-gateway work builds
them, each RPC answers UNIMPLEMENTED behind the same token checks.
"""

from copytrade.broker.v1 import broker_pb2, broker_pb2_grpc
from copytrade.core.server import serve_services
from copytrade.core.settings import Settings


async def serve(settings: Settings) -> None:
    services = broker_pb2.DESCRIPTOR.services_by_name
    await serve_services(
        settings,
        "broker_gateway",
        [
            (
                broker_pb2_grpc.add_BrokerGatewayServiceServicer_to_server,
                broker_pb2_grpc.BrokerGatewayServiceServicer(),
                services["BrokerGatewayService"],
            ),
            (
                broker_pb2_grpc.add_BrokerAccountServiceServicer_to_server,
                broker_pb2_grpc.BrokerAccountServiceServicer(),
                services["BrokerAccountService"],
            ),
        ],
    )
