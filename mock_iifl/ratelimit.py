"""Per-session rate limits: at most N calls in any one-second window, counted on arrival.

IIFL publishes "calls per second" without saying how the second is measured. A sliding window is
the strictest reading: a client that passes here (spacing its calls, or a token bucket holding no
more than N) passes a fixed-window server too. Calls refused with 429 do not count.
"""

from __future__ import annotations

from collections import deque

WINDOW_SECONDS = 1.0


class SlidingWindow:
    __slots__ = ("hits",)

    def __init__(self) -> None:
        self.hits: deque[float] = deque()

    def allow(self, now: float, limit: int) -> bool:
        hits = self.hits
        # A call exactly one second after another is in a new window: spacing of 1/N passes.
        horizon = now - WINDOW_SECONDS
        while hits and hits[0] <= horizon:
            hits.popleft()
        if len(hits) >= limit:
            return False
        hits.append(now)
        return True


class RateLimiter:
    """Windows keyed by (who, bucket); who is a session token, or a client address before login."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], SlidingWindow] = {}

    def allow(self, who: str, bucket: str, limit: int, now: float) -> bool:
        window = self._windows.get((who, bucket))
        if window is None:
            window = self._windows[(who, bucket)] = SlidingWindow()
        return window.allow(now, limit)

    def clear(self) -> None:
        self._windows.clear()
