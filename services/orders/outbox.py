"""The transactional outbox's publisher: sends stored OrderAccepted messages to JetStream.

PlaceOrder commits the order and an outbox row together and answers at once; this task then
publishes the row and marks it sent. A crash between the commit and the publish leaves the row
unsent, and the next start (of this or any replica) sends it. A crash between the publish and the
marking sends it twice, which JetStream drops because the message carries `Nats-Msg-Id:
order-<id>` and the streams deduplicate on it (copytrade.core.jetstream.DUPLICATE_WINDOW_SECONDS).

Replicas share the table: each claims a batch with `FOR UPDATE SKIP LOCKED`, so they never wait on
or send each other's rows. A commit in this process wakes the publisher at once (`wake()`), so the
hand-off costs a round trip rather than a poll interval; the poll only catches rows committed by
other replicas that died before sending them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta

import structlog
from nats.js import JetStreamContext
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from copytrade.core import background, tracing
from services.orders.models import OutboxMessage

log = structlog.get_logger("copytrade.orders.outbox")

BATCH_SIZE = 200
POLL_SECONDS = 1.0
PUBLISH_TIMEOUT_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 10.0
# Sent rows are kept a day for inspection, well past JetStream's deduplication window (after which
# re-sending one would no longer be harmless anyway), then deleted so the table stays small.
KEEP_SENT = timedelta(days=1)
PRUNE_EVERY_SECONDS = 600.0


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

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-publisher")

    async def stop(self) -> None:
        await background.stop(self._task)
        self._task = None

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

    async def _publish(self, row: OutboxMessage) -> None:
        headers = {"Nats-Msg-Id": row.message_id}
        if row.traceparent is None or not tracing.ENABLED:
            if row.traceparent is not None:  # stored by a replica that traces: pass its context on
                headers[tracing.TRACEPARENT] = row.traceparent
            await self._js.publish(row.subject, row.payload, timeout=PUBLISH_TIMEOUT_SECONDS, headers=headers)
            return
        # A PRODUCER span in the order's trace (PlaceOrder's child), whose context the message carries.
        with tracing.span(
            "orders.accepted publish",
            headers={tracing.TRACEPARENT: row.traceparent},
            kind=tracing.SpanKind.PRODUCER,
            attributes={"messaging.system": "nats", "messaging.destination.name": row.subject},
        ):
            await self._js.publish(
                row.subject, row.payload, timeout=PUBLISH_TIMEOUT_SECONDS, headers=tracing.inject(headers)
            )

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
            for row in rows:
                try:
                    await self._publish(row)
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
