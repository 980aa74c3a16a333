"""The broker gateway's Prometheus metrics (served at its /metrics), per IIFL dialect.

- calls, errors and time of every HTTP call to a broker, by dialect (`iifl_v1`, `xts`) and call
  (`place`, `modify`, `cancel`, `order_book`, `funds`, `open_session`): MeteredAdapter wraps each
  dialect's adapter, so every call is seen once whichever code path made it. An HTTP 429 is an
  error with `error="rate_limited"`;
- retries: a call sent again for the same order or read after a failure (placing.py, actions.py,
  placement.py);
- waits for the client-side pacing (rate_limit.py), by bucket, counted only when a call had to wait;
- circuit breakers: how many accounts' breakers are in each state, read when scraped
  (BreakerStates), so the hot path pays nothing for it.

Label values come from fixed sets: never an account, user or order.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TypeVar

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from services.broker_gateway.brokers.base import (
    ActionAck,
    BookEntry,
    BrokerAdapter,
    BrokerError,
    BrokerSession,
    Credentials,
    CredentialsRejected,
    Dialect,
    Funds,
    OrderChange,
    OrderSpec,
    OutcomeUnknown,
    PlaceAck,
    RateLimited,
    Rejected,
    SessionExpired,
    Unavailable,
)
from services.broker_gateway.brokers.circuit import BreakerState, CircuitBreaker

T = TypeVar("T")

DIALECT_LABELS = {Dialect.IIFL_CAPITAL_V1: "iifl_v1", Dialect.XTS: "xts"}
CALLS = ("place", "modify", "cancel", "order_book", "funds", "open_session")
# Seconds; the request timeout is 5 s by default.
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)

BROKER_CALLS = Counter(
    "copytrade_broker_calls",
    "HTTP calls made to a broker, by dialect and call.",
    ("dialect", "call"),
)
BROKER_CALL_ERRORS = Counter(
    "copytrade_broker_call_errors",
    "Broker calls that ended in an error, by dialect, call and kind of error: rate_limited (HTTP 429),"
    " rejected (the broker refused the order or action), outcome_unknown (timeout, 5xx, dropped"
    " connection: the order may exist), unavailable (never reached the broker), session_expired,"
    " credentials_rejected, broker_error, timeout, other.",
    ("dialect", "call", "error"),
)
BROKER_CALL_SECONDS = Histogram(
    "copytrade_broker_call_seconds",
    "Time of one HTTP call to a broker, answered or not, by dialect and call.",
    ("dialect", "call"),
    buckets=CALL_BUCKETS,
)
BROKER_RETRIES = Counter(
    "copytrade_broker_retries",
    "Broker calls sent again after a failure of the same order, action or read (429s included), by"
    " dialect and call.",
    ("dialect", "call"),
)
RATE_LIMIT_WAIT_SECONDS = Histogram(
    "copytrade_broker_rate_limit_wait_seconds",
    "Waits for the client-side pacing of a broker session (IIFL's per-session limits), by dialect and"
    " bucket (orders, reads, session); a call that needed no wait is not observed.",
    ("dialect", "bucket"),
    buckets=WAIT_BUCKETS,
)

_ERROR_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (RateLimited, "rate_limited"),
    (Rejected, "rejected"),
    (OutcomeUnknown, "outcome_unknown"),
    (Unavailable, "unavailable"),
    (SessionExpired, "session_expired"),
    (CredentialsRejected, "credentials_rejected"),
    (BrokerError, "broker_error"),
    (TimeoutError, "timeout"),
)


def dialect_label(dialect: Dialect | str) -> str:
    return DIALECT_LABELS.get(Dialect(dialect), "unknown")


def error_kind(error: BaseException) -> str | None:
    """The `error` label of a failed call; None for a cancelled one, which the broker never failed."""
    if isinstance(error, asyncio.CancelledError):
        return None
    return next((kind for cls, kind in _ERROR_KINDS if isinstance(error, cls)), "other")


def count_retry(dialect: Dialect | str, call: str) -> None:
    BROKER_RETRIES.labels(dialect_label(dialect), call).inc()


def pacing_wait(dialect: Dialect | str, bucket: str) -> Callable[[float], None]:
    """The observer a RateLimiter calls with each wait of the named bucket."""
    return RATE_LIMIT_WAIT_SECONDS.labels(dialect_label(dialect), bucket).observe


class MeteredAdapter(BrokerAdapter):
    """A dialect's adapter with every call counted and timed; otherwise exactly the adapter."""

    def __init__(self, inner: BrokerAdapter) -> None:
        self.inner = inner
        self.dialect = inner.dialect
        self._label = dialect_label(inner.dialect)
        # Label children bound once: a call then costs two increments and one observation.
        self._series = {
            call: (BROKER_CALLS.labels(self._label, call), BROKER_CALL_SECONDS.labels(self._label, call))
            for call in CALLS
        }

    async def _metered(self, call: str, work: Awaitable[T]) -> T:
        count, seconds = self._series[call]
        count.inc()
        started = time.perf_counter()
        try:
            return await work
        except BaseException as exc:
            kind = error_kind(exc)
            if kind is not None:
                BROKER_CALL_ERRORS.labels(self._label, call, kind).inc()
            raise
        finally:
            seconds.observe(time.perf_counter() - started)

    async def open_session(self, credentials: Credentials, *, timeout: float | None = None) -> BrokerSession:
        return await self._metered("open_session", self.inner.open_session(credentials, timeout=timeout))

    async def place(
        self, session: BrokerSession, spec: OrderSpec, *, timeout: float | None = None
    ) -> PlaceAck:
        return await self._metered("place", self.inner.place(session, spec, timeout=timeout))

    async def modify(
        self, session: BrokerSession, current: BookEntry, change: OrderChange, *, timeout: float | None = None
    ) -> ActionAck:
        return await self._metered("modify", self.inner.modify(session, current, change, timeout=timeout))

    async def cancel(
        self, session: BrokerSession, current: BookEntry, *, timeout: float | None = None
    ) -> ActionAck:
        return await self._metered("cancel", self.inner.cancel(session, current, timeout=timeout))

    async def order_book(self, session: BrokerSession, *, timeout: float | None = None) -> list[BookEntry]:
        return await self._metered("order_book", self.inner.order_book(session, timeout=timeout))

    async def funds(self, session: BrokerSession, *, timeout: float | None = None) -> Funds:
        return await self._metered("funds", self.inner.funds(session, timeout=timeout))


