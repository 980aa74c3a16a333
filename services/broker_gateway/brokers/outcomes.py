"""What AccountClient answers (Placement, ActionResult), and the timing rules its retries share."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from enum import IntEnum

from services.broker_gateway.brokers.base import SessionExpired

# Sends of one order at most, each after the book proved the previous absent.
MAX_ATTEMPTS = 4
BACKOFF_BASE_SECONDS = 0.25
BACKOFF_CAP_SECONDS = 4.0
# A 429 says nothing about when; pause the session's bucket this long before the next call.
RATE_LIMITED_PAUSE_SECONDS = 1.0
# Reads (GetOrder, ListOrders, funds) get this many tries, within their own deadline.
READ_ATTEMPTS = 3


class PlacementOutcome(IntEnum):
    """The proto's PlacementOutcome numbers (ACCOUNT_NOT_LINKED is decided before a client exists)."""

    PLACED = 1
    REJECTED = 2
    FAILED = 3
    NEEDS_RELOGIN = 4
    UNKNOWN = 6


class ActionOutcome(IntEnum):
    """The proto's ActionOutcome numbers."""

    ACCEPTED = 1
    REJECTED = 2
    FAILED = 3
    NEEDS_RELOGIN = 4
    UNKNOWN = 5


@dataclass(frozen=True, slots=True)
class Placement:
    tag: str
    outcome: PlacementOutcome
    broker_order_id: str = ""
    error_code: str = ""
    reason: str = ""
    attempts: int = 0
    found_existing: bool = False
    latency_ms: int = 0
    retryable: bool = False
    # The broker refused the session at some point: mark the account NEEDS_RELOGIN, even when the
    # outcome is UNKNOWN (the session lapsed while an earlier attempt was unresolved).
    session_expired: bool = False


@dataclass(frozen=True, slots=True)
class ActionResult:
    outcome: ActionOutcome
    broker_order_id: str = ""
    error_code: str = ""
    reason: str = ""
    latency_ms: int = 0
    session_expired: bool = False


class NeedsRelogin(SessionExpired):
    """A read could not be served: the session is gone and no new one could be opened."""

    default_code = "NEEDS_RELOGIN"


def backoff_delay(attempt: int) -> float:
    """Exponential with equal jitter: half fixed so the delay grows, half random so that the
    accounts of one fan-out do not come back in lockstep."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(attempt - 1, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class Deadline:
    """An instant on the time.monotonic() clock that a whole operation must finish by."""

    __slots__ = ("at", "started")

    def __init__(self, at: float | None, default_seconds: float) -> None:
        self.started = time.monotonic()
        self.at = at if at is not None else self.started + default_seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    def timeout(self, request_timeout: float) -> float:
        """One request's timeout: the usual one, cut short by the deadline."""
        return max(0.001, min(request_timeout, self.left()))

    def elapsed_ms(self) -> int:
        return round((time.monotonic() - self.started) * 1000)
