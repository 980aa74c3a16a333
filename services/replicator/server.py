"""The replicator's process: copy subscriptions, and the replication pipeline that fans each master
order out to its followers' broker accounts."""

from __future__ import annotations

from nats.aio.client import Client

from copytrade.core import db, jetstream
from copytrade.core.jetstream import ORDERS_STREAM
from copytrade.core.metrics import ConsumerLag
from copytrade.core.redis import create_redis, revocation_check
from copytrade.core.server import GrpcService
from copytrade.core.settings import Settings
from copytrade.replicator.v1 import replicator_pb2, replicator_pb2_grpc
from services.replicator.directory import UserDirectory
from services.replicator.pipeline import Pipeline
from services.replicator.pipeline.capital import directory_capital
from services.replicator.pipeline.consumer import DURABLE
from services.replicator.servicer import ReplicatorServicer
from services.replicator.subscriptions import SubscriptionRepository

_REPLICATOR = replicator_pb2.DESCRIPTOR.services_by_name["ReplicatorService"]


class ReplicatorProcess:
    """Everything the process holds, so tests can run it in-process and close it cleanly.

    `connect()` runs before `grpc` serves; `replicate()` then starts the replication pipeline (the
    JetStream consumer of master orders) on the same NATS connection. Tests of the subscriptions
    alone connect without replicating, so that their process does not take other tests' orders.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = db.create_engine(settings, application_name="copytrade-replicator")
        self.redis = create_redis(settings)
        self.directory = UserDirectory(settings)
        self.subscriptions = SubscriptionRepository(db.session_factory(self.engine))
        self.nats: Client | None = None
        self.grpc = GrpcService(settings, "replicator", is_revoked=revocation_check(self.redis))
        servicer = ReplicatorServicer(self.subscriptions, self.directory)
        self.grpc.add(replicator_pb2_grpc.add_ReplicatorServiceServicer_to_server, servicer, _REPLICATOR)
        # The pipeline's record on a pool of its own whose commits do not wait for the disk (see
        # services/replicator/pipeline/store.py); subscriptions, which users change, do. Its
        # statements find follower orders by key, in a table that grows by every copy (by_key_only).
        self.pipeline_engine = db.create_engine(
            settings,
            application_name="copytrade-replicator-pipeline",
            synchronous_commit=False,
            by_key_only=True,
        )
        self.pipeline = Pipeline(
            settings, self.pipeline_engine, self.subscriptions, capital=directory_capital(self.directory)
        )
        self._replicating = False
        self.lag: ConsumerLag | None = None

    async def connect(self) -> None:
        """Connect to NATS, whose subscription-change messages keep every replica's cache right."""
        self.nats = await jetstream.connect(self.settings, "replicator")
        await self.subscriptions.cache.listen(self.nats)

    async def replicate(self) -> None:
        """Start consuming master orders (after connect())."""
        if self.nats is None:
            raise RuntimeError("replicate() needs connect() first")
        await self.pipeline.start(self.nats)
        self._replicating = True
        self.lag = ConsumerLag(self.nats.jetstream(), [(ORDERS_STREAM, DURABLE)])
        self.lag.start()

    async def close(self) -> None:
        if self.lag is not None:
            await self.lag.stop()
        if self._replicating:
            # Unfinished fan-outs are not acked: JetStream redelivers them and they resume.
            await self.pipeline.stop()
        await self.subscriptions.cache.close()
        if self.nats is not None:
            await self.nats.drain()
        await self.directory.close()
        await self.redis.aclose()
        await self.pipeline_engine.dispose()
        await self.engine.dispose()


async def serve(settings: Settings) -> None:
    process = ReplicatorProcess(settings)
    try:
        await process.connect()
        await process.replicate()
        await process.grpc.serve_until_signalled()
    finally:
        await process.close()
