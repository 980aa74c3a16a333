"""The replication pipeline's Prometheus metrics (served at the replicator's /metrics).

Observed a batch at a time on the fan-out's path: one counter increment per (status, reason) seen in
a batch of recorded results, one histogram observation per copy and nothing else per copy.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable
from typing import Protocol

from prometheus_client import Counter, Histogram

# Seconds: a few followers take tens of milliseconds, 5,000 a few seconds; a stuck gateway 120 s.
FANOUT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0)

FANOUT_SECONDS = Histogram(
    "copytrade_replication_fanout_seconds",
    "One run of a master order's replication here: taken from JetStream until its last copy's outcome"
    " was recorded (a redelivered master order is a run of its own).",
    buckets=FANOUT_BUCKETS,
)
FOLLOWER_ORDER_SECONDS = Histogram(
    "copytrade_replication_follower_order_seconds",
    "Per copy sent to the broker gateway: from the ExecuteFanout request to its result arriving here.",
    buckets=FANOUT_BUCKETS,
)
FOLLOWER_ORDERS = Counter(
    "copytrade_replication_follower_orders",
    "Follower orders that reached a final status (SUBMITTED, REJECTED, FAILED, SKIPPED), by status and"
    " reason code ('' for SUBMITTED). Counted once, when the status is recorded.",
    ("status", "reason"),
)


class Decided(Protocol):
    @property
    def status(self) -> str: ...

    @property
    def status_reason_code(self) -> str: ...


def count_final(orders: Iterable[Decided], pending: str = "PENDING") -> None:
    """Count the orders in a final status by (status, reason): one increment per pair, not per copy."""
    tally = Tally((o.status, o.status_reason_code) for o in orders if o.status != pending)
    for (status, reason), count in tally.items():
        FOLLOWER_ORDERS.labels(status, reason).inc(count)


def observe_copies(seconds: float, copies: int) -> None:
    """`copies` results that arrived together, `seconds` after their fan-out was sent."""
    observe = FOLLOWER_ORDER_SECONDS.observe
    for _ in range(copies):
        observe(seconds)
