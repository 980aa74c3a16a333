"""WatchOrders: the caller's order status changes, live from ORDER_UPDATES, with heartbeats and an end.

Each stream has its own ordered JetStream push consumer, which delivers a message a few milliseconds
after it is stored, and lets a reconnect resume from a stream sequence: the `cursor` of an event is
its ORDER_UPDATES stream sequence, so `resume_after` starts the consumer at the next one. JetStream
keeps updates for a week (MAX_AGE_SECONDS), longer than the 24 hours the API promises.

A follower's updates are on their own subject, `orders.updates.<follower_id>`. A master's own orders
are on theirs, but the replicator publishes the copies on the followers' subjects, and an update
names only the master order it copies. So a master's stream reads `orders.updates.*` and keeps the
updates of their own orders plus those whose master order is theirs (the owner of a master order
never changes, so that answer is cached for all streams). That keeps the replicator and the events
contract unchanged; the cost is that every master stream sees all updates, which is fine at this
platform's scale and is the place to change (a per-master subject) if it stops being so.

The stream always ends with an `end` event once one was sent (HTTP/1.1 clients through Envoy never
see trailers): MAX_DURATION at the call's deadline or the longest allowed duration, TOKEN_EXPIRED
when the access token expires, SERVER_DRAINING when the process shuts down, ERROR when something
fails (then the gRPC status says the same). Errors before the first event are ordinary gRPC errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
import structlog
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from copytrade.core.errors import InvalidArgument, NotFound, ServiceError, Unavailable
from copytrade.core.jetstream import ORDER_UPDATES_STREAM, updates_subject
from copytrade.core.tokens import Principal
from copytrade.events.v1 import events_pb2
from copytrade.orders.v1 import orders_pb2
from services.orders.models import Order
from services.orders.store import rfc3339

log = structlog.get_logger("copytrade.orders.watch")

DEFAULT_HEARTBEAT_SECONDS, MIN_HEARTBEAT_SECONDS, MAX_HEARTBEAT_SECONDS = 15, 5, 60
MAX_STREAM_SECONDS = 60 * 60
# Ends the stream a little before the caller's deadline, so the end event still reaches them.
DEADLINE_MARGIN_SECONDS = 1.0
# A client that reads slower than updates arrive is ended (retryably) rather than buffered forever.
MAX_BACKLOG = 10_000
SUMMARY_INTERVAL_SECONDS = 1.0
OWNER_CACHE_SIZE = 100_000
# A follower order's first update may reach this stream before the read model has its row (and id).
ROW_WAIT_SECONDS, ROW_POLL_SECONDS = 1.0, 0.02
PLACED = ("OPEN", "PARTIALLY_FILLED", "EXECUTED")


class OutOfRange(ServiceError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Ended(Exception):
    """The stream ends cleanly for `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def heartbeat_seconds(value: int) -> int:
    if value == 0:
        return DEFAULT_HEARTBEAT_SECONDS
    if not MIN_HEARTBEAT_SECONDS <= value <= MAX_HEARTBEAT_SECONDS:
        raise InvalidArgument(
            f"must be between {MIN_HEARTBEAT_SECONDS} and {MAX_HEARTBEAT_SECONDS} (or 0 for 15)",
            field="heartbeat_seconds",
        )
    return value


def parse_cursor(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    # isascii: "²".isdigit() is true, and int("²") raises.
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 2**63:
        raise InvalidArgument("is not a cursor this service issued", field="resume_after")
    return int(text)


def _now() -> str:
    return rfc3339(datetime.now(UTC))


@dataclass
class _Summary:
    """One master order's copies as this stream knows them: follower order id -> latest state."""

    master_order_id: int
    states: dict[int, tuple[str, str, int]] = field(default_factory=dict)  # status, broker id, latency
    sent_at: float = 0.0
    dirty: bool = False

    def message(self) -> orders_pb2.ReplicationSummary:
        summary = orders_pb2.ReplicationSummary(
            master_order_id=self.master_order_id, followers_targeted=len(self.states)
        )
        latencies = []
        for status, broker_order_id, latency in self.states.values():
            outcome = _outcome(status, broker_order_id)
            setattr(summary, outcome, getattr(summary, outcome) + 1)
            if outcome == "pending":
                continue
            if latency > 0:
                latencies.append(latency)
        summary.complete = summary.pending == 0
        if latencies:
            summary.first_follower_latency_ms = str(min(latencies))
            if summary.complete:
                summary.last_follower_latency_ms = str(max(latencies))
        return summary


def _outcome(status: str, broker_order_id: str) -> str:
    """The ReplicationSummary count a follower order is in: the same rule as reports.OUTCOME."""
    if status in ("REJECTED", "FAILED", "SKIPPED"):
        return status.lower()
    if status in PLACED or broker_order_id:
        return "placed"
    # Cancelled before it had a broker order id: it never reached the broker.
    return "skipped" if status == "CANCELLED" else "pending"


class OrderWatch:
    """Serves WatchOrders streams; `active` counts open subscriptions (a leak shows there)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._nats: Client | None = None
        self._owners: OrderedDict[int, int] = OrderedDict()
        self._draining = asyncio.Event()
        self.active = 0

    def attach(self, nats: Client) -> None:
        self._nats = nats

    def drain(self) -> None:
        """Ends every stream with SERVER_DRAINING, so clients reconnect to another replica at once."""
        self._draining.set()

    async def stream(
        self, principal: Principal, request: orders_pb2.WatchOrdersRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[orders_pb2.WatchOrdersResponse]:
        heartbeat = heartbeat_seconds(request.heartbeat_seconds)
        resume_after = parse_cursor(request.resume_after)
        if request.order_id < 0:
            raise InvalidArgument("must not be negative", field="order_id")
        scope = await self._scope(principal, request)
        if self._nats is None or self._draining.is_set():
            raise Unavailable("order updates are not available right now; retry")
        js = self._nats.jetstream()
        start = await self._start_sequence(js, resume_after)
        backlog: asyncio.Queue[Msg] = asyncio.Queue()
        overflowed = asyncio.Event()

        async def receive(message: Msg) -> None:
            if backlog.qsize() >= MAX_BACKLOG:
                overflowed.set()
            else:
                backlog.put_nowait(message)

        subject = "orders.updates.*" if principal.is_master else updates_subject(principal.user_id)
        config = (
            ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
            if start is None
            else ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
        )
        subscription = None
        self.active += 1
        sent_any = False
        try:
            # Inside the try: a client gone while this subscribes must not leave the consumer behind.
            subscription = await js.subscribe(
                subject, stream=ORDER_UPDATES_STREAM, ordered_consumer=True, cb=receive, config=config
            )
            session = _Session(self, principal, request, scope)
            ends_at = _ends_at(principal, context)
            last_sent = time.monotonic()
            while True:
                wait = min(heartbeat - (time.monotonic() - last_sent), session.next_summary_in())
                message = await self._next(backlog, overflowed, ends_at, max(wait, 0.0))
                events = [] if message is None else await session.handle(message)
                events += session.due_summaries()
                if not events and time.monotonic() - last_sent >= heartbeat:
                    events = [
                        orders_pb2.WatchOrdersResponse(heartbeat=orders_pb2.Heartbeat(server_time=_now()))
                    ]
                for event in events:
                    yield event
                    sent_any = True
                if events:
                    last_sent = time.monotonic()
        except Ended as ended:
            yield _end(ended.reason, grpc.StatusCode.OK, "", retryable=True)
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:
            if not sent_any:
                raise
            code, text = _failure(exc)
            yield _end("ERROR", code, text, retryable=True)
            await context.abort(code, text)
        finally:
            self.active -= 1
            if subscription is not None:
                # Shielded: a second cancellation (the client's, the server's grace) must not cut it short.
                with contextlib.suppress(Exception):
                    await asyncio.shield(subscription.unsubscribe())

    async def _next(
        self, backlog: asyncio.Queue[Msg], overflowed: asyncio.Event, ends_at: tuple[float, str], wait: float
    ) -> Msg | None:
        if overflowed.is_set():
            raise _Overflow()
        if self._draining.is_set():
            raise Ended("SERVER_DRAINING")
        remaining = ends_at[0] - time.monotonic()
        if remaining <= 0:
            raise Ended(ends_at[1])
        if not backlog.empty():
            return backlog.get_nowait()
        getter = asyncio.ensure_future(backlog.get())
        draining = asyncio.ensure_future(self._draining.wait())
        try:
            done, _ = await asyncio.wait(
                {getter, draining}, timeout=min(wait, remaining), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            draining.cancel()
            if not getter.done():
                getter.cancel()
        # Otherwise a heartbeat, a summary or the end is due: the caller's next call finds out which.
        return getter.result() if getter in done else None

    async def _scope(self, principal: Principal, request: orders_pb2.WatchOrdersRequest) -> Order | None:
        if not request.order_id:
            return None
        async with self._sessions() as session:
            order = await session.scalar(
                select(Order).where(Order.id == request.order_id, Order.user_id == principal.user_id)
            )
        if order is None:
            raise NotFound(f"order {request.order_id} not found")
        return order

    async def _start_sequence(self, js, resume_after: int | None) -> int | None:
        if resume_after is None:
            return None
        state = (await js.stream_info(ORDER_UPDATES_STREAM)).state
        if resume_after > state.last_seq:
            raise InvalidArgument("is not a cursor this service issued", field="resume_after")
        if resume_after + 1 < state.first_seq:
            raise OutOfRange("resume_after: the events after this cursor are no longer kept; start afresh")
        return resume_after + 1

    async def owner_of(self, master_order_id: int) -> int:
        """The master who placed `master_order_id` (0 when unknown here)."""
        owner = self._owners.get(master_order_id)
        if owner is not None:
            self._owners.move_to_end(master_order_id)
            return owner
        async with self._sessions() as session:
            found = await session.scalar(
                select(Order.user_id).where(Order.id == master_order_id, Order.is_master_order.is_(True))
            )
        if found is None:
            return 0  # not cached: the order may not be committed yet
        self._owners[master_order_id] = found
        if len(self._owners) > OWNER_CACHE_SIZE:
            self._owners.popitem(last=False)
        return found

    async def row(self, change: events_pb2.OrderStatusChanged, wait: bool) -> Order | None:
        """The read model's row for the changed order, waiting briefly for a new follower order's."""
        column = Order.id if change.master_order_id == 0 else Order.source_order_id
        deadline = time.monotonic() + (ROW_WAIT_SECONDS if wait else 0)
        while True:
            async with self._sessions() as session:
                order = await session.scalar(
                    select(Order).where(column == change.order_id, Order.user_id == change.user_id)
                )
            if order is not None or time.monotonic() >= deadline:
                return order
            await asyncio.sleep(ROW_POLL_SECONDS)

    async def copies(self, master_order_id: int) -> list[Order]:
        async with self._sessions() as session:
            return list(await session.scalars(select(Order).where(Order.master_order_id == master_order_id)))


class _Overflow(Exception):
    pass


class _Session:
    """One stream's filter and state: which updates are the caller's, and the masters' summaries."""

    def __init__(
        self, watch: OrderWatch, principal: Principal, request: orders_pb2.WatchOrdersRequest, scope: Order | None
    ) -> None:
        self._watch = watch
        self._user_id = principal.user_id
        self._is_master = principal.is_master
        self._include_copies = request.include_follower_orders
        self._scope = scope
        self._last: dict[tuple[bool, int], tuple[int, str]] = {}  # (is master order, id) -> sequence, status
        self._summaries: dict[int, _Summary] = {}
        # The last stream sequence this stream has dealt with: a summary's cursor, since every update
        # up to it has been sent (summaries are rebuilt from the read model after a resume).
        self._position = ""

    async def handle(self, message: Msg) -> list[orders_pb2.WatchOrdersResponse]:
        self._position = str(message.metadata.sequence.stream)
        try:
            change = events_pb2.OrderStatusChanged.FromString(message.data)
        except DecodeError:
            log.error("skipping an undecodable order update", subject=message.subject)
            return []
        own = change.user_id == self._user_id
        copy_of_mine = (
            self._is_master
            and not own
            and change.master_order_id != 0
            and await self._watch.owner_of(change.master_order_id) == self._user_id
        )
        if not (own or copy_of_mine) or not self._in_scope(change):
            return []
        key = (change.master_order_id == 0, change.order_id)
        seen = self._last.get(key)
        if seen is not None and change.sequence <= seen[0]:
            return []  # JetStream kept a repeat; this stream already said so
        events = []
        if copy_of_mine:
            await self._count(change)
        if own or self._include_copies:
            update = await self._update(change, seen[1] if seen else None)
            events.append(
                orders_pb2.WatchOrdersResponse(
                    cursor=self._position,
                    event_time=change.changed_at or _now(),
                    order_update=update,
                )
            )
        self._last[key] = (change.sequence, change.status)
        return events

    def _in_scope(self, change: events_pb2.OrderStatusChanged) -> bool:
        scope = self._scope
        if scope is None:
            return True
        if scope.is_master_order:
            return change.order_id == scope.id if change.master_order_id == 0 else change.master_order_id == scope.id
        return change.master_order_id != 0 and change.order_id == scope.source_order_id

    async def _update(
        self, change: events_pb2.OrderStatusChanged, previous: str | None
    ) -> orders_pb2.OrderStatusChange:
        row = await self._watch.row(change, wait=change.master_order_id != 0)
        if previous is None and row is not None and row.sequence < change.sequence:
            previous = row.status
        order = _order(change, row)
        return orders_pb2.OrderStatusChange(order=order, previous_status=previous or "")

    async def _count(self, change: events_pb2.OrderStatusChanged) -> None:
        summary = self._summaries.get(change.master_order_id)
        if summary is None:
            # Start from what the read model knows, so a stream opened mid-copy counts every copy.
            summary = _Summary(change.master_order_id)
            for copy in await self._watch.copies(change.master_order_id):
                if copy.source_order_id is None:  # never for a copy: the projection writes it with its id
                    continue
                latency = int(copy.replication_latency_ms or 0)
                summary.states[copy.source_order_id] = (copy.status, copy.broker_order_id, latency)
            self._summaries[change.master_order_id] = summary
        summary.states[change.order_id] = (
            change.status, change.broker_order_id, change.replication_latency_ms
        )  # fmt: skip
        summary.dirty = True

    def next_summary_in(self) -> float:
        pending = [s.sent_at + SUMMARY_INTERVAL_SECONDS for s in self._summaries.values() if s.dirty]
        return max(min(pending) - time.monotonic(), 0.0) if pending else float("inf")

    def due_summaries(self) -> list[orders_pb2.WatchOrdersResponse]:
        now = time.monotonic()
        events = []
        for summary in self._summaries.values():
            if not summary.dirty:
                continue
            message = summary.message()
            # At most about once a second per order, but the final count goes out at once.
            if now - summary.sent_at < SUMMARY_INTERVAL_SECONDS and not message.complete:
                continue
            summary.dirty, summary.sent_at = False, now
            events.append(
                orders_pb2.WatchOrdersResponse(
                    cursor=self._position, event_time=_now(), replication_summary=message
                )
            )
        return events


def _order(change: events_pb2.OrderStatusChanged, row: Order | None) -> orders_pb2.Order:
    """The order as it is now: the read model's row with this update's state on top (it may lag)."""
    from services.orders.servicer import order_message  # the servicer imports this module

    order = order_message(row) if row is not None else orders_pb2.Order(
        id=change.order_id if change.master_order_id == 0 else 0,
        user_id=change.user_id,
        master_order_id=change.master_order_id,
        is_master_order=change.master_order_id == 0,
        validity="DAY",
    )
    if row is None and change.HasField("details"):
        details = change.details
        order.symbol, order.exchange, order.side = details.symbol, details.exchange, details.side
        order.order_type, order.product, order.quantity = details.order_type, details.product, details.quantity
        order.price, order.trigger_price, order.order_tag = details.price, details.trigger_price, details.tag
    order.status = change.status
    order.status_reason = change.status_reason
    order.status_reason_code = change.status_reason_code
    order.broker_order_id = change.broker_order_id or order.broker_order_id
    order.filled_quantity = change.filled_quantity
    order.average_price = change.average_price or order.average_price
    if change.replication_latency_ms:
        order.replication_latency_ms = str(change.replication_latency_ms)
    if change.changed_at:
        order.updated_at = change.changed_at
    return order


def _ends_at(principal: Principal, context: grpc.aio.ServicerContext) -> tuple[float, str]:
    now = time.monotonic()
    limits = [(now + MAX_STREAM_SECONDS, "MAX_DURATION"), (now + principal.expires_at - time.time(), "TOKEN_EXPIRED")]
    remaining = context.time_remaining()
    if remaining is not None:
        limits.append((now + remaining - DEADLINE_MARGIN_SECONDS, "MAX_DURATION"))
    return min(limits)


def _end(reason: str, code: grpc.StatusCode, text: str, *, retryable: bool) -> orders_pb2.WatchOrdersResponse:
    status = status_pb2.Status(code=code.value[0], message=text)
    return orders_pb2.WatchOrdersResponse(
        event_time=_now(), end=orders_pb2.StreamEnd(reason=reason, status=status, retryable=retryable)
    )


def _failure(exc: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, _Overflow):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, "the client reads slower than updates arrive; resume"
    if isinstance(exc, ServiceError):
        return exc.code, str(exc)
    log.exception("watch stream failed")
    return grpc.StatusCode.UNAVAILABLE, "order updates were interrupted; resume with the last cursor"
