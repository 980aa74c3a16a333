"""HTTP/1.1 to one broker over pooled keep-alive connections: asyncio protocols, parsed by httptools.

The broker gateway's CPU per order is the critical path of a large fan-out (one event loop sends
every copy), and most of it was the HTTP client. Measured with `python -m
services.broker_gateway.brokers.bench` (500 orders in flight at the mock, CPU of the client's
process per order): aiohttp 0.34 ms, the Rust clients behind Python no less (rnet 0.32-0.35 ms,
pyreqwest 0.39 ms), httpx 1.5-10 ms; this transport 0.10 ms. It does only what the broker APIs
need, which is why it is cheap:

- one request at a time per connection, no pipelining; idle connections are reused newest first and
  dropped after KEEPALIVE_SECONDS idle, before a server would close them under a request;
- never a retry: a write sent twice may be an order placed twice (NotSent and NoReply say whether
  the broker may have seen it);
- request bodies with Content-Length; replies framed by Content-Length or chunked (llhttp, the
  parser Node.js uses, reads them). A reply delimited only by closing the connection is not read:
  no broker API answers that way, and it arrives as NoReply;
- TLS through the event loop's own ssl support, with certificate and host name checks.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from typing import cast
from urllib.parse import urlsplit

import httptools

from services.broker_gateway.brokers.http import (
    DEFAULT_MAX_CONNECTIONS,
    JSON_HEADERS,
    KEEPALIVE_SECONDS,
    NoReply,
    NotSent,
    Reply,
    Transport,
    raise_fd_limit,
)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; `send` writes a request and returns the future of its reply."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._reply: asyncio.Future[Reply] | None = None
        self._body: list[bytes] = []
        self.open = False
        self.keep_alive = True
        self.idle_since = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self.open = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._fail(NoReply("the connection closed before the whole reply came", timed_out=False))

    def data_received(self, data: bytes) -> None:
        if self._reply is None:
            # Bytes nobody asked for (a server talking out of turn): the connection's framing
            # can no longer be trusted.
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(NoReply(f"malformed reply: {exc}", timed_out=False))
            self.close()

    # httptools callbacks

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        reply, self._reply = self._reply, None
        self.keep_alive = self._parser.should_keep_alive()
        body, self._body = b"".join(self._body), []
        if reply is not None and not reply.done():
            reply.set_result(Reply(self._parser.get_status_code(), body))

    # used by the pool

    def send(self, request: bytes) -> asyncio.Future[Reply]:
        assert self._transport is not None and self._reply is None
        self._reply = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return self._reply

    def expire(self, reply: asyncio.Future[Reply], timeout: float) -> None:
        """The reply did not come in time: fail it (the connection is then closed, not reused)."""
        if reply is self._reply:
            self._fail(NoReply(f"no answer within the timeout of {timeout:g} s", timed_out=True))

    def close(self) -> None:
        self.open = False
        if self._transport is not None:
            self._transport.close()

    def _fail(self, exc: NoReply) -> None:
        reply, self._reply = self._reply, None
        self._body = []
        if reply is not None and not reply.done():
            reply.set_exception(exc)


class HttptoolsTransport(Transport):
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        connect_timeout: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"a broker base URL must be http(s)://host[:port][/path], not {base_url!r}")
        secure = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if secure else 80)
        self._ssl = (ssl_context or ssl.create_default_context()) if secure else None
        default_port = self._port == (443 if secure else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host  # an IPv6 literal
        host_header = host if default_port else f"{host}:{self._port}"
        self._prefix = url.path
        self._fixed_headers = {"Host": host_header, **JSON_HEADERS}
        self._timeout = timeout
        self._connect_timeout = connect_timeout or timeout
        # How many connections are kept open between requests. How many requests are in flight at
        # once is Bounded's to limit (HttpClients wraps every transport in it), not this pool's.
        self._max_connections = max_connections
        self._idle: collections.deque[_Connection] = collections.deque()
        self._closed = False
        raise_fd_limit(max_connections + 1_024)

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Reply:
        wait = self._timeout if timeout is None else timeout
        message = self._message(method, path, headers, body or b"")
        started = time.monotonic()
        connection = self._idle_connection() or await self._connect(min(wait, self._connect_timeout))
        left = max(wait - (time.monotonic() - started), 0.001)
        reply = connection.send(message)
        timer = asyncio.get_running_loop().call_later(left, connection.expire, reply, wait)
        try:
            answer = await reply
        except BaseException:
            # Timed out, dropped, garbled or cancelled: a late answer must not be read as the next
            # request's.
            connection.close()
            raise
        finally:
            timer.cancel()
        if connection.keep_alive and connection.open and not self._closed and len(self._idle) < self._max_connections:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    async def warm(self, connections: int) -> int:
        """Open up to `connections` connections (TCP and TLS handshakes) and keep them idle."""
        wanted = min(connections, self._max_connections) - len(self._idle)
        opened = await asyncio.gather(
            *(self._connect(self._connect_timeout) for _ in range(max(wanted, 0))), return_exceptions=True
        )
        now = time.monotonic()
        for connection in opened:
            if isinstance(connection, _Connection):
                connection.idle_since = now
                self._idle.append(connection)
        return sum(connection.open for connection in self._idle)

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    def _message(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        fields = {**self._fixed_headers, **headers, "Content-Length": str(len(body))}
        head = f"{method} {self._prefix}{path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        # A line break in a header or the path would let one request smuggle another.
        if head.count("\n") != len(fields) + 1 or head.count("\r") != len(fields) + 1:
            raise NotSent("a header or the path contains a line break; not sent")
        try:
            return head.encode("latin-1") + b"\r\n" + body
        except UnicodeEncodeError:
            raise NotSent("a header or the path has characters HTTP/1.1 cannot carry; not sent") from None

    def _idle_connection(self) -> _Connection | None:
        if self._closed:
            raise NotSent("the broker client is closed")
        stale_before = time.monotonic() - KEEPALIVE_SECONDS
        while self._idle and self._idle[0].idle_since < stale_before:
            self._idle.popleft().close()  # oldest first: a server may be about to close it
        while self._idle:
            connection = self._idle.pop()
            if connection.open:
                return connection
        return None

    async def _connect(self, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    _Connection,
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl else None,
                )
        except TimeoutError:
            raise NotSent(f"no connection to {self._host}:{self._port} within {timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise NotSent(f"cannot connect to {self._host}:{self._port}: {exc}") from None
        return connection
