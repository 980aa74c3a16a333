"""The replication pipeline: each master order on ORDERS copied into every active follower's account.

    capital      a follower's capital for PERCENTAGE sizing
    sizing       how many units a follower's copy carries (pure)
    followers    a master's active followers (the subscriptions repository, cached there)
    store        follower orders and fan-outs in PostgreSQL, idempotent
    replication  one master order: plan, record, ExecuteFanout, record results, publish updates
    updates      OrderStatusChanged to ORDER_UPDATES
    consumer     the durable JetStream consumer that acks a master order once it is done

The replicator process owns one Pipeline, given the SubscriptionRepository its servicer uses (so
the two share one follower cache): `await pipeline.start()` once the engine exists, `await
pipeline.stop()` on shutdown (work not acknowledged is redelivered to a replica).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TypedDict

import grpc
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from copytrade.broker.v1 import broker_pb2_grpc
from copytrade.core import jetstream, tracing
from copytrade.core.settings import Settings
from copytrade.core.tokens import issue_service_token
from copytrade.instruments import ContractMaster
from services.replicator.pipeline.capital import Capital, default_capital
from services.replicator.pipeline.consumer import (
    ACK_WAIT_SECONDS,
    DURABLE,
    MAX_IN_FLIGHT,
    SUBJECT,
    OrdersConsumer,
)
from services.replicator.pipeline.followers import active_followers
from services.replicator.pipeline.replication import Replication
from services.replicator.pipeline.store import Store
from services.replicator.subscriptions import SubscriptionRepository

__all__ = ["Pipeline"]

# Long enough for a typical fan-out to finish on SIGTERM, short of a container runtime's kill.
STOP_GRACE_SECONDS = 10.0


class _ConsumerOptions(TypedDict):
    """OrdersConsumer's keyword arguments, kept from the constructor until start()."""

    durable: str
    subject: str
    ack_wait_seconds: float
    max_in_flight: int


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        subscriptions: SubscriptionRepository,
        *,
        capital: Capital = default_capital,
        durable: str = DURABLE,
        subject: str = SUBJECT,
        ack_wait_seconds: float = ACK_WAIT_SECONDS,
        max_in_flight: int = MAX_IN_FLIGHT,
        instruments: ContractMaster | None = None,
    ) -> None:
        self.settings = settings
        self.store = Store(engine)
        self.subscriptions = subscriptions
        self._capital = capital
        self._consumer_options: _ConsumerOptions = {
            "durable": durable,
            "subject": subject,
            "ack_wait_seconds": ack_wait_seconds,
            "max_in_flight": max_in_flight,
        }
        self._instruments = instruments
        self._nats: Client | None = None
        self._owns_nats = False
        self._channel: grpc.aio.Channel | None = None
        self._task: asyncio.Task[None] | None = None
        self._consumer: OrdersConsumer | None = None
        self._replication: Replication | None = None

    async def start(self, nats: Client | None = None) -> None:
        """Join the durable consumer and start working; on `nats` when given (the process's own
        connection, left open by stop()), else on a connection of the pipeline's own."""
        self._owns_nats = nats is None
        self._nats = nats or await jetstream.connect(self.settings, "replicator")
        js = self._nats.jetstream()
        await jetstream.ensure_streams(js, self.settings.nats_stream_replicas)
        # One channel for the process: every fan-out is a stream multiplexed on it.
        # A target may list several gateway replicas (ipv4:HOST:P1,HOST:P2): streams go round-robin.
        self._channel = grpc.aio.insecure_channel(
            self.settings.grpc_target("broker_gateway"),
            options=[("grpc.lb_policy_name", "round_robin")],
            # With tracing on, ExecuteFanout and the lookups carry the replication's trace context.
            interceptors=tracing.client_interceptors(),
        )
        replication = Replication(
            self.store,
            active_followers(self.subscriptions),
            broker_pb2_grpc.BrokerGatewayServiceStub(self._channel),
            js,
            lambda: issue_service_token(self.settings),
            capital=self._capital,
            instruments=self._instruments or await asyncio.to_thread(ContractMaster.load),
            fanout_streams=self.settings.fanout_streams,
            fanout_stream_min=self.settings.fanout_stream_min_orders,
            first_part=self.settings.fanout_first_part,
        )
        self._replication = replication
        await replication.accounts.listen(self._nats)
        consumer = OrdersConsumer(js, replication.run, **self._consumer_options)
        await consumer.subscribe()
        self._consumer = consumer
        self._task = asyncio.create_task(consumer.run(), name="replicator-pipeline")

    async def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Take no more master orders, give those under way grace_seconds to finish, then let go.

        What is let go is redelivered to another replica (or this one restarted), which resumes it.
        """
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop(grace_seconds)
            self._consumer = None
        await self.store.close()  # results of fan-outs let go above, still being written
        if self._replication is not None:
            await self._replication.funds.close()  # a background funds read needs the channel
            await self._replication.accounts.close()
            self._replication = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        if self._nats is not None and self._owns_nats:
            with contextlib.suppress(Exception):
                await self._nats.close()
        self._nats = None
