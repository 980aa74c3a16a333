"""One linked account's broker client, and the rule that no order is ever placed twice.

AccountClient = adapter + session + rate limiters + circuit breaker. Its `place` answers with a
Placement, never an exception, whatever the broker does:

- accepted → PLACED; refused (RMS, EC004, EC500...) → REJECTED with the broker's reason, no retry;
- 429 → wait and send again: a 429 is refused before anything is done, so nothing was placed;
- session refused → the `on_session_expired` hook may supply a new session (XTS logs in again with
  stored credentials) and the order is sent on it; otherwise NEEDS_RELOGIN, nothing placed;
- timeout, 5xx, dropped connection, unreadable reply, and IIFL's generic EC003 → the order may
  exist, so the tag is looked up in the order book BEFORE anything else. Found → PLACED with
  found_existing. Proven absent → sent again with the same tag after a jittered exponential
  backoff. The lookup itself failing → looked up again, within the order's deadline. Deadline
  passed without proof → UNKNOWN, never a guess.
- connection refused (the request provably never left) → sent again after the backoff, no lookup.

EC003 (decided): IIFL documents it only as "something went wrong, please try after some time".
Nothing says the order was not created before the error, so it is treated like a timeout: look the
tag up first, and retry only if absent. A wasted book read is cheap; a duplicate order is not.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum

from copytrade.core.logging import get_logger
from copytrade.core.settings import Settings
from services.broker_gateway.brokers.base import (
    BookEntry,
    BrokerAdapter,
    BrokerError,
    BrokerSession,
    Credentials,
    Funds,
    OrderChange,
    OrderSpec,
    OrderStatus,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    SessionExpired,
    Unavailable,
)
from services.broker_gateway.brokers.circuit import CircuitBreaker
from services.broker_gateway.brokers.rate_limit import SessionLimits

log = get_logger(__name__)

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


SessionHook = Callable[["AccountClient"], Awaitable[BrokerSession | None]]


def backoff_delay(attempt: int) -> float:
    """Exponential with equal jitter: half fixed so the delay grows, half random so that the
    accounts of one fan-out do not come back in lockstep."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(attempt - 1, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class _Deadline:
    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at

    def left(self) -> float:
        return self.at - time.monotonic()

    def timeout(self, request_timeout: float) -> float:
        return max(0.001, min(request_timeout, self.left()))


