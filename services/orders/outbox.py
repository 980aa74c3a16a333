"""The transactional outbox's publisher: sends stored OrderAccepted messages to JetStream.

PlaceOrder commits the order and an outbox row together (one statement; the row names the order,
whose OrderAccepted is rendered here) and answers at once, having handed the order to `send_now`,
which publishes it and marks the row sent. The loop below sends every row left unsent (by a failed
publish, or by a replica that died), oldest first, and so does the next start of any replica. A
crash between the publish and the marking sends it twice, which JetStream drops because the message
carries `Nats-Msg-Id: order-<id>` and the streams deduplicate on it
(copytrade.core.jetstream.DUPLICATE_WINDOW_SECONDS).

Replicas share the table: each claims a batch with `FOR UPDATE SKIP LOCKED`, so they never wait on
or send each other's rows. `send_now` does not wait for a claim: the first copy of a master order
waits on this publish, and the claim's transaction had cost it two round trips. The loop may claim
a row while `send_now` is publishing it; the repeat is one JetStream drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from datetime import timedelta
from typing import cast

import structlog
from nats.js import JetStreamContext
from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from copytrade.core import background, db, jetstream, tracing
from services.orders.models import Order, OutboxMessage
from services.orders.store import accepted_event

log = structlog.get_logger("copytrade.orders.outbox")

BATCH_SIZE = 200
POLL_SECONDS = 1.0
PUBLISH_TIMEOUT_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 10.0
# Sent rows are kept a day for inspection, well past JetStream's deduplication window (after which
# re-sending one would no longer be harmless anyway), then deleted so the table stays small.
KEEP_SENT = timedelta(days=1)
PRUNE_EVERY_SECONDS = 600.0
# On the table, not the ORM class: the ORM's bulk UPDATE evaluates its WHERE against the session
# for every call, a third of the cost of marking one row.
_OUTBOX = cast(Table, OutboxMessage.__table__)
_MARK_SENT = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("outbox_id"), _OUTBOX.c.sent_at.is_(None))
    .values(sent_at=func.now())
)


class OutboxPublisher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        js: JetStreamContext,
        *,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._sessions = sessions
        self._js = js
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    @functools.cached_property
    def _autocommit(self) -> async_sessionmaker[AsyncSession]:
        return db.autocommit_sessions(self._sessions)

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-publisher")

    async def stop(self) -> None:
        await background.stop(self._task)
        self._task = None
        # Orders accepted moments ago are let out (a shutdown must not hold them up until another
        # replica's poll); a publish that does not finish in time is cut short and its row stays
        # unsent, for the next start.
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=PUBLISH_TIMEOUT_SECONDS)
        for task in list(self._sending):
            await background.stop(task)

    def send_now(self, outbox_id: int, order: Order, traceparent: str | None) -> None:
        """Publish a just-committed order's OrderAccepted and mark its row sent, without waiting for
        the loop; a failure leaves the row to the loop (woken at once)."""
        task = asyncio.create_task(self._send_now(outbox_id, order, traceparent), name="outbox-send-now")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_now(self, outbox_id: int, order: Order, traceparent: str | None) -> None:
        try:
            await self._publish(
                jetstream.accepted_subject(order.user_id),
                accepted_event(order).SerializeToString(),
                f"order-{order.id}",
                traceparent,
            )
            async with self._autocommit() as session:
                await session.execute(_MARK_SENT, {"outbox_id": outbox_id})
        except Exception:  # NATS or PostgreSQL away: the loop sends the row, with its backoff
            log.warning(
                "publishing an accepted order failed; the outbox loop will", order_id=order.id, exc_info=True
            )
            self.wake()

    async def _run(self) -> None:
        failures = 0
        pruned_at = 0.0
        while True:
            # Cleared before draining: a commit during the drain sets it again and is not missed.
            self._wake.clear()
            try:
                while await self.publish_batch() == BATCH_SIZE:
                    pass
                if time.monotonic() - pruned_at > PRUNE_EVERY_SECONDS:
                    await self.prune()
                    pruned_at = time.monotonic()
                failures = 0
                delay = self._poll_seconds
            except Exception:  # NATS or PostgreSQL away: the rows stay unsent, retry with backoff
                failures += 1
                delay = min(self._poll_seconds * 2**failures, MAX_BACKOFF_SECONDS)
                log.warning("outbox publish failed; will retry", retry_in_seconds=delay, exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def prune(self) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(delete(OutboxMessage).where(OutboxMessage.sent_at < func.now() - KEEP_SENT))

    async def _publish(self, subject: str, payload: bytes, message_id: str, traceparent: str | None) -> None:
        headers = {"Nats-Msg-Id": message_id}
        if traceparent is None or not tracing.ENABLED:
            if traceparent is not None:  # stored by a replica that traces: pass its context on
                headers[tracing.TRACEPARENT] = traceparent
            await self._js.publish(subject, payload, timeout=PUBLISH_TIMEOUT_SECONDS, headers=headers)
            return
        # A PRODUCER span in the order's trace (PlaceOrder's child), whose context the message carries.
        with tracing.span(
            "orders.accepted publish",
            headers={tracing.TRACEPARENT: traceparent},
            kind=tracing.SpanKind.PRODUCER,
            attributes={"messaging.system": "nats", "messaging.destination.name": subject},
        ):
            await self._js.publish(subject, payload, timeout=PUBLISH_TIMEOUT_SECONDS, headers=tracing.inject(headers))

    async def publish_batch(self) -> int:
        """Claim up to BATCH_SIZE unsent rows, publish them in order and mark them sent. Returns how
        many were sent. A failed publish still commits the marks of the ones before it, then
        re-raises; the rest stay unsent for the next attempt, in order."""
        sent: list[int] = []
        failure: Exception | None = None
        async with self._sessions() as session, session.begin():
            rows = (
                await session.scalars(
                    select(OutboxMessage)
                    .where(OutboxMessage.sent_at.is_(None))
                    .order_by(OutboxMessage.id)
                    .limit(BATCH_SIZE)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            named = [row.order_id for row in rows if row.payload is None and row.order_id is not None]
            orders = (
                {o.id: o for o in await session.scalars(select(Order).where(Order.id.in_(named)))} if named else {}
            )
            for row in rows:
                try:
                    payload = _payload(row, orders)
                except LookupError:
                    # Nothing to send and nothing to wait for: the others must not queue behind it.
                    log.error("outbox row names an order that is not stored", outbox_id=row.id, order_id=row.order_id)
                    await session.execute(
                        update(OutboxMessage)
                        .where(OutboxMessage.id == row.id)
                        .values(attempts=OutboxMessage.attempts + 1)
                    )
                    continue
                try:
                    await self._publish(row.subject, payload, row.message_id, row.traceparent)
                except Exception as exc:  # noqa: BLE001 - re-raised once the sent ones are marked
                    failure = exc
                    await session.execute(
                        update(OutboxMessage)
                        .where(OutboxMessage.id == row.id)
                        .values(attempts=OutboxMessage.attempts + 1)
                    )
                    break
                sent.append(row.id)
            if sent:
                await session.execute(
                    update(OutboxMessage).where(OutboxMessage.id.in_(sent)).values(sent_at=func.now())
                )
        if failure is not None:
            raise failure
        if sent:
            log.debug("outbox published", count=len(sent))
        return len(sent)


def _payload(row: OutboxMessage, orders: dict[int, Order]) -> bytes:
    """The row's message: stored with it, or rendered from the order it names."""
    if row.payload is not None:
        return row.payload
    order = orders.get(row.order_id) if row.order_id is not None else None
    if order is None:
        # Orders are never deleted, so only a database restored without it gets here: the row stays
        # unsent (and counted in `attempts`), for an operator to see, rather than marked sent.
        raise LookupError(f"outbox row {row.id} names order {row.order_id}, which is not stored")
    return accepted_event(order).SerializeToString()
