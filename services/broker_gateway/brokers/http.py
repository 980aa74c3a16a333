"""Pooled HTTP clients for the brokers: one per base URL, shared by every account of that broker.

Three implementations behind one small interface, chosen by settings.broker_http_client:

- httptools (default): asyncio protocols and the llhttp parser, in h1.py. 0.10 ms CPU per request
  at 500 concurrent orders on the 2-core development machine, a third of aiohttp's.
- aiohttp: 0.2-0.4 ms CPU per request at hundreds of concurrent orders.
- httpx, HTTP/2 capable. A default httpx pool spent 10-30 ms CPU per request at that concurrency
  (httpx issue 3215: each request rescans every pooled connection), HTTP/2 1.3-1.9 ms with at most
  100 streams in flight per client. So requests are spread round-robin over shards, small
  AsyncClients that each scan little: HTTP/2 shards carry up to 100 streams; HTTP/1.1 shards hold
  10 connections (measured with 500 warm connections to the mock: 1.5 ms CPU per request at 10 per
  shard, 2.7 ms at 25, 13 ms at 100). HTTP/2 is used over TLS when the server offers it (ALPN), and
  over plain http only when asked (`h2c`, prior knowledge).

What the callers need from a failure is one fact: may the broker have seen the request? NotSent
(no connection could be made, or none became free in time) means certainly not; NoReply (timeout
after sending, connection closed or reset, malformed reply) means maybe. For an order write, maybe
is an order that may exist.
"""

from __future__ import annotations

import abc
import asyncio
import itertools
import math
import resource
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import aiohttp
import httpx

from copytrade.core.settings import Settings

if TYPE_CHECKING:
    # The type of httpx.USE_CLIENT_DEFAULT, which httpx does not export.
    from httpx._client import UseClientDefault

# Enough for a 5,000-order fan-out with every order in flight at once.
DEFAULT_MAX_CONNECTIONS = 5_000
# httpx: concurrent streams (h2) or connections (h1) per AsyncClient; see the module comment.
SHARD_IN_FLIGHT = 100
SHARD_CONNECTIONS_H1 = 10
# Idle connections are kept this long between fan-outs; the broker may close them sooner.
KEEPALIVE_SECONDS = 60.0


class _AiohttpOptions(TypedDict, total=False):
    timeout: aiohttp.ClientTimeout


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes


class TransportError(Exception):
    """The request got no HTTP answer."""

    sent: bool = True


class NotSent(TransportError):
    """The broker never saw the request: no connection, or none free in time."""

    sent = False


