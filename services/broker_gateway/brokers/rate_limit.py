"""Client-side pacing per broker session, so that the broker never has to answer 429.

IIFL counts calls per session per second and does not say how (fixed or sliding window, token
bucket). The strictest reading is a sliding window: at most `burst` calls in any `window` seconds.
Pacing to that satisfies every other reading too, so that is what a RateLimiter guarantees.

Each call reserves the earliest slot that keeps the window rule, then sleeps until it. Reservations
are handed out in call order, so waiting is first come first served; a reservation is a deque append
and one timer, with no lock (one event loop) and nothing shared between sessions, so thousands of
sessions cost thousands of small deques. A caller cancelled while it waits leaves its slot unused,
which only errs on the slow side.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# Added to every window: the broker sees a call a little after we release it (event-loop lag,
# network jitter), and two releases one window apart can land closer together than that.
DEFAULT_SLACK_SECONDS = 0.05


class RateLimiter:
    __slots__ = ("_burst", "_not_before", "_on_wait", "_slots", "_window")

    def __init__(
        self,
        per_second: float,
        *,
        slack: float = DEFAULT_SLACK_SECONDS,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        """`on_wait` hears the seconds of every wait a caller had to make (for the metrics)."""
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        # A fractional rate (2.5/s) becomes `burst` calls per `burst / rate` seconds.
        self._burst = max(1, math.floor(per_second))
        self._window = self._burst / per_second + slack
        self._slots: deque[float] = deque(maxlen=self._burst)
        self._not_before = 0.0
        self._on_wait = on_wait

    def reserve(self, now: float) -> float:
        """Book the next slot at or after `now` and return its time (loop clock)."""
        at = max(now, self._not_before)
        if len(self._slots) == self._burst:
            at = max(at, self._slots[0] + self._window)
        self._slots.append(at)
        return at

    async def acquire(self) -> float:
        """Wait for this caller's slot; returns the seconds waited."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        delay = self.reserve(now) - now
        if delay > 0:
            if self._on_wait is not None:
                self._on_wait(delay)
            await asyncio.sleep(delay)
        return max(delay, 0.0)

    def pause(self, seconds: float) -> None:
        """Hold every call not yet reserved for `seconds`: the broker said 429 anyway."""
        until = asyncio.get_running_loop().time() + seconds
        self._not_before = max(self._not_before, until)

    def wait_estimate(self) -> float:
        """How long a call made now would wait, without reserving anything."""
        now = asyncio.get_running_loop().time()
        at = max(now, self._not_before)
        if len(self._slots) == self._burst:
            at = max(at, self._slots[0] + self._window)
        return at - now


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """The buckets of one broker session, per IIFL's published table (IIFL_API.md):
    order writes (place, modify, cancel: 10/s, also SEBI's cap per client), reads (order book 3/s;
    funds shares it, being rare) and session logins (3/s)."""

    orders: RateLimiter
    reads: RateLimiter
    session: RateLimiter

    @classmethod
    def create(
        cls,
        *,
        orders_per_second: float,
        reads_per_second: float,
        sessions_per_second: float = 3.0,
        session: RateLimiter | None = None,
        on_wait: Callable[[str], Callable[[float], None]] | None = None,
    ) -> SessionLimits:
        """`session` may be one limiter shared by every account: before a session exists the
        broker can only count logins per app or per address, which is the whole process.
        `on_wait(bucket)` gives the observer of a bucket's waits ("orders", "reads", "session")."""

        def observer(bucket: str) -> Callable[[float], None] | None:
            return on_wait(bucket) if on_wait is not None else None

        return cls(
            RateLimiter(orders_per_second, on_wait=observer("orders")),
            RateLimiter(reads_per_second, on_wait=observer("reads")),
            session or RateLimiter(sessions_per_second, on_wait=observer("session")),
        )
