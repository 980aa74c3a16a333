"""AccountClient: one linked account's broker client = adapter + session + rate limiters + circuit
breaker. Everything the servicers do in an account goes through it.

- `place` never raises and never places twice (the rules are in placing.py);
- `modify` and `cancel` answer an ActionResult (actions.py);
- reads (`get_order`, `list_orders`, `funds`) are retried a few times and raise NeedsRelogin,
  RateLimited or Unavailable when they cannot be served;
- a session the broker refuses is renewed through the `on_session_expired` hook, once for all the
  calls that saw it refused, or the account's calls answer NEEDS_RELOGIN from then on.

Order-book reads are shared: a lookup needs a book requested after its order's failed send, and one
read requested after several such failures proves all of them (IIFL allows 3 book reads a second).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from copytrade.core.logging import get_logger
from copytrade.core.settings import Settings
from services.broker_gateway.brokers import metrics
from services.broker_gateway.brokers.actions import Action, ChangeCheck
from services.broker_gateway.brokers.base import (
    BookEntry,
    BrokerAdapter,
    BrokerError,
    BrokerSession,
    Credentials,
    Funds,
    OrderChange,
    OrderSpec,
    OutcomeUnknown,
    RateLimited,
    SessionExpired,
    Unavailable,
)
from services.broker_gateway.brokers.circuit import CircuitBreaker
from services.broker_gateway.brokers.outcomes import (
    RATE_LIMITED_PAUSE_SECONDS,
    READ_ATTEMPTS,
    ActionOutcome,
    ActionResult,
    Deadline,
    NeedsRelogin,
    Placement,
    PlacementOutcome,
    backoff_delay,
)
from services.broker_gateway.brokers.placing import PlaceOnce
from services.broker_gateway.brokers.rate_limit import SessionLimits

__all__ = ["AccountClient", "ActionOutcome", "ActionResult", "NeedsRelogin", "Placement", "PlacementOutcome"]

log = get_logger(__name__)
T = TypeVar("T")
SessionHook = Callable[["AccountClient"], Awaitable[BrokerSession | None]]


@dataclass(slots=True)
class _SharedRead:
    requested: float  # time.monotonic() when it was asked for
    future: asyncio.Future[list[BookEntry]]

    def usable_since(self, moment: float) -> bool:
        future = self.future
        failed = future.done() and (future.cancelled() or future.exception() is not None)
        return self.requested >= moment and not failed


class AccountClient:
    """One instance per account per process; safe to use from many tasks at once (one loop)."""

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
        self._renewal: asyncio.Future[BrokerSession | None] | None = None
        self._book: _SharedRead | None = None

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
                on_wait=lambda bucket: metrics.pacing_wait(adapter.dialect, bucket),
            ),
            request_timeout=settings.broker_request_timeout_seconds,
            order_deadline=settings.broker_order_deadline_seconds,
            on_session_expired=on_session_expired,
            account_id=account_id,
        )

    # Orders.

    async def place(
        self, spec: OrderSpec, deadline: float | None = None, *, look_first: bool = False
    ) -> Placement:
        """Place `spec` at most once; never raises. `deadline` is a time.monotonic() instant
        (default: now plus settings.broker_order_deadline_seconds). `look_first` reads the book for
        the tag before the first send: for an order any process may have sent before (a resumed
        fan-out), since a real broker need not refuse a repeated tag."""
        return await PlaceOnce(self, spec, Deadline(deadline, self.order_deadline)).run(look_first)

    async def modify(
        self,
        change: OrderChange,
        *,
        tag: str | None = None,
        broker_order_id: str | None = None,
        deadline: float | None = None,
        problem: ChangeCheck | None = None,
    ) -> ActionResult:
        """Change an open order named by tag or broker id. `problem` checks the change against the
        order's instrument (InstrumentMaster.check_change) and says why it is invalid, if it is."""
        action = Action(self, change, Deadline(deadline, self.order_deadline))
        return await action.run(tag, broker_order_id, problem)

    async def cancel(
        self, *, tag: str | None = None, broker_order_id: str | None = None, deadline: float | None = None
    ) -> ActionResult:
        return await Action(self, None, Deadline(deadline, self.order_deadline)).run(
            tag, broker_order_id, None
        )

    # Reads.

    async def get_order(
        self, *, tag: str | None = None, broker_order_id: str | None = None, deadline: float | None = None
    ) -> BookEntry | None:
        """The order by tag or broker id; None means the book was read and it is not there."""
        if (tag is None) == (broker_order_id is None):
            raise ValueError("name the order by exactly one of tag or broker_order_id")
        for entry in await self.list_orders(deadline=deadline):
            if entry.tag == tag if tag is not None else entry.broker_order_id == broker_order_id:
                return entry
        return None

    async def list_orders(
        self, tags: list[str] | None = None, *, deadline: float | None = None
    ) -> list[BookEntry]:
        """Today's book, oldest first, read now (not from before the call)."""
        asked = time.monotonic()
        entries = await self._read(
            lambda session, limit: self.book_since(asked, session, limit), deadline, "order_book"
        )
        if tags:
            wanted = set(tags)
            entries = [entry for entry in entries if entry.tag in wanted]
        return entries

    async def funds(self, *, deadline: float | None = None) -> Funds:
        async def fetch(session: BrokerSession, limit: Deadline) -> Funds:
            if self.limits.reads.wait_estimate() >= limit.left():
                raise RateLimited("the session's read rate is used up; try again shortly", code="READ_RATE")
            await self.limits.reads.acquire()
            return await self._metered(
                self.adapter.funds(session, timeout=limit.timeout(self.request_timeout))
            )

        return await self._read(fetch, deadline, "funds")

    async def book_since(self, moment: float, session: BrokerSession, limit: Deadline) -> list[BookEntry]:
        """The order book from a read requested at or after `moment` (time.monotonic()), shared
        with every caller that can use the same read. Raises TimeoutError at the deadline,
        RateLimited("READ_RATE") when no read slot is left before it, or the read's BrokerError."""
        shared = self._book
        if shared is None or not shared.usable_since(moment):
            if self.limits.reads.wait_estimate() >= limit.left():
                raise RateLimited("the session's read rate is used up; try again shortly", code="READ_RATE")
            future = asyncio.ensure_future(self._read_book(session, limit.timeout(self.request_timeout)))
            # Joiners may all give up; the outcome must still count as seen.
            future.add_done_callback(lambda done: done.cancelled() or done.exception())
            shared = self._book = _SharedRead(time.monotonic(), future)
        return await asyncio.wait_for(asyncio.shield(shared.future), max(limit.left(), 0.001))

    async def _read_book(self, session: BrokerSession, timeout: float) -> list[BookEntry]:
        await self.limits.reads.acquire()
        return await self._metered(self.adapter.order_book(session, timeout=timeout))

    async def _metered(self, call: Awaitable[T]) -> T:
        """A broker call whose failure counts against the account's circuit breaker."""
        try:
            result = await call
        except (Unavailable, OutcomeUnknown):
            self.breaker.record_failure()
            raise
        self.breaker.record_success()
        return result

    async def _read(
        self, fetch: Callable[[BrokerSession, Deadline], Awaitable[T]], deadline: float | None, call: str
    ) -> T:
        """`call` names the read in the retry metric: order_book or funds."""
        limit = Deadline(deadline, self.request_timeout * READ_ATTEMPTS)
        last: BrokerError | None = None
        for attempt in range(1, READ_ATTEMPTS + 1):
            if attempt > 1:
                metrics.count_retry(self.adapter.dialect, call)
            session = await self.live_session()
            if session is None:
                raise NeedsRelogin("the account's broker session has lapsed; log in again")
            try:
                return await fetch(session, limit)
            except TimeoutError:
                raise Unavailable("the broker did not answer in time", code="BROKER_TIMEOUT") from None
            except SessionExpired as exc:
                last = exc
                if await self.renew_session(session) is None:
                    raise NeedsRelogin("the broker refused the session; log in again") from None
                continue
            except RateLimited as exc:
                if exc.code != "HTTP_429":
                    raise
                self.limits.reads.pause(RATE_LIMITED_PAUSE_SECONDS)
                last = exc
            except BrokerError as exc:
                last = exc
            delay = backoff_delay(attempt)
            if attempt == READ_ATTEMPTS or delay >= limit.left():
                break
            await asyncio.sleep(delay)
        assert last is not None
        raise last

    # Sessions.

    @property
    def session(self) -> BrokerSession | None:
        return self._session

    def replace_session(self, session: BrokerSession | None) -> None:
        """A new session from a relink, or None when the account was marked NEEDS_RELOGIN."""
        self._session = session

    async def open_session(self, credentials: Credentials) -> BrokerSession:
        """Log in (paced by the session bucket) and use the new session from now on. Raises
        CredentialsRejected, Unavailable or RateLimited."""
        await self.limits.session.acquire()
        session = await self.adapter.open_session(credentials, timeout=self.request_timeout)
        self._session = session
        return session

    async def live_session(self) -> BrokerSession | None:
        """The session to use now: the current one unless it has passed its expiry (midnight IST),
        else whatever the hook gives."""
        session = self._session
        if session is not None and not session.expired():
            return session
        return await self.renew_session(session)

    async def renew_session(self, refused: BrokerSession | None) -> BrokerSession | None:
        """After `refused` was refused: a newer session if there is one, else the hook's. Callers
        that saw the same session refused share one hook call, so one lapse is one login."""
        current = self._session
        if current is not None and current is not refused and not current.expired():
            return current
        if self._renewal is None:
            self._session = None
            self._renewal = asyncio.ensure_future(self._run_hook())
        renewal = self._renewal
        try:
            return await asyncio.shield(renewal)
        finally:
            if renewal.done() and self._renewal is renewal:
                self._renewal = None

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
