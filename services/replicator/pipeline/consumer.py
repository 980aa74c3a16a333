"""The durable JetStream consumer of ORDERS that drives replication.

All replicas pull from one durable consumer (`replicator`), so JetStream splits the master orders
between them and redelivers any a replica took but never acknowledged (it crashed or stopped). A
message is acknowledged only when every follower order of its master order is final; one with
orders still unresolved (the broker's answer was UNKNOWN, or the stream was cut) is negatively
acknowledged with a growing delay, and its redelivery resumes the fan-out, looking tags up first.
While a master order is being worked on, `in_progress()` heartbeats keep JetStream from handing it
to another replica, so `ack_wait` need only cover a replica that stops answering.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from copytrade.core import tracing
from copytrade.core.jetstream import ORDERS_STREAM
from copytrade.core.logging import get_logger
from copytrade.events.v1 import events_pb2

log = get_logger(__name__)

DURABLE = "replicator"
SUBJECT = "orders.accepted.*"
ACK_WAIT_SECONDS = 30.0
# Master orders one replica works on at once; it fetches no more until one is done.
MAX_IN_FLIGHT = 16
# Master orders taken but not yet acknowledged across ALL replicas (the durable is shared), so it
# bounds the fleet, not a replica: room for many replicas at MAX_IN_FLIGHT each.
MAX_ACK_PENDING = 1_000
FETCH_WAIT_SECONDS = 1.0
# A master order not yet done (an UNKNOWN at the broker, a cut stream, a service unreachable) comes
# back after these delays, then every minute until it is: its orders may be at the broker, so it is
# never given up on by a guess.
RETRY_DELAYS_SECONDS = (2, 5, 15, 30, 60)

Handle = Callable[[events_pb2.OrderAccepted, bool], Awaitable[bool]]


def retry_delay(num_delivered: int) -> float:
    return RETRY_DELAYS_SECONDS[min(max(num_delivered, 1), len(RETRY_DELAYS_SECONDS)) - 1]


class OrdersConsumer:
    def __init__(
        self,
        js: JetStreamContext,
        handle: Handle,
        *,
        durable: str = DURABLE,
        subject: str = SUBJECT,
        ack_wait_seconds: float = ACK_WAIT_SECONDS,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.js = js
        self.handle = handle
        self.durable = durable
        self.subject = subject
        self.ack_wait = ack_wait_seconds
        self.max_in_flight = max_in_flight
        self._working: set[asyncio.Task[None]] = set()
        self._subscription: JetStreamContext.PullSubscription | None = None

    async def subscribe(self) -> JetStreamContext.PullSubscription:
        """Create (or join) the durable consumer, so that it exists once this returns."""
        self._subscription = await self.js.pull_subscribe(
            self.subject,
            durable=self.durable,
            stream=ORDERS_STREAM,
            config=ConsumerConfig(
                durable_name=self.durable,
                ack_policy=AckPolicy.EXPLICIT,
                # A new consumer starts at the stream's beginning so that nothing accepted before
                # the first replicator started is lost; stale orders are skipped, not placed.
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.ack_wait,
                max_ack_pending=MAX_ACK_PENDING,
            ),
        )
        return self._subscription

    async def run(self) -> None:
        """Fetch master orders and start work on each until cancelled (the work itself goes on)."""
        subscription = self._subscription
        if subscription is None:
            subscription = await self.subscribe()
        while True:
            free = self.max_in_flight - len(self._working)
            if free == 0:
                await asyncio.wait(self._working, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                # One at a time: nats-py's fetch(n) that has a first message waits out its whole
                # timeout for the other n-1, which held a lone master order up to a second (the
                # profile of the fan-out benchmark). A fetch of one returns with it; the next
                # fetch finds any others already waiting at once.
                messages = await subscription.fetch(1, timeout=FETCH_WAIT_SECONDS)
            except TimeoutError:  # nats-py raises both its own subclass and the builtin: nothing came
                continue
            except NatsError as exc:
                # NATS restarting or reconnecting: the connection retries by itself; so does this.
                log.warning("fetch_failed", error=type(exc).__name__)
                await asyncio.sleep(FETCH_WAIT_SECONDS)
                continue
            for message in messages:
                task = asyncio.create_task(self._work(message))
                self._working.add(task)
                task.add_done_callback(self._working.discard)

    async def stop(self, grace_seconds: float) -> None:
        """Let work under way finish for up to grace_seconds, then abandon the rest to redelivery.

        Call after cancelling run(). Abandoned work is safe: nothing is acknowledged, and the
        replica that gets the master order next resumes it from the record.
        """
        if self._working and grace_seconds > 0:
            await asyncio.wait(self._working, timeout=grace_seconds)
        for task in list(self._working):
            task.cancel()
        await asyncio.gather(*self._working, return_exceptions=True)
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None

    async def _work(self, msg: Msg) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        delivered = msg.metadata.num_delivered
        try:
            event = self._decode(msg)
            if event is None:
                await msg.term()
                return
            # This task's own context: every line of this replication names its master order, and
            # with tracing on it is a span in the order's trace (its context came in the headers).
            structlog.contextvars.bind_contextvars(master_order_id=event.order_id)
            try:
                with tracing.span(
                    "replicate master order",
                    headers=msg.headers or {},
                    kind=tracing.SpanKind.CONSUMER,
                    attributes={"copytrade.master_order_id": event.order_id, "messaging.delivery": delivered},
                ):
                    done = await self.handle(event, delivered > 1)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("replication_failed", master_order_id=event.order_id, delivered=delivered)
                done = False
            if done:
                await msg.ack_sync()
            else:
                await msg.nak(delay=retry_delay(delivered))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - an ack lost to a NATS outage: JetStream redelivers
            log.warning("ack_failed", subject=msg.subject, error=type(exc).__name__)
        finally:
            heartbeat.cancel()

    @staticmethod
    def _decode(msg: Msg) -> events_pb2.OrderAccepted | None:
        """The master order, or None for a message no redelivery can make right."""
        try:
            event = events_pb2.OrderAccepted.FromString(msg.data)
        except DecodeError:
            log.error("undecodable_order_accepted", subject=msg.subject)
            return None
        if event.order_id <= 0 or event.master_user_id <= 0:
            log.error("order_accepted_without_ids", subject=msg.subject)
            return None
        return event

    async def _heartbeat(self, msg: Msg) -> None:
        # Tells JetStream this master order is still being worked on, so that ack_wait never hands
        # a long fan-out to a second replica.
        while True:
            await asyncio.sleep(self.ack_wait / 3)
            with contextlib.suppress(Exception):
                await msg.in_progress()
