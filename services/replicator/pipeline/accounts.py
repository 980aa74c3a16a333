"""Which broker account each follower trades through, cached between master orders.

Every master order needs its followers' linked account ids, and asking the broker gateway each time
(BatchGetLinkedAccounts: an RPC and a query) took about 5 ms of the first copy's 30 at N = 10, and
more with every thousand followers. The mapping changes only when a follower links or unlinks, so
it is kept here and made right by the same two means as the subscription cache:

- the broker gateway publishes `broker.accounts.changed.<user_id>` on core NATS after every link,
  relink and unlink it commits, and every replicator drops that user's entry when it arrives;
- entries expire after TTL_SECONDS, since core NATS is at-most-once.

A stale entry cannot place an order where it should not go: the gateway resolves every account id
again when it places, and answers ACCOUNT_NOT_LINKED for an unlinked one or one of another user.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from copytrade.core.jetstream import ACCOUNT_CHANGED_PREFIX

TTL_SECONDS = 30.0

# user ids -> {user id: account id}, for those of them who have a linked account
LookUp = Callable[[list[int]], Awaitable[dict[int, int]]]


class LinkedAccountCache:
    def __init__(self, look_up: LookUp, *, ttl_seconds: float = TTL_SECONDS) -> None:
        self._look_up = look_up
        self._ttl = ttl_seconds
        # user id -> (expires at, account id or None when the user has no linked account)
        self._entries: dict[int, tuple[float, int | None]] = {}
        # Bumped by every invalidation: a look-up that started before one must not store what it read.
        self._generation = 0
        self._invalidated: dict[int, int] = {}
        self._listener: NatsSubscription | None = None

    async def listen(self, nats: Client) -> None:
        self._listener = await nats.subscribe(f"{ACCOUNT_CHANGED_PREFIX}*", cb=self._on_changed)

    async def get(self, user_ids: Iterable[int]) -> dict[int, int]:
        """user id -> linked account id, for those of `user_ids` who have one."""
        now = time.monotonic()
        found: dict[int, int] = {}
        missing: list[int] = []
        for user_id in user_ids:
            entry = self._entries.get(user_id)
            if entry is None or entry[0] <= now:
                missing.append(user_id)
            elif entry[1] is not None:
                found[user_id] = entry[1]
        if missing:
            generation = self._generation
            looked_up = await self._look_up(missing)
            expires = time.monotonic() + self._ttl
            for user_id in missing:
                account_id = looked_up.get(user_id)
                if self._invalidated.get(user_id, -1) < generation:
                    self._entries[user_id] = (expires, account_id)
                if account_id is not None:
                    found[user_id] = account_id
        return found

    def invalidate(self, user_id: int) -> None:
        self._generation += 1
        self._invalidated[user_id] = self._generation
        self._entries.pop(user_id, None)

    async def _on_changed(self, message: Msg) -> None:
        user = message.subject.removeprefix(ACCOUNT_CHANGED_PREFIX)
        if user.isdigit():
            self.invalidate(int(user))

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.unsubscribe()
            self._listener = None
