"""A circuit breaker per linked account, so that a broken account is not hammered.

Closed: calls go through and consecutive failures are counted (a failure is the broker not
answering usefully: timeout, dropped connection, 5xx, EC003, unreachable). At `failure_threshold`
it opens: new orders get FAILED "circuit open" at once, for `cool_down` seconds. Then it is half
open: exactly one call (the probe) goes through; success closes it, failure opens it again for twice
as long, up to `max_cool_down`. Any useful answer, a rejection included, counts as success: the
broker is there and deciding.

Thresholds (decided): 5 consecutive failures, 5 s cool-down doubling to 60 s. Five is more than one
order's own retries against a flaky broker produce between two successful book reads, so one bad
order does not open it; 5 s is shorter than an order's deadline, so a recovered broker is probed
again within the same fan-out cycle.
"""

from __future__ import annotations

import time
from enum import Enum


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    __slots__ = (
        "_clock",
        "_cool_down",
        "_failures",
        "_opened_at",
        "_probing",
        "base_cool_down",
        "failure_threshold",
        "max_cool_down",
    )

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cool_down: float = 5.0,
        max_cool_down: float = 60.0,
        clock=time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.base_cool_down = cool_down
        self.max_cool_down = max_cool_down
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._cool_down = cool_down
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at < self._cool_down:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def retry_after(self) -> float:
        """Seconds until the breaker lets a probe through (0 when it would now)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._cool_down - self._clock())

    def allow(self) -> bool:
        """May a new call start? In half-open state this hands out the single probe."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._cool_down = self.base_cool_down
        self._probing = False

    def record_failure(self) -> None:
        if self._opened_at is not None:
            # A failed probe (or a straggler from before the opening): open again, for longer.
            if self._probing or self.state is BreakerState.HALF_OPEN:
                self._cool_down = min(self._cool_down * 2, self.max_cool_down)
                self._opened_at = self._clock()
                self._probing = False
            return
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
            self._probing = False

    def release_probe(self) -> None:
        """The probe ended neither way (cancelled, or a neutral answer such as 429): let another try."""
        self._probing = False