class AccountClient:
    """Everything the gateway does in one linked account. One instance per account per process;
    it is safe to use from many tasks at once (one event loop)."""

    def __init__(
        self,
        adapter: BrokerAdapter,
        session: BrokerSession | None,
        *,
        limits: SessionLimits,
        breaker: CircuitBreaker | None = None,
        request_timeout: float = 5.0,
        order_deadline: float = 20.0,
        on_session_expired: SessionHook | None = None,
        account_id: int = 0,
    ) -> None:
        self.adapter = adapter
        self.account_id = account_id
        self.limits = limits
        self.breaker = breaker or CircuitBreaker()
        self.request_timeout = request_timeout
        self.order_deadline = order_deadline
        self.on_session_expired = on_session_expired
        self._session = session
        self._relogin: asyncio.Future[BrokerSession | None] | None = None

    @classmethod
    def from_settings(
        cls,
        adapter: BrokerAdapter,
        session: BrokerSession | None,
        settings: Settings,
        *,
        on_session_expired: SessionHook | None = None,
        account_id: int = 0,
    ) -> AccountClient:
        return cls(
            adapter,
            session,
            limits=SessionLimits.create(
                orders_per_second=settings.broker_orders_per_second,
                reads_per_second=settings.broker_reads_per_second,
            ),
            request_timeout=settings.broker_request_timeout_seconds,
            order_deadline=settings.broker_order_deadline_seconds,
            on_session_expired=on_session_expired,
            account_id=account_id,
        )

    @property
    def session(self) -> BrokerSession | None:
        return self._session

    def replace_session(self, session: BrokerSession | None) -> None:
        """A new session from a relink, or None when the account was marked NEEDS_RELOGIN."""
        self._session = session

    def _deadline(self, deadline: float | None, default: float) -> _Deadline:
        return _Deadline(deadline if deadline is not None else time.monotonic() + default)

    # Sessions.

    async def open_session(self, credentials: Credentials) -> BrokerSession:
        """Log in (paced by the session bucket) and use the new session from now on. Raises
        CredentialsRejected, Unavailable or RateLimited."""
        await self.limits.session.acquire()
        session = await self.adapter.open_session(credentials, timeout=self.request_timeout)
        self._session = session
        return session

    async def _live_session(self, stale: BrokerSession | None) -> BrokerSession | None:
        """After `stale` was refused: a fresh session from the hook, or None. Concurrent callers
        that saw the same stale session share one hook call, so one lapse is one login."""
        if self._session is not None and self._session is not stale and not self._session.expired():
            return self._session
        if self._relogin is None:
            self._session = None
            self._relogin = asyncio.ensure_future(self._run_hook())
        future = self._relogin
        try:
            return await asyncio.shield(future)
        finally:
            if future.done() and self._relogin is future:
                self._relogin = None

    async def _run_hook(self) -> BrokerSession | None:
        if self.on_session_expired is None:
            return None
        try:
            session = await self.on_session_expired(self)
        except Exception as exc:  # noqa: BLE001 - a failing re-login must not fail the orders waiting on it
            log.warning("session_hook_failed", account_id=self.account_id, error=type(exc).__name__)
            return None
        if session is not None:
            self._session = session
        return session

    async def _session_or_hook(self) -> BrokerSession | None:
        session = self._session
        if session is not None and not session.expired():
            return session
        return await self._live_session(session)

    # Placing.

    async def place(self, spec: OrderSpec, deadline: float | None = None, *, look_first: bool = False) -> Placement:
        """Place `spec` at most once. `deadline` is a time.monotonic() instant (default: now plus
        settings.broker_order_deadline_seconds). `look_first` checks the book for the tag before
        the first send: use it for an order that any process may have sent before (a resumed
        fan-out), since the real broker need not deduplicate tags."""
        started = time.monotonic()
        run = _PlaceRun(self, spec, self._deadline(deadline, self.order_deadline), started)
        return await run.go(look_first)

    # Reading.

    async def get_order(
        self, *, tag: str | None = None, broker_order_id: str | None = None, deadline: float | None = None
    ) -> BookEntry | None:
        """The order by tag or broker id; None means the book was read and it is not there.
        Raises NeedsRelogin, RateLimited or Unavailable when the book cannot be read."""
        if (tag is None) == (broker_order_id is None):
            raise ValueError("name the order by exactly one of tag or broker_order_id")
        for entry in await self.list_orders(deadline=deadline):
            if (tag is not None and entry.tag == tag) or (broker_order_id is not None and entry.broker_order_id == broker_order_id):
                return entry
        return None

    async def list_orders(self, tags: list[str] | None = None, *, deadline: float | None = None) -> list[BookEntry]:
        entries = await self._read(self.adapter.order_book, deadline)
        if tags:
            wanted = set(tags)
            entries = [entry for entry in entries if entry.tag in wanted]
        return entries

    async def funds(self, *, deadline: float | None = None) -> Funds:
        return await self._read(self.adapter.funds, deadline)

    async def _read(self, call, deadline: float | None):
        limit = self._deadline(deadline, self.request_timeout * READ_ATTEMPTS)
        last: BrokerError | None = None
        for attempt in range(1, READ_ATTEMPTS + 1):
            session = await self._session_or_hook()
            if session is None:
                raise NeedsRelogin("the account's broker session has lapsed; log in again")
            if self.limits.reads.wait_estimate() >= limit.left():
                raise last or RateLimited("the session's read rate is used up; try again shortly", code="READ_RATE")
            await self.limits.reads.acquire()
            try:
                result = await call(session, timeout=limit.timeout(self.request_timeout))
            except SessionExpired:
                if await self._live_session(session) is None:
                    raise NeedsRelogin("the broker refused the session; log in again") from None
                continue
            except RateLimited as exc:
                self.limits.reads.pause(RATE_LIMITED_PAUSE_SECONDS)
                last = exc
            except (Unavailable, OutcomeUnknown) as exc:
                self.breaker.record_failure()
                last = exc
            else:
                self.breaker.record_success()
                return result
            pause = backoff_delay(attempt)
            if attempt == READ_ATTEMPTS or pause >= limit.left():
                break
            await asyncio.sleep(pause)
        assert last is not None
        raise last

    # Changing orders.

    async def modify(
        self,
        change: OrderChange,
        *,
        tag: str | None = None,
        broker_order_id: str | None = None,
        deadline: float | None = None,
        problem: Callable[[BookEntry, OrderChange], str | None] | None = None,
    ) -> ActionResult:
        """Change an open order. `problem` checks the change against the order's instrument
        (instruments.InstrumentMaster.check_change) and returns why it is invalid, if it is."""
        return await self._act("modify", change, tag, broker_order_id, deadline, problem)

    async def cancel(
        self, *, tag: str | None = None, broker_order_id: str | None = None, deadline: float | None = None
    ) -> ActionResult:
        return await self._act("cancel", None, tag, broker_order_id, deadline, None)

    async def _act(self, kind, change, tag, broker_order_id, deadline, problem) -> ActionResult:
        started = time.monotonic()

        def result(outcome: ActionOutcome, order_id: str = "", code: str = "", reason: str = "", **extra) -> ActionResult:
            latency = round((time.monotonic() - started) * 1000)
            return ActionResult(outcome, order_id, code, reason, latency, **extra)

        if not self.breaker.allow():
            return result(ActionOutcome.FAILED, broker_order_id or "", "CIRCUIT_OPEN", "circuit open: the broker keeps failing for this account")
        try:
            return await self._act_on(kind, change, tag, broker_order_id, self._deadline(deadline, self.order_deadline), problem, result)
        finally:
            self.breaker.release_probe()

    async def _act_on(self, kind, change, tag, broker_order_id, limit: _Deadline, problem, result) -> ActionResult:
        try:
            current = await self.get_order(tag=tag, broker_order_id=broker_order_id, deadline=limit.at)
        except NeedsRelogin as exc:
            return result(ActionOutcome.NEEDS_RELOGIN, broker_order_id or "", "SESSION_EXPIRED", exc.reason, session_expired=True)
        except BrokerError as exc:
            return result(ActionOutcome.FAILED, broker_order_id or "", exc.code, f"could not read the order book: {exc.reason}")
        if current is None:
            return result(ActionOutcome.REJECTED, broker_order_id or "", "ORDER_NOT_FOUND", "no such order in the account's order book today")
        order_id = current.broker_order_id
        if current.status.is_final:
            return result(ActionOutcome.REJECTED, order_id, "ORDER_CLOSED", f"the order is already {current.status.name.lower()}")
        if change is not None:
            if change.empty:
                return result(ActionOutcome.REJECTED, order_id, "INVALID_ORDER", "nothing to change")
            reason = problem(current, change) if problem else None
            if reason:
                return result(ActionOutcome.FAILED, order_id, "INVALID_ORDER", reason)

        attempt = 0
        while True:
            attempt += 1
            session = await self._session_or_hook()
            if session is None:
                return result(ActionOutcome.NEEDS_RELOGIN, order_id, "SESSION_EXPIRED", "the broker session has lapsed; log in again", session_expired=True)
            if self.limits.orders.wait_estimate() >= limit.left():
                return result(ActionOutcome.FAILED, order_id, "DEADLINE", "the session's order rate left no slot before the deadline")
            await self.limits.orders.acquire()
            try:
                if kind == "modify":
                    await self.adapter.modify(session, current, change, timeout=limit.timeout(self.request_timeout))
                else:
                    await self.adapter.cancel(session, current, timeout=limit.timeout(self.request_timeout))
            except Rejected as exc:
                self.breaker.record_success()
                return result(ActionOutcome.REJECTED, order_id, exc.code, exc.reason)
            except RateLimited:
                self.limits.orders.pause(RATE_LIMITED_PAUSE_SECONDS)
                continue
            except SessionExpired:
                if await self._live_session(session) is None:
                    return result(ActionOutcome.NEEDS_RELOGIN, order_id, "SESSION_EXPIRED", "the broker refused the session; log in again", session_expired=True)
                continue
            except Unavailable as exc:
                # Never left: sending again is safe.
                self.breaker.record_failure()
                pause = backoff_delay(attempt)
                if pause >= limit.left() or attempt >= MAX_ATTEMPTS:
                    return result(ActionOutcome.FAILED, order_id, exc.code, exc.reason)
                await asyncio.sleep(pause)
                continue
            except OutcomeUnknown as exc:
                self.breaker.record_failure()
                if kind == "cancel":
                    return await self._confirm_cancel(current, limit, exc, result)
                # A modification sets absolute values, but the order may have traded meanwhile;
                # whether it took effect is for the caller to read (GetOrder), not to guess.
                return result(ActionOutcome.UNKNOWN, order_id, exc.code, f"{exc.reason}; check the order with GetOrder")
            self.breaker.record_success()
            return result(ActionOutcome.ACCEPTED, order_id)

    async def _confirm_cancel(self, current: BookEntry, limit: _Deadline, error: OutcomeUnknown, result) -> ActionResult:
        """A cancel with no answer: the book says whether it took. Each read waits a little first,
        since the exchange confirms a cancel after a moment; an order still open by then gets the
        cancel again, which is harmless (a second cancel of a cancelled order is only refused)."""
        order_id = current.broker_order_id
        for attempt in range(1, MAX_ATTEMPTS + 1):
            pause = backoff_delay(attempt)
            if pause >= limit.left():
                break
            await asyncio.sleep(pause)
            try:
                entry = await self.get_order(broker_order_id=order_id, deadline=limit.at)
            except BrokerError:
                continue
            if entry is None:
                break
            if entry.status in (OrderStatus.CANCELLED, OrderStatus.CANCEL_PENDING):
                return result(ActionOutcome.ACCEPTED, order_id)
            if entry.status.is_final:
                return result(ActionOutcome.REJECTED, order_id, "ORDER_CLOSED", f"the order is already {entry.status.name.lower()}")
            session = self._session
            if session is None or self.limits.orders.wait_estimate() >= limit.left():
                break
            await self.limits.orders.acquire()
            try:
                await self.adapter.cancel(session, entry, timeout=limit.timeout(self.request_timeout))
            except BrokerError as exc:
                # Refused or unanswered: perhaps because the first cancel is under way. Read again.
                error = exc if isinstance(exc, OutcomeUnknown) else error
                continue
            return result(ActionOutcome.ACCEPTED, order_id)
        return result(ActionOutcome.UNKNOWN, order_id, error.code, f"{error.reason}; check the order with GetOrder")


