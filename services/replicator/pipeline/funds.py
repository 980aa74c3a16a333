"""The funds each follower's broker reports, kept between master orders.

Asking the broker costs a round trip (50-150 ms at IIFL, more when it is slow) before the first
PERCENTAGE copy can be sized, which would be most of a small fan-out's time. So the answers are
kept: fresh for FRESH_SECONDS; after that still used, up to MAX_AGE_SECONDS, while one background
read brings them up to date (stale-while-revalidate); only an account never read, or not for
MAX_AGE_SECONDS, makes the fan-out wait for the broker. The background read starts when the caller
says (`revalidate()`, after its fan-out), so that it never competes with the placements. A broker that could not say (None) is
remembered the same way, so an account whose broker has no funds endpoint costs no wait each time.

Funds move with every trade, so any cached figure is a snapshot; so is one read a moment before
placing. The broker's own margin check (RMS) is what refuses an order the account cannot pay for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from copytrade.core.logging import get_logger

log = get_logger(__name__)

FRESH_SECONDS = 30.0
MAX_AGE_SECONDS = 300.0



@dataclass(frozen=True)
class Refused:
    """The account cannot trade as it is (its session lapsed, it was unlinked): the copy must say
    so, not be sized on a fallback capital. Never kept: the user may fix it before the next order."""

    code: str
    reason: str


# account id -> available funds, Refused, or None when the broker could not say.
ReadFunds = Callable[[list[int]], Awaitable[dict[int, Decimal | Refused | None]]]


class FundsCache:
    def __init__(
        self,
        read: ReadFunds,
        *,
        fresh_seconds: float = FRESH_SECONDS,
        max_age_seconds: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._fresh = fresh_seconds
        self._max_age = max_age_seconds
        self._clock = clock
        self._entries: dict[int, tuple[float, Decimal | None]] = {}
        self._refreshing: set[int] = set()
        self._stale: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, account_ids: Iterable[int]) -> dict[int, Decimal | Refused]:
        """The funds of those accounts whose broker could say, and the refusals of those read now
        that cannot trade."""
        ids = list(dict.fromkeys(account_ids))
        now = self._clock()
        missing, stale = [], []
        for account_id in ids:
            entry = self._entries.get(account_id)
            age = now - entry[0] if entry is not None else None
            if age is None or age > self._max_age:
                missing.append(account_id)
            elif age > self._fresh and account_id not in self._refreshing:
                stale.append(account_id)
        found: dict[int, Decimal | Refused] = {}
        if missing:
            answers = await self._read(missing)
            found.update({a: answer for a, answer in answers.items() if isinstance(answer, Refused)})
            self._store(missing, answers)
        self._stale.update(stale)
        for account_id in ids:
            entry = self._entries.get(account_id)
            if entry is not None and entry[1] is not None:
                found[account_id] = entry[1]
        return found

    def revalidate(self) -> None:
        """Start one background read of the stale figures used since the last call."""
        stale = [a for a in self._stale if a not in self._refreshing]
        self._stale.clear()
        if stale:
            self._refresh(stale)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _store(self, asked: list[int], answers: dict[int, Decimal | Refused | None]) -> None:
        at = self._clock()
        for account_id in asked:
            answer = answers.get(account_id)
            if isinstance(answer, Refused):
                self._entries.pop(account_id, None)
            else:
                self._entries[account_id] = (at, answer)

    def _refresh(self, account_ids: list[int]) -> None:
        self._refreshing.update(account_ids)

        async def refresh() -> None:
            try:
                self._store(account_ids, await self._read(account_ids))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the stale figures stay until MAX_AGE_SECONDS
                log.warning("funds_refresh_failed", accounts=len(account_ids), error=type(exc).__name__)
            finally:
                self._refreshing.difference_update(account_ids)

        task = asyncio.create_task(refresh())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
