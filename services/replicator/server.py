"""The replicator's process: copy subscriptions and the fan-out of each master order.

ReplicatorService's RPCs are declared in protos/copytrade/replicator/v1/replicator.proto; until
the replication work builds them, each answers UNIMPLEMENTED behind the same token checks.
"""

from copytrade.core.server import serve_services
from copytrade.core.settings import Settings
from copytrade.replicator.v1 import replicator_pb2, replicator_pb2_grpc


async def serve(settings: Settings) -> None:
    await serve_services(
        settings,
        "replicator",
        [
            (
                replicator_pb2_grpc.add_ReplicatorServiceServicer_to_server,
                replicator_pb2_grpc.ReplicatorServiceServicer(),
                replicator_pb2.DESCRIPTOR.services_by_name["ReplicatorService"],
            )
        ],
    )