BreakerSource = Callable[[], Iterable[tuple[Dialect, CircuitBreaker]]]


class BreakerStates(Collector):
    """`copytrade_broker_circuit_breakers{dialect, state}`: accounts whose breaker is in each state,
    counted over every watched source (a SessionManager's clients) when Prometheus scrapes."""

    def __init__(self) -> None:
        self._sources: weakref.WeakSet = weakref.WeakSet()

    def watch(self, source: object) -> None:
        """`source` has a `breakers()` method (BreakerSource); it is dropped when garbage."""
        self._sources.add(source)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = {(label, state.value): 0 for label in DIALECT_LABELS.values() for state in BreakerState}
        for source in list(self._sources):
            for dialect, breaker in source.breakers():
                key = (dialect_label(dialect), breaker.state.value)
                counts[key] = counts.get(key, 0) + 1
        family = GaugeMetricFamily(
            "copytrade_broker_circuit_breakers",
            "Linked accounts whose circuit breaker is in each state (closed, open, half_open), by dialect.",
            labels=("dialect", "state"),
        )
        for (label, state), count in sorted(counts.items()):
            family.add_metric((label, state), count)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Describing without collecting keeps registration from walking the sources.
        yield GaugeMetricFamily("copytrade_broker_circuit_breakers", "", labels=("dialect", "state"))


BREAKER_STATES = BreakerStates()
REGISTRY.register(BREAKER_STATES)
