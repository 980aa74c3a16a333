"""Tells the rest of the platform that a user's linked account changed (linked, relinked, unlinked).

Published on core NATS after the change is committed; the replicator keeps which account each
follower trades through in memory (services/replicator/pipeline/accounts.py) and drops the user's
entry on this message. Losing one is tolerable (those entries expire), so a NATS outage is logged,
never turned into a failed link.
"""

from __future__ import annotations

from nats.aio.client import Client
from nats.errors import Error as NatsError

from copytrade.core import jetstream
from copytrade.core.logging import get_logger
from copytrade.core.settings import Settings

log = get_logger(__name__)


class AccountChanges:
    def __init__(self) -> None:
        self._nats: Client | None = None

    async def connect(self, settings: Settings) -> None:
        self._nats = await jetstream.connect(settings, "broker_gateway")

    async def changed(self, user_id: int) -> None:
        if self._nats is None:
            return
        try:
            await self._nats.publish(jetstream.account_changed_subject(user_id))
        except NatsError as exc:
            log.warning("account change not announced", user_id=user_id, error=str(exc))

    async def close(self) -> None:
        if self._nats is not None:
            await self._nats.drain()
            self._nats = None
