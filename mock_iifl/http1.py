"""The HTTP/1.1 listener: keep-alive connections as asyncio protocols, requests parsed by httptools.

The mock shares the benchmark's two cores with the platform it stands in for a broker of, so its
CPU per order is the platform's loss. aiohttp's low-level server (the previous listener, itself far
cheaper than a hypercorn-based mock) spent ~0.4 ms per order; most of it in aiohttp's request and
response objects, not in the broker logic. This listener parses with llhttp (httptools) and
writes each reply in one call.

Requests on one connection are answered in order, one at a time; connections run concurrently. A
request keeps running when its client goes away, as on a real server, so an order placed by a
request whose client timed out exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from http import HTTPStatus
from typing import cast
from urllib.parse import parse_qsl, unquote, urlsplit

import httptools

from mock_iifl.app import MockApp
from mock_iifl.wire import DROP, Request, Response, dumps

# How long stop() waits for requests in flight (a "timeout" fault may hold one for minutes).
SHUTDOWN_SECONDS = 1.0
log = logging.getLogger("mock_iifl")
_REASONS = {status.value: status.phrase for status in HTTPStatus}


def encode(reply: Response, keep_alive: bool) -> bytes:
    closing = "" if keep_alive else "Connection: close\r\n"
    head = (
        f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Unknown')}\r\n"
        f"Content-Type: {reply.content_type}\r\n"
        f"Content-Length: {len(reply.body)}\r\n"
        f"{closing}\r\n"
    )
    return head.encode("latin-1") + reply.body


class _Connection(asyncio.Protocol):
    def __init__(self, listener: Http1Listener) -> None:
        self._listener = listener
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._peer = ""
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._waiting: deque[tuple[Request, bool]] = deque()
        self._answering: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._peer = peer[0] if isinstance(peer, tuple) else ""
        self._listener.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse("upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._refuse(f"malformed request: {exc}")

    def on_message_begin(self) -> None:
        self._url, self._headers, self._body = b"", {}, []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # Lower-case names, as Request promises; a repeated header keeps its last value.
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        # curl and others wait for this before sending a large body.
        if self._headers.get("expect", "").lower() == "100-continue" and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        url = urlsplit(self._url.decode("latin-1"))
        request = Request(
            method=self._parser.get_method().decode("latin-1"),
            path=unquote(url.path),
            headers=self._headers,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            body=b"".join(self._body),
            peer=self._peer,
        )
        self._waiting.append((request, self._parser.should_keep_alive()))
        if self._answering is None:
            self._answering = asyncio.get_running_loop().create_task(self._answer())
            self._listener.tasks.add(self._answering)
            self._answering.add_done_callback(self._listener.tasks.discard)

    async def _answer(self) -> None:
        try:
            while self._waiting:
                request, keep_alive = self._waiting.popleft()
                try:
                    reply = await self._listener.app.handle(request)
                except Exception:  # a mock bug answers 500, as a server would
                    log.exception("mock request failed: %s %s", request.method, request.path)
                    reply = Response(500, b'{"error":"internal error in the mock"}')
                transport = self._transport
                if transport is None or transport.is_closing():
                    continue  # the client went away; the request still ran to its end
                if reply is DROP:
                    transport.close()
                    return
                transport.write(encode(reply, keep_alive))
                if not keep_alive:
                    transport.close()
                    return
        finally:
            self._answering = None

    def _refuse(self, reason: str) -> None:
        if self._transport is not None and not self._transport.is_closing():
            body = dumps({"error": reason})
            self._transport.write(encode(Response(400, body), keep_alive=False))
            self._transport.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class Http1Listener:
    def __init__(self, app: MockApp, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.connections: set[_Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; returns the port (the one the OS chose if port was 0)."""
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Connection(self), self.host, self.port, backlog=4096, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=SHUTDOWN_SECONDS)
        for task in list(self.tasks):
            task.cancel()
        for connection in list(self.connections):
            connection.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), SHUTDOWN_SECONDS)
        self._server = None
