"""The orders service's process: placing orders, their durable hand-off to JetStream, reading them.

OrderService's RPCs that are not built yet answer UNIMPLEMENTED (never INTERNAL) behind the same
checks.
"""

from __future__ import annotations

from nats.aio.client import Client

from copytrade.core import db, jetstream
from copytrade.core.jetstream import ORDER_UPDATES_STREAM
from copytrade.core.metrics import ConsumerLag
from copytrade.core.redis import create_redis, revocation_check
from copytrade.core.server import GrpcService
from copytrade.core.settings import Settings
from copytrade.instruments import ContractMaster
from copytrade.orders.v1 import orders_pb2, orders_pb2_grpc
from services.orders.outbox import OutboxPublisher
from services.orders.projection import DURABLE as PROJECTION_DURABLE
from services.orders.projection import UpdatesProjection
from services.orders.servicer import OrderServicer
from services.orders.store import OrderStore, Placed
from services.orders.watch import OrderWatch

_ORDERS = orders_pb2.DESCRIPTOR.services_by_name["OrderService"]


class OrdersProcess:
    """Everything the process holds, so tests can run it in-process and close it cleanly.

    `start()` connects to NATS, makes sure the streams exist, starts the outbox publisher (which
    first sends whatever an earlier process committed but did not publish) and, unless
    ORDERS_PROJECTION_IN_PROCESS=false leaves it to services/orders/projector.py, the ORDER_UPDATES
    projection, and then serves gRPC.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = db.create_engine(settings, application_name="copytrade-orders")
        self.sessions = db.session_factory(self.engine)
        self.redis = create_redis(settings)
        self.store = OrderStore(self.sessions)
        self.instruments = ContractMaster.load()
        self.nats: Client | None = None
        self.publisher: OutboxPublisher | None = None
        self.projection: UpdatesProjection | None = None
        self.lag: ConsumerLag | None = None
        self.grpc = GrpcService(settings, "orders", is_revoked=revocation_check(self.redis))
        self.watch = OrderWatch(self.sessions)
        # Streams end with SERVER_DRAINING as soon as shutdown starts, while Envoy moves traffic away.
        self.grpc.on_stop.append(self.watch.drain)
        servicer = OrderServicer(self.store, self.instruments, self._send_accepted, self.watch)
        self.grpc.add(orders_pb2_grpc.add_OrderServiceServicer_to_server, servicer, _ORDERS)

    def _send_accepted(self, placed: Placed, traceparent: str | None) -> None:
        if self.publisher is None:
            return  # not started: its first pass sends every unsent row
        if placed.outbox_id is None:
            self.publisher.wake()
        else:
            self.publisher.send_now(placed.outbox_id, placed.order, traceparent)

    async def start_background(self) -> None:
        """Connect to NATS, make sure the streams exist, start the publisher and (unless a projector
        process applies ORDER_UPDATES, services/orders/projector.py) the projection."""
        self.nats = await jetstream.connect(self.settings, "orders")
        self.watch.attach(self.nats)
        js = self.nats.jetstream()
        await jetstream.ensure_streams(js, self.settings.nats_stream_replicas)
        self.publisher = OutboxPublisher(self.sessions, js)
        self.publisher.start()
        if self.settings.orders_projection_in_process:
            self.projection = UpdatesProjection(self.sessions, js)
            await self.projection.start()
            self.lag = ConsumerLag(js, [(ORDER_UPDATES_STREAM, PROJECTION_DURABLE)])
            self.lag.start()

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        await self.start_background()
        return await self.grpc.start(host=host, port=port)

    async def close(self) -> None:
        if self.lag is not None:
            await self.lag.stop()
        if self.projection is not None:
            await self.projection.stop()
        if self.publisher is not None:
            await self.publisher.stop()
        if self.nats is not None:
            await self.nats.drain()
        await self.redis.aclose()
        await self.engine.dispose()


async def serve(settings: Settings) -> None:
    process = OrdersProcess(settings)
    try:
        await process.start_background()
        await process.grpc.serve_until_signalled()
    finally:
        await process.close()
