"""One order, placed at most once, whatever the broker does (AccountClient.place runs this).

- accepted → PLACED; refused (RMS, EC004, EC500...) → REJECTED with the broker's reason, no retry;
- 429 → wait and send again: a 429 is refused before anything is done, so nothing was placed;
- session refused → the client's `on_session_expired` hook may supply a new session (XTS logs in
  again with stored credentials) and the order is sent on it; otherwise NEEDS_RELOGIN;
- timeout, 5xx, dropped connection, unreadable reply, and the generic EC003 → the order may exist.
  After a jittered exponential pause (which also gives the broker's book time to show the order)
  the tag is looked up in the order book BEFORE anything else. Found → PLACED with
  found_existing. Proven absent → sent again at once, with the same tag. The lookup failing →
  looked up again within the order's deadline. Deadline passed without proof → UNKNOWN;
- connection refused (provably never left) → sent again after the pause, no lookup needed.

EC003 (decided): IIFL documents it only as "something went wrong, please try after some time".
Nothing says the order was not created before the error, so it is treated like a timeout: look the
tag up first, and retry only if absent. A wasted book read is cheap; a duplicate order is not.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from copytrade.core import tracing
from services.broker_gateway.brokers import metrics
from services.broker_gateway.brokers.base import (
    BrokerError,
    BrokerSession,
    OrderSpec,
    OrderStatus,
    OutcomeUnknown,
    PlaceAck,
    RateLimited,
    Rejected,
    SessionExpired,
    Unavailable,
)
from services.broker_gateway.brokers.circuit import BreakerState
from services.broker_gateway.brokers.outcomes import (
    MAX_ATTEMPTS,
    RATE_LIMITED_PAUSE_SECONDS,
    Deadline,
    Placement,
    PlacementOutcome,
    backoff_delay,
)

_SPAN_OUTCOMES = {
    Rejected: "rejected",
    RateLimited: "rate_limited",
    SessionExpired: "session_expired",
    Unavailable: "unavailable",
    OutcomeUnknown: "unknown",
}

if TYPE_CHECKING:
    from services.broker_gateway.brokers.placement import AccountClient


class PlaceOnce:
    def __init__(self, client: AccountClient, spec: OrderSpec, deadline: Deadline) -> None:
        self.client = client
        self.spec = spec
        self.deadline = deadline
        self.attempts = 0  # sends the broker may have acted on
        self.tries = 0  # sends, including those that never left; paces the backoff
        self.session_expired = False
        self.last_error: BrokerError | None = None

    async def run(self, look_first: bool) -> Placement:
        breaker = self.client.breaker
        if not breaker.allow():
            wait = breaker.retry_after()
            reason = f"circuit open: the broker keeps failing for this account (next try in {wait:.0f} s)"
            if look_first:
                # Perhaps sent before: without reading the book it is not known to be absent.
                return self._done(
                    PlacementOutcome.UNKNOWN, error_code="CIRCUIT_OPEN", reason=reason, retryable=True
                )
            return self._not_placed("CIRCUIT_OPEN", reason)
        try:
            return await self._loop(may_exist=look_first)
        finally:
            # Whatever this call's fate as the breaker's probe, the next call may probe.
            breaker.release_probe()

    async def _loop(self, may_exist: bool) -> Placement:
        client = self.client
        since = time.monotonic()  # a lookup must read a book requested after this instant
        sent = False
        while True:
            if may_exist:
                found = await self._look_up(since)
                if found is not None:
                    return found
                may_exist = False
                if self.tries >= MAX_ATTEMPTS:
                    return self._not_placed(
                        self._code(), f"not placed after {self.attempts} attempts: {self._why()}"
                    )
                if client.breaker.state is BreakerState.OPEN:
                    return self._not_placed(
                        "CIRCUIT_OPEN", "circuit open: the broker keeps failing for this account"
                    )
            session = await client.live_session()
            if session is None:
                self.session_expired = True
                return self._done(
                    PlacementOutcome.NEEDS_RELOGIN,
                    error_code="SESSION_EXPIRED",
                    reason="the account's broker session has lapsed (daily login); log in again",
                )
            if client.limits.orders.wait_estimate() >= self.deadline.left():
                return self._not_placed(
                    "DEADLINE",
                    "the session's order rate (SEBI: 10/s per client) left no slot before the deadline",
                )
            await client.limits.orders.acquire()
            if sent:
                metrics.count_retry(client.adapter.dialect, "place")
            sent = True
            self.attempts += 1
            self.tries += 1
            try:
                timeout = self.deadline.timeout(client.request_timeout)
                if tracing.ENABLED:
                    ack = await self._traced_send(session, timeout)
                else:
                    ack = await client.adapter.place(session, self.spec, timeout=timeout)
            except Rejected as exc:
                client.breaker.record_success()
                return self._done(PlacementOutcome.REJECTED, error_code=exc.code, reason=exc.reason)
            except RateLimited as exc:
                # Refused unseen: not an attempt the broker acted on.
                self.attempts -= 1
                self.tries -= 1
                self.last_error = exc
                client.limits.orders.pause(RATE_LIMITED_PAUSE_SECONDS)
            except SessionExpired as exc:
                self.attempts -= 1
                self.tries -= 1
                self.session_expired = True
                self.last_error = exc
                if await client.renew_session(session) is None:
                    return self._done(
                        PlacementOutcome.NEEDS_RELOGIN,
                        error_code=exc.code,
                        reason=f"{exc.reason} (nothing was placed)",
                    )
            except Unavailable as exc:
                # The request never left: nothing to look up, only a pause before the next send.
                client.breaker.record_failure()
                self.attempts -= 1
                self.last_error = exc
                if self.tries >= MAX_ATTEMPTS or not await self._pause():
                    return self._not_placed(exc.code, f"not placed: {exc.reason}")
            except OutcomeUnknown as exc:
                client.breaker.record_failure()
                self.last_error = exc
                since = time.monotonic()
                await self._pause()
                may_exist = True
            else:
                client.breaker.record_success()
                return self._done(PlacementOutcome.PLACED, broker_order_id=ack.broker_order_id)

    async def _traced_send(self, session: BrokerSession, timeout: float | None) -> PlaceAck:
        """One placement HTTP call as a CLIENT span of the fan-out's trace, with its dialect and
        outcome (tracing on only: with it off the call is made bare)."""
        adapter = self.client.adapter
        with tracing.tracer().start_as_current_span(
            "broker.place_order",
            kind=tracing.SpanKind.CLIENT,
            attributes={
                "broker.dialect": adapter.dialect.value,
                "broker.account_id": self.client.account_id,
                "broker.order_tag": self.spec.tag,
                "broker.attempt": self.tries,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                ack = await adapter.place(session, self.spec, timeout=timeout)
            except BrokerError as exc:
                span.set_attribute("broker.outcome", _SPAN_OUTCOMES.get(type(exc), "error"))
                span.set_attribute("broker.error_code", exc.code)
                if not isinstance(exc, Rejected):  # a refusal is an answer, not a failure of the call
                    span.set_status(tracing.Status(tracing.StatusCode.ERROR, exc.code))
                raise
            except BaseException as exc:
                span.set_attribute("broker.outcome", "error")
                span.set_status(tracing.Status(tracing.StatusCode.ERROR, type(exc).__name__))
                raise
            span.set_attribute("broker.outcome", "placed")
            span.set_attribute("broker.order_id", ack.broker_order_id)
            return ack

    async def _pause(self) -> bool:
        """Back off before the next step; False when the deadline leaves no room for it."""
        delay = backoff_delay(self.tries)
        if delay >= self.deadline.left():
            return False
        await asyncio.sleep(delay)
        return True

    async def _look_up(self, since: float) -> Placement | None:
        """Read the book for the tag until it answers or the deadline passes: the final Placement
        when the order is there or cannot be resolved, None when the book proves it absent."""
        client = self.client
        failures = 0
        while True:
            if self.deadline.left() <= 0:
                return self._unknown()
            session = await client.live_session()
            if session is None:
                self.session_expired = True
                return self._unknown()
            try:
                book = await client.book_since(since, session, self.deadline)
            except TimeoutError:
                return self._unknown()
            except SessionExpired:
                self.session_expired = True
                if await client.renew_session(session) is None:
                    return self._unknown()
                continue
            except RateLimited as exc:
                if exc.code != "HTTP_429":
                    return self._unknown()  # no read slot left before the deadline
                client.limits.reads.pause(RATE_LIMITED_PAUSE_SECONDS)
                continue
            except BrokerError:
                failures += 1
                delay = backoff_delay(failures)
                if delay >= self.deadline.left():
                    return self._unknown()
                await asyncio.sleep(delay)
                continue
            entry = next((entry for entry in book if entry.tag == self.spec.tag), None)
            if entry is None:
                return None
            if entry.status is OrderStatus.REJECTED:
                return self._done(
                    PlacementOutcome.REJECTED,
                    broker_order_id=entry.broker_order_id,
                    error_code="REJECTED",
                    reason=entry.rejection_reason or "rejected by the broker",
                    found_existing=True,
                )
            return self._done(
                PlacementOutcome.PLACED, broker_order_id=entry.broker_order_id, found_existing=True
            )

    def _done(self, outcome: PlacementOutcome, **fields) -> Placement:
        return Placement(
            tag=self.spec.tag,
            outcome=outcome,
            attempts=self.attempts,
            latency_ms=self.deadline.elapsed_ms(),
            session_expired=self.session_expired,
            **fields,
        )

    def _not_placed(self, code: str, reason: str) -> Placement:
        """Known absent (never sent, or the book proved it) and not going to be sent now."""
        return self._done(PlacementOutcome.FAILED, error_code=code, reason=reason, retryable=True)

    def _unknown(self) -> Placement:
        return self._done(
            PlacementOutcome.UNKNOWN,
            error_code=self._code(),
            reason=f"{self._why()}; the book could not be read before the deadline, so the order may exist",
            retryable=True,
        )

    def _code(self) -> str:
        return self.last_error.code if self.last_error else "BROKER_TIMEOUT"

    def _why(self) -> str:
        return self.last_error.reason if self.last_error else "no answer from the broker"
