"""The orders read model's projection as a process of its own: `python -m services.orders.projector`.

The orders service applies ORDER_UPDATES itself unless `ORDERS_PROJECTION_IN_PROCESS=false`; the
local stack turns that off and runs this process beside it. Under load a projection batch (hundreds
of copies' updates: decoding, one upsert, their acks) holds an event loop for several milliseconds
at a time, and in the orders process that loop is the one answering PlaceOrder: the master's accept
latency waited behind the followers' bookkeeping. Apart, the kernel schedules the two on their own.
Replicas of either share the durable consumer, so several projectors split the updates.
"""

from __future__ import annotations

import asyncio
import signal

import structlog
from nats.aio.client import Client

from copytrade.core import db, heap, jetstream
from copytrade.core.jetstream import ORDER_UPDATES_STREAM
from copytrade.core.metrics import ConsumerLag, MetricsEndpoint
from copytrade.core.runner import run_service
from copytrade.core.settings import Settings
from services.orders.projection import DURABLE, UpdatesProjection

log = structlog.get_logger("copytrade.orders.projector")

NAME = "orders_projection"


class ProjectorProcess:
    """The projection, its consumer-lag gauge and their connections; tests run it in-process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Its statements find read-model rows by key, in a table that grows by every copy.
        self.engine = db.create_engine(settings, application_name="copytrade-orders-projection", by_key_only=True)
        self.sessions = db.session_factory(self.engine)
        self.projection: UpdatesProjection | None = None
        self.lag: ConsumerLag | None = None
        self._nats: Client | None = None

    async def start(self) -> None:
        self._nats = nats = await jetstream.connect(self.settings, "orders-projection")
        js = nats.jetstream()
        await jetstream.ensure_streams(js, self.settings.nats_stream_replicas)
        self.projection = UpdatesProjection(self.sessions, js)
        await self.projection.start()
        self.lag = ConsumerLag(js, [(ORDER_UPDATES_STREAM, DURABLE)])
        self.lag.start()
        log.info("projecting", stream=ORDER_UPDATES_STREAM, durable=DURABLE)

    async def close(self) -> None:
        if self.lag is not None:
            await self.lag.stop()
        if self.projection is not None:
            await self.projection.stop()
        if self._nats is not None:
            await self._nats.drain()
        await self.engine.dispose()


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    process = ProjectorProcess(settings)
    metrics = None
    try:
        await process.start()
        heap.settle()
        # After the consumer is subscribed: the local stack takes the metrics answering as ready.
        metrics = MetricsEndpoint.start(settings, NAME)
        await stop.wait()
        log.info("shutting down")
    finally:
        await process.close()
        if metrics is not None:
            metrics.close()


if __name__ == "__main__":
    run_service(NAME, serve, fanout=True)
