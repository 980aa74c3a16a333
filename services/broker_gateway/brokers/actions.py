"""Modify and cancel for AccountClient: find the order (by tag or id) in the book, check the change,
send it once; a 429 or a request that never left is sent again, an unanswered one is not guessed.

A modification without an answer is UNKNOWN: it sets absolute values, but the order may have
traded meanwhile, and whether it took is for the caller to read (GetOrder). A cancel without an
answer is settled from the book, and sent again if the order is still open: cancelling twice is
harmless (the second is only refused).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from services.broker_gateway.brokers import metrics
from services.broker_gateway.brokers.base import (
    BookEntry,
    BrokerError,
    OrderChange,
    OrderStatus,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    SessionExpired,
    Unavailable,
)
from services.broker_gateway.brokers.outcomes import (
    MAX_ATTEMPTS,
    RATE_LIMITED_PAUSE_SECONDS,
    ActionOutcome,
    ActionResult,
    Deadline,
    NeedsRelogin,
    backoff_delay,
)

if TYPE_CHECKING:
    from services.broker_gateway.brokers.placement import AccountClient

ChangeCheck = Callable[[BookEntry, OrderChange], str | None]


class Action:
    def __init__(self, client: AccountClient, change: OrderChange | None, deadline: Deadline) -> None:
        self.client = client
        self.change = change  # None: cancel
        self.deadline = deadline
        self.order_id = ""

    def result(self, outcome: ActionOutcome, code: str = "", reason: str = "", **extra) -> ActionResult:
        return ActionResult(outcome, self.order_id, code, reason, self.deadline.elapsed_ms(), **extra)

    async def run(
        self, tag: str | None, broker_order_id: str | None, problem: ChangeCheck | None
    ) -> ActionResult:
        self.order_id = broker_order_id or ""
        breaker = self.client.breaker
        if not breaker.allow():
            return self.result(
                ActionOutcome.FAILED,
                "CIRCUIT_OPEN",
                "circuit open: the broker keeps failing for this account",
            )
        try:
            return await self._run(tag, broker_order_id, problem)
        finally:
            breaker.release_probe()

    async def _run(
        self, tag: str | None, broker_order_id: str | None, problem: ChangeCheck | None
    ) -> ActionResult:
        client = self.client
        try:
            current = await client.get_order(
                tag=tag, broker_order_id=broker_order_id, deadline=self.deadline.at
            )
        except NeedsRelogin as exc:
            return self.result(
                ActionOutcome.NEEDS_RELOGIN, "SESSION_EXPIRED", exc.reason, session_expired=True
            )
        except BrokerError as exc:
            return self.result(ActionOutcome.FAILED, exc.code, f"could not read the order book: {exc.reason}")
        if current is None:
            return self.result(
                ActionOutcome.REJECTED, "ORDER_NOT_FOUND", "no such order in the account's order book today"
            )
        self.order_id = current.broker_order_id
        if current.status.is_final:
            return self.result(
                ActionOutcome.REJECTED, "ORDER_CLOSED", f"the order is already {current.status.name.lower()}"
            )
        if self.change is not None:
            if self.change.empty:
                return self.result(ActionOutcome.REJECTED, "INVALID_ORDER", "nothing to change")
            reason = problem(current, self.change) if problem else None
            if reason:
                return self.result(ActionOutcome.FAILED, "INVALID_ORDER", reason)
        return await self._send(current)

    async def _send(self, current: BookEntry) -> ActionResult:
        client = self.client
        tries = 0
        while True:
            session = await client.live_session()
            if session is None:
                return self.result(
                    ActionOutcome.NEEDS_RELOGIN,
                    "SESSION_EXPIRED",
                    "the broker session has lapsed; log in again",
                    session_expired=True,
                )
            if client.limits.orders.wait_estimate() >= self.deadline.left():
                return self.result(
                    ActionOutcome.FAILED,
                    "DEADLINE",
                    "the session's order rate left no slot before the deadline",
                )
            await client.limits.orders.acquire()
            tries += 1
            if tries > 1:
                metrics.count_retry(client.adapter.dialect, "cancel" if self.change is None else "modify")
            try:
                await self._call(session, current)
            except Rejected as exc:
                client.breaker.record_success()
                return self.result(ActionOutcome.REJECTED, exc.code, exc.reason)
            except RateLimited:
                client.limits.orders.pause(RATE_LIMITED_PAUSE_SECONDS)
                continue
            except SessionExpired:
                if await client.renew_session(session) is None:
                    return self.result(
                        ActionOutcome.NEEDS_RELOGIN,
                        "SESSION_EXPIRED",
                        "the broker refused the session; log in again",
                        session_expired=True,
                    )
                continue
            except Unavailable as exc:
                client.breaker.record_failure()
                delay = backoff_delay(tries)
                if tries >= MAX_ATTEMPTS or delay >= self.deadline.left():
                    return self.result(ActionOutcome.FAILED, exc.code, exc.reason)
                await asyncio.sleep(delay)
                continue
            except OutcomeUnknown as exc:
                client.breaker.record_failure()
                if self.change is None:
                    return await self._confirm_cancel(current, exc)
                return self.result(
                    ActionOutcome.UNKNOWN, exc.code, f"{exc.reason}; check the order with GetOrder"
                )
            client.breaker.record_success()
            return self.result(ActionOutcome.ACCEPTED)

    async def _call(self, session, current: BookEntry) -> None:
        timeout = self.deadline.timeout(self.client.request_timeout)
        if self.change is None:
            await self.client.adapter.cancel(session, current, timeout=timeout)
        else:
            await self.client.adapter.modify(session, current, self.change, timeout=timeout)

    async def _confirm_cancel(self, current: BookEntry, error: BrokerError) -> ActionResult:
        """Each read waits a little first, since the exchange confirms a cancel after a moment."""
        client = self.client
        for attempt in range(1, MAX_ATTEMPTS + 1):
            delay = backoff_delay(attempt)
            if delay >= self.deadline.left():
                break
            await asyncio.sleep(delay)
            try:
                entry = await client.get_order(broker_order_id=self.order_id, deadline=self.deadline.at)
            except BrokerError:
                continue
            if entry is None:
                break
            if entry.status in (OrderStatus.CANCELLED, OrderStatus.CANCEL_PENDING):
                return self.result(ActionOutcome.ACCEPTED)
            if entry.status.is_final:
                return self.result(
                    ActionOutcome.REJECTED,
                    "ORDER_CLOSED",
                    f"the order is already {entry.status.name.lower()}",
                )
            session = client.session
            if session is None or client.limits.orders.wait_estimate() >= self.deadline.left():
                break
            await client.limits.orders.acquire()
            metrics.count_retry(client.adapter.dialect, "cancel")
            try:
                await client.adapter.cancel(
                    session, entry, timeout=self.deadline.timeout(client.request_timeout)
                )
            except BrokerError as exc:
                # Refused or unanswered, perhaps because the first cancel is under way: read again.
                error = exc if isinstance(exc, OutcomeUnknown) else error
                continue
            return self.result(ActionOutcome.ACCEPTED)
        return self.result(
            ActionOutcome.UNKNOWN, error.code, f"{error.reason}; check the order with GetOrder"
        )