class _PlaceRun:
    """The state of one `place` call: how often it was sent, and whether the book must be read
    before it may be sent again."""

    def __init__(self, client: AccountClient, spec: OrderSpec, deadline: _Deadline, started: float) -> None:
        self.client = client
        self.spec = spec
        self.deadline = deadline
        self.started = started
        self.attempts = 0
        self.session_expired = False
        self.last_error: BrokerError | None = None

    def done(self, outcome: PlacementOutcome, **fields) -> Placement:
        latency = round((time.monotonic() - self.started) * 1000)
        return Placement(
            tag=self.spec.tag,
            outcome=outcome,
            attempts=self.attempts,
            latency_ms=latency,
            session_expired=self.session_expired,
            **fields,
        )

    def not_placed(self, code: str, reason: str) -> Placement:
        """Known absent (never sent, or the book proved it) and not going to be sent now."""
        return self.done(PlacementOutcome.FAILED, error_code=code, reason=reason, retryable=True)

    def unknown(self) -> Placement:
        error = self.last_error
        code = error.code if error else "BROKER_TIMEOUT"
        reason = error.reason if error else "no answer from the broker"
        return self.done(
            PlacementOutcome.UNKNOWN,
            error_code=code,
            reason=f"{reason}; the order book could not be read before the deadline, so the order may exist",
            retryable=True,
        )

    async def go(self, look_first: bool) -> Placement:
        client = self.client
        if not client.breaker.allow():
            reason = f"circuit open: the broker keeps failing for this account (next try in {client.breaker.retry_after():.0f} s)"
            if look_first:
                # Perhaps sent before: without reading the book it is not known to be absent.
                return self.done(PlacementOutcome.UNKNOWN, error_code="CIRCUIT_OPEN", reason=reason, retryable=True)
            return self.not_placed("CIRCUIT_OPEN", reason)
        try:
            return await self._loop(look_first)
        finally:
            # Whatever the probe's fate, another call may probe next.
            client.breaker.release_probe()

    async def _loop(self, must_look: bool) -> Placement:
        client = self.client
        pause_after_absent = False
        while True:
            if must_look:
                found = await self._look_up()
                if isinstance(found, Placement):
                    return found
                must_look = False
                pause_after_absent = self.attempts > 0
            if self.attempts >= MAX_ATTEMPTS:
                error = self.last_error
                return self.not_placed(
                    error.code if error else "BROKER_ERROR",
                    f"not placed after {self.attempts} attempts (the order book shows none): {error.reason if error else ''}".rstrip(": "),
                )
            if pause_after_absent:
                pause = backoff_delay(self.attempts)
                if pause >= self.deadline.left():
                    return self._out_of_time_absent()
                await asyncio.sleep(pause)
                pause_after_absent = False
                if not client.breaker.allow():
                    return self.not_placed("CIRCUIT_OPEN", "circuit open: the broker keeps failing for this account; the order was not placed")
            session = await client._session_or_hook()
            if session is None:
                self.session_expired = True
                return self.done(
                    PlacementOutcome.NEEDS_RELOGIN,
                    error_code="SESSION_EXPIRED",
                    reason="the account's broker session has lapsed (daily login); log in again",
                )
            if client.limits.orders.wait_estimate() >= self.deadline.left():
                return self._out_of_time_absent("the session's order rate (SEBI: 10/s per client) left no slot before the deadline")
            await client.limits.orders.acquire()
            self.attempts += 1
            try:
                ack = await client.adapter.place(session, self.spec, timeout=self.deadline.timeout(client.request_timeout))
            except Rejected as exc:
                client.breaker.record_success()
                return self.done(PlacementOutcome.REJECTED, error_code=exc.code, reason=exc.reason)
            except RateLimited as exc:
                # Refused unseen: not an attempt the broker acted on.
                self.attempts -= 1
                self.last_error = exc
                client.limits.orders.pause(RATE_LIMITED_PAUSE_SECONDS)
                continue
            except SessionExpired as exc:
                self.attempts -= 1
                self.session_expired = True
                self.last_error = exc
                if await client._live_session(session) is None:
                    return self.done(
                        PlacementOutcome.NEEDS_RELOGIN,
                        error_code=exc.code,
                        reason=f"{exc.reason} (nothing was placed)",
                    )
                continue
            except Unavailable as exc:
                # The request never left: nothing to look up.
                client.breaker.record_failure()
                self.attempts -= 1
                self.last_error = exc
                pause_after_absent = True
                continue
            except OutcomeUnknown as exc:
                client.breaker.record_failure()
                self.last_error = exc
                must_look = True
                continue
            client.breaker.record_success()
            return self.done(PlacementOutcome.PLACED, broker_order_id=ack.broker_order_id)

    def _out_of_time_absent(self, reason: str | None = None) -> Placement:
        error = self.last_error
        return self.not_placed(
            "DEADLINE" if reason else (error.code if error else "DEADLINE"),
            reason or f"not placed before the deadline (the order book shows none): {error.reason if error else ''}".rstrip(": "),
        )

    async def _look_up(self) -> Placement | None:
        """Read the book for the tag until it answers or the deadline passes. Returns the final
        Placement when the order is there (or cannot be resolved), None when it is proven absent."""
        client = self.client
        tries = 0
        while True:
            left = self.deadline.left()
            if left <= 0 or client.limits.reads.wait_estimate() >= left:
                return self.unknown()
            session = await client._session_or_hook()
            if session is None:
                self.session_expired = True
                return self.unknown()
            await client.limits.reads.acquire()
            tries += 1
            try:
                entry = await client.adapter.find_by_tag(session, self.spec.tag, timeout=self.deadline.timeout(client.request_timeout))
            except SessionExpired:
                self.session_expired = True
                if await client._live_session(session) is None:
                    return self.unknown()
                continue
            except RateLimited:
                client.limits.reads.pause(RATE_LIMITED_PAUSE_SECONDS)
                continue
            except BrokerError:
                client.breaker.record_failure()
                pause = backoff_delay(tries)
                if pause >= self.deadline.left():
                    return self.unknown()
                await asyncio.sleep(pause)
                continue
            client.breaker.record_success()
            if entry is None:
                return None
            if entry.status is OrderStatus.REJECTED:
                return self.done(
                    PlacementOutcome.REJECTED,
                    broker_order_id=entry.broker_order_id,
                    error_code="REJECTED",
                    reason=entry.rejection_reason or "rejected by the broker",
                    found_existing=True,
                )
            return self.done(PlacementOutcome.PLACED, broker_order_id=entry.broker_order_id, found_existing=True)
