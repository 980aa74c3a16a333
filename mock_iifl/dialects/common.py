"""What every broker endpoint goes through, in this order:

1. route (unknown path: the dialect's 404);
2. session from the Authorization header (for endpoints that need one);
3. rate limit, counted on arrival, per session and bucket;
4. latency, drawn from the account's (or the run's) distribution;
5. then the answer: 429 with no body if over the limit; the dialect's auth error if no live session;
   a transport fault if one is drawn (a write may take effect first, see faults.py); else the handler.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from mock_iifl import faults as fault
from mock_iifl.accounts import Account, Session
from mock_iifl.config import WRITE_GROUPS
from mock_iifl.state import MockState
from mock_iifl.trading import Refusal
from mock_iifl.wire import Reply, Request, Response, loads


@dataclass(slots=True)
class Call:
    request: Request
    session: Session | None
    params: tuple[str, ...]
    now: datetime
    # When the request arrived, before the drawn latency: where a broker's own delay starts.
    received_at: datetime | None = None

    @property
    def live_session(self) -> Session:
        """The caller's session, for the endpoints that require one (their route has auth=True)."""
        assert self.session is not None, "endpoint without a session"
        return self.session

    @property
    def account(self) -> Account:
        return self.live_session.account

    def json(self) -> Any:
        """The body as JSON (numbers exact), or BadRequest."""
        try:
            return loads(self.request.body or b"null")
        except ValueError as exc:
            raise BadRequest(f"body is not valid JSON: {exc}") from None


class BadRequest(Exception):
    """The request is malformed; the dialect words the answer."""


Handler = Callable[[Call], Response]


@dataclass(frozen=True, slots=True)
class Route:
    group: str
    handler: Handler
    auth: bool = True


class Dialect(abc.ABC):
    name: ClassVar[str]
    # group -> (rate bucket, calls per second per session).
    limits: ClassVar[dict[str, tuple[str, int]]]

    def __init__(self, state: MockState) -> None:
        self.state = state

    @abc.abstractmethod
    def route(self, method: str, path: str) -> tuple[Route, tuple[str, ...]] | None:
        """The endpoint for a method and path, with the values taken from the path."""

    @abc.abstractmethod
    def token(self, request: Request) -> str:
        """The session token the request carries, as the dialect's Authorization header holds it."""

    @abc.abstractmethod
    def unauthorized(self) -> Response:
        """The answer to a request without a live session."""

    @abc.abstractmethod
    def not_found(self, request: Request) -> Response:
        """The answer to an unknown path."""

    @abc.abstractmethod
    def bad_request(self, message: str) -> Response:
        """The answer to a malformed request."""

    def anonymous_key(self, request: Request, route: Route, params: tuple[str, ...]) -> str | None:
        """Whom to rate-limit for an endpoint without a session (login, contract files); None: nobody."""
        return None

    async def handle(self, request: Request) -> Reply:
        state = self.state
        found = self.route(request.method, request.path)
        if found is None:
            state.stats.requests[f"{self.name}.unknown"] += 1
            return self.not_found(request)
        route, params = found
        endpoint = f"{self.name}.{route.group}"
        state.stats.requests[endpoint] += 1
        now = state.clock.now()
        session = state.accounts.session(self.token(request), now) if route.auth else None
        account = session.account if session else None
        if session is not None:
            who: str | None = session.token
        elif route.auth:
            who = None  # refused below; there is no session to count it against
        else:
            who = self.anonymous_key(request, route, params)
        limited = who is not None and not self._allow(who, route.group, account)
        delay = state.latency_for(account).seconds(state.rng)
        if delay > 0:
            await asyncio.sleep(delay)
        if limited:
            state.stats.rate_limited[endpoint] += 1
            return Response(429, b"", "text/plain")
        if route.auth and session is None:
            state.stats.events["auth_failures"] += 1
            return self.unauthorized()
        call = Call(request, session, params, state.clock.now(), received_at=now)
        faults = state.faults_for(account)
        kind = fault.draw_transport(faults, state.rng) if route.group in faults.applies_to else None
        if kind is None:
            return self._invoke(route, call)
        state.stats.faults[kind] += 1
        if route.group in WRITE_GROUPS and fault.chance(faults.placed_before_fault, state.rng):
            state.stats.faults["placed_before_fault"] += 1
            self._invoke(route, call)
        return await fault.transport_reply(kind, faults, state.rng)

    def _invoke(self, route: Route, call: Call) -> Response:
        try:
            return route.handler(call)
        except BadRequest as exc:
            return self.bad_request(str(exc))

    def _allow(self, who: str, group: str, account: Account | None) -> bool:
        limits = self.state.rate_limits_for(account)
        if not limits.enabled:
            return True
        bucket, per_second = self.limits[group]
        per_second = limits.per_second.get(f"{self.name}.{bucket}", per_second)
        return self.state.limiter.allow(who, bucket, per_second, asyncio.get_running_loop().time())


def as_int(value: Any, name: str) -> int:
    """An integer sent as a number or as a string of digits (IIFL v1 sends numbers as strings)."""
    if isinstance(value, bool):
        raise Refusal("invalid", f"{name} must be a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    raise Refusal("invalid", f"{name} must be a whole number, not {value!r}")


def as_decimal(value: Any, name: str) -> Decimal:
    """A price sent as a number or a string, kept exact."""
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        raise Refusal("invalid", f"{name} must be a number, not {value!r}")
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise Refusal("invalid", f"{name} must be a number, not {value!r}") from None
    if not result.is_finite():
        raise Refusal("invalid", f"{name} must be a finite number")
    return result


def money(value: Decimal) -> str:
    return f"{value:.2f}"
