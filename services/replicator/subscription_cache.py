"""A master's active subscriptions, cached in process memory for the replication pipeline.

Every master order needs its master's active followers; reading them from PostgreSQL each time would
put a query on the hot path of every order. The cache is kept right by two means:

- every change to a master's subscriptions, in any replica, publishes on core NATS subject
  `replicator.subscriptions.changed.<master_id>`, and every replica drops that master's entry when
  the message arrives (the replica making the change drops it at once, before publishing);
- entries also expire after TTL_SECONDS, because core NATS is at-most-once: an invalidation sent
  while a replica was reconnecting is lost, and the expiry bounds how long that replica can be wrong.

Redis is not used for the entries themselves: a round trip to Redis would cost about what the indexed
query costs, and a shared copy would still need the same invalidation.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import Error as NatsError

from services.replicator.models import Subscription

SUBJECT_PREFIX = "replicator.subscriptions.changed."
TTL_SECONDS = 30.0
log = structlog.get_logger("copytrade.replicator.cache")

Loader = Callable[[int], Awaitable[list[Subscription]]]


def changed_subject(master_id: int) -> str:
    return f"{SUBJECT_PREFIX}{master_id}"


class ActiveSubscriptionCache:
    def __init__(self, load: Loader, *, ttl_seconds: float = TTL_SECONDS) -> None:
        self._load = load
        self._ttl = ttl_seconds
        self._entries: dict[int, tuple[float, list[Subscription]]] = {}
        # Bumped by every invalidation: a load that started before one must not store what it read.
        self._generation: dict[int, int] = {}
        self._nats: Client | None = None
        self._listener: NatsSubscription | None = None

    async def listen(self, nats: Client) -> None:
        """Receive invalidations from every replica (this one's included) on `nats`."""
        self._nats = nats
        self._listener = await nats.subscribe(f"{SUBJECT_PREFIX}*", cb=self._on_changed)

    async def get(self, master_id: int) -> list[Subscription]:
        entry = self._entries.get(master_id)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        generation = self._generation.get(master_id, 0)
        subscriptions = await self._load(master_id)
        if self._generation.get(master_id, 0) == generation:
            self._entries[master_id] = (time.monotonic() + self._ttl, subscriptions)
        return subscriptions

    def invalidate(self, master_id: int) -> None:
        self._generation[master_id] = self._generation.get(master_id, 0) + 1
        self._entries.pop(master_id, None)

    async def changed(self, master_id: int) -> None:
        """Called after a change to `master_id`'s subscriptions has been committed."""
        self.invalidate(master_id)
        if self._nats is None:
            return
        try:
            await self._nats.publish(changed_subject(master_id))
        except NatsError as exc:
            # The change is committed; other replicas catch up within TTL_SECONDS.
            log.warning("subscription invalidation not published", master_id=master_id, error=str(exc))

    async def _on_changed(self, message: Msg) -> None:
        master = message.subject.removeprefix(SUBJECT_PREFIX)
        if master.isdigit():
            self.invalidate(int(master))

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.unsubscribe()
            self._listener = None