class NoReply(TransportError):
    """Sent (or perhaps sent) but no complete answer: timed out, dropped or garbled."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class Transport(abc.ABC):
    """HTTP to one base URL. `path` is appended to it; `body` is already-encoded JSON."""

    base_url: str

    @abc.abstractmethod
    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Reply: ...

    @abc.abstractmethod
    async def warm(self, connections: int) -> int:
        """Open up to `connections` connections now, so that the first fan-out does not pay for the
        TCP (and TLS) handshakes; returns how many requests answered. Each is a GET of the base URL,
        which no broker meters (HEAD would be politer, but a server that wrongly sends a body with
        its HEAD answer desynchronises an HTTP/1.1 connection)."""

    @abc.abstractmethod
    async def close(self) -> None: ...


def raise_fd_limit(wanted: int) -> None:
    # Thousands of pooled sockets need thousands of descriptors; many systems start at 1,024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class AiohttpTransport(Transport):
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        connect_timeout: float | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._connect_timeout = connect_timeout or timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        raise_fd_limit(max_connections + 1_024)

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: aiohttp binds a session to the running event loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=self._max_connections,
                use_dns_cache=True,
                ttl_dns_cache=300,
                keepalive_timeout=KEEPALIVE_SECONDS,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._timeout, connect=self._connect_timeout),
                headers=JSON_HEADERS,
                # Every reply is read whole by the adapters; cookies mean nothing to these APIs.
                cookie_jar=aiohttp.DummyCookieJar(),
                raise_for_status=False,
            )
            # aiohttp silently sends PUT and DELETE (modify, cancel) a second time when a reused
            # connection drops: a blind retry of a write. Its own test client switches it off the
            # same way; refuse to run on an aiohttp where that switch is gone.
            if not hasattr(self._session, "_retry_connection"):
                raise RuntimeError("this aiohttp cannot be told not to resend writes; pin aiohttp<4")
            self._session._retry_connection = False
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Reply:
        # No timeout argument at all means the session's; an explicit None would mean none.
        options: _AiohttpOptions = {}
        if timeout is not None:
            options["timeout"] = aiohttp.ClientTimeout(
                total=timeout, connect=min(timeout, self._connect_timeout)
            )
        try:
            async with self._client().request(
                method, self.base_url + path, headers=headers, data=body, **options
            ) as response:
                return Reply(response.status, await response.read())
        except aiohttp.ConnectionTimeoutError as exc:
            # The connect phase (including the wait for a free pooled connection) ran out.
            raise NotSent(f"no connection within the timeout: {exc}") from None
        except aiohttp.ClientConnectorError as exc:
            raise NotSent(f"cannot connect: {exc}") from None
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise NoReply(f"no answer within the timeout {exc}".rstrip(), timed_out=True) from None
        except aiohttp.ClientError as exc:
            raise NoReply(f"connection failed: {type(exc).__name__}: {exc}", timed_out=False) from None
        except Exception as exc:  # noqa: BLE001 - broke mid-exchange: the broker may have it
            raise NoReply(f"broken exchange: {type(exc).__name__}: {exc}", timed_out=False) from None

    async def warm(self, connections: int) -> int:
        connections = min(connections, self._max_connections)
        results = await asyncio.gather(
            *(self.request("GET", "/", headers={}) for _ in range(connections)), return_exceptions=True
        )
        return sum(isinstance(result, Reply) for result in results)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HttpxTransport(Transport):
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        h2c: bool = False,
        connect_timeout: float | None = None,
        shard_size: int | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._connect_timeout = connect_timeout or timeout
        # TLS offers HTTP/2 through ALPN; plain http only with prior knowledge (h2c), as asked.
        self._http2 = h2c or self.base_url.startswith("https://")
        self._h2c = h2c
        size = shard_size or (SHARD_IN_FLIGHT if self._http2 else SHARD_CONNECTIONS_H1)
        shards = max(1, math.ceil(max_connections / size))
        self._per_shard = min(max_connections, size)
        self._shards: list[httpx.AsyncClient] = []
        self._wanted_shards = shards
        self._next = itertools.cycle(range(shards))
        raise_fd_limit(max_connections + 1_024)

    def _client(self) -> httpx.AsyncClient:
        if not self._shards:
            limits = httpx.Limits(
                max_connections=self._per_shard,
                max_keepalive_connections=self._per_shard,
                keepalive_expiry=KEEPALIVE_SECONDS,
            )
            timeout = httpx.Timeout(self._timeout, connect=self._connect_timeout, pool=self._connect_timeout)
            # One TLS context for all shards: httpx builds one per client otherwise, ~17 ms each.
            tls = httpx.create_ssl_context()
            self._shards = [
                httpx.AsyncClient(
                    http1=not self._h2c,
                    http2=self._http2,
                    limits=limits,
                    timeout=timeout,
                    headers=JSON_HEADERS,
                    verify=tls,
                )
                for _ in range(self._wanted_shards)
            ]
        return self._shards[next(self._next)]

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Reply:
        per_call: httpx.Timeout | UseClientDefault = httpx.USE_CLIENT_DEFAULT
        if timeout is not None:
            connect = min(timeout, self._connect_timeout)
            per_call = httpx.Timeout(timeout, connect=connect, pool=connect)
        try:
            response = await self._client().request(
                method, self.base_url + path, headers=headers, content=body, timeout=per_call
            )
            return Reply(response.status_code, response.content)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise NotSent(f"cannot connect: {type(exc).__name__}: {exc}") from None
        except httpx.TimeoutException as exc:
            raise NoReply(f"no answer within the timeout: {type(exc).__name__}", timed_out=True) from None
        except httpx.TransportError as exc:
            raise NoReply(f"connection failed: {type(exc).__name__}: {exc}", timed_out=False) from None
        except Exception as exc:  # noqa: BLE001 - h2 errors escape httpx; the broker may have it
            raise NoReply(f"broken exchange: {type(exc).__name__}: {exc}", timed_out=False) from None

    async def warm(self, connections: int) -> int:
        self._client()
        # One HTTP/2 connection per shard carries all its streams; HTTP/1.1 needs one per request.
        count = len(self._shards) if self._http2 else min(connections, self._per_shard * len(self._shards))
        results = await asyncio.gather(
            *(self.request("GET", "/", headers={}) for _ in range(count)), return_exceptions=True
        )
        return sum(isinstance(result, Reply) for result in results)

    async def close(self) -> None:
        shards, self._shards = self._shards, []
        await asyncio.gather(*(client.aclose() for client in shards))


def make_transport(
    kind: str,
    base_url: str,
    *,
    timeout: float,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    h2c: bool = False,
) -> Transport:
    if kind == "aiohttp":
        return AiohttpTransport(base_url, timeout=timeout, max_connections=max_connections)
    if kind == "httptools":
        from services.broker_gateway.brokers.h1 import HttptoolsTransport  # it builds on this module

        return HttptoolsTransport(base_url, timeout=timeout, max_connections=max_connections)
    if kind == "httpx":
        return HttpxTransport(base_url, timeout=timeout, max_connections=max_connections, h2c=h2c)
    raise ValueError(f"unknown broker HTTP client {kind!r}")


class Bounded(Transport):
    """At most `limit` requests at the broker at once; the others wait their turn here, unsent.

    Fired all at once, a 5,000-order fan-out on a slow or busy broker (or a busy machine) queued
    thousands of requests at the far end, where each waited past the request timeout and came back
    UNKNOWN: placed or not, nobody could say, and every one then cost a book lookup. Waiting here
    instead costs nothing of the kind: a request that finds no slot within its timeout provably
    never left (NotSent), and the order's own deadline bounds the whole.
    """

    def __init__(self, inner: Transport, limit: int, *, timeout: float) -> None:
        self.inner = inner
        self.base_url = inner.base_url
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)
        self._default_timeout = timeout  # the inner transport's, for a request that names none

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Reply:
        if self._slots.locked():
            wait = timeout if timeout is not None else self._default_timeout
            try:
                await asyncio.wait_for(self._slots.acquire(), wait)
            except TimeoutError:
                raise NotSent(f"no free slot among the {self.limit} requests in flight within {wait} s") from None
        else:
            # A free slot is taken at once: no timer and no task (wait_for's) for the usual case.
            await self._slots.acquire()
        try:
            return await self.inner.request(method, path, headers=headers, body=body, timeout=timeout)
        finally:
            self._slots.release()

    async def warm(self, connections: int) -> int:
        return await self.inner.warm(min(connections, self.limit))

    async def close(self) -> None:
        await self.inner.close()


class HttpClients:
    """The process's broker transports: one per base URL, created on first use, closed together."""

    def __init__(self, settings: Settings, *, max_connections: int | None = None) -> None:
        self._settings = settings
        # No more connections than requests in flight: the rest would only sit idle.
        self._max_connections = max_connections or settings.broker_max_in_flight
        self._transports: dict[str, Transport] = {}

    def for_url(self, base_url: str) -> Transport:
        transport = self._transports.get(base_url)
        if transport is None:
            transport = Bounded(
                make_transport(
                    self._settings.broker_http_client,
                    base_url,
                    timeout=self._settings.broker_request_timeout_seconds,
                    max_connections=self._max_connections,
                ),
                self._settings.broker_max_in_flight,
                timeout=self._settings.broker_request_timeout_seconds,
            )
            self._transports[base_url] = transport
        return transport

    def for_dialect(self, dialect: str) -> Transport:
        return self.for_url(self._settings.broker_base_url(dialect))

    async def warm(self, connections: int, dialects: tuple[str, ...] = ("IIFL_CAPITAL_V1", "XTS")) -> int:
        """Pre-open connections to each dialect's broker before the first fan-out."""
        counts = await asyncio.gather(*(self.for_dialect(dialect).warm(connections) for dialect in dialects))
        return sum(counts)

    async def close(self) -> None:
        transports, self._transports = list(self._transports.values()), {}
        await asyncio.gather(*(transport.close() for transport in transports))
