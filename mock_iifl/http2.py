"""The HTTP/2 cleartext (h2c) listener, on the h2 protocol library and a plain asyncio protocol.

Clients may start with the HTTP/2 preface (prior knowledge, what httpx does with http1=False) or with
an HTTP/1.1 request carrying `Upgrade: h2c` and `HTTP2-Settings` (RFC 7540 section 3.2): that request
is answered as stream 1 after the 101. Plain HTTP/1.1 without the upgrade gets 505.

Why not hypercorn or another ASGI server: a dropped-connection fault must end a request without any
answer, which ASGI cannot express (an app that fails before answering gets a 500). Here the fault
resets the stream with INTERNAL_ERROR: the client sees the request fail with no response, and not
REFUSED_STREAM, which would tell it the request was never processed.
"""

from __future__ import annotations

import asyncio
from typing import cast
from urllib.parse import parse_qsl, unquote, urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from mock_iifl.app import MockApp
from mock_iifl.wire import DROP, Request

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_HEAD_BYTES = 64 * 1024
# Enough streams for a whole fan-out on one connection; clients usually cap themselves lower.
MAX_CONCURRENT_STREAMS = 1000
INITIAL_WINDOW = 1 << 20
_REFUSE_HTTP1 = b"HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"


class Http2Listener:
    def __init__(self, app: MockApp, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.connections: set[H2cConnection] = set()
        self.tasks: set[asyncio.Task] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: H2cConnection(self), self.host, self.port, backlog=4096, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self.tasks):
            task.cancel()
        for connection in list(self.connections):
            connection.close()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


class _Stream:
    __slots__ = ("body", "headers")

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.headers = headers
        self.body = bytearray()


class H2cConnection(asyncio.Protocol):
    """One client connection: h2 state, its streams, and the tasks answering them."""

    def __init__(self, listener: Http2Listener) -> None:
        self.listener = listener
        self.conn: h2.connection.H2Connection | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.pending = bytearray()  # bytes before we know how the client speaks
        self.streams: dict[int, _Stream] = {}
        self.window_waiters: dict[int, asyncio.Future] = {}
        self.closed = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but offer the same methods.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        self.listener.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.listener.connections.discard(self)
        # Requests in flight still complete (their effect stands, as on a real server); only the
        # writers waiting for flow-control credit are told there is nobody left to write to.
        for waiter in self.window_waiters.values():
            if not waiter.done():
                waiter.set_exception(ConnectionResetError("connection lost"))
        self.window_waiters.clear()

    def data_received(self, data: bytes) -> None:
        if self.conn is not None:
            self._feed(data)
            return
        self.pending += data
        if PREFACE.startswith(bytes(self.pending)):
            return  # the preface, not yet whole
        if self.pending.startswith(PREFACE):
            self._open()
            early, self.pending = bytes(self.pending), bytearray()
            self._feed(early)
        else:
            self._try_upgrade()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # Connection set-up.

    def _new_h2(self) -> h2.connection.H2Connection:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                SettingCodes.INITIAL_WINDOW_SIZE: INITIAL_WINDOW,
                SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEAD_BYTES,
            },
        )
        return conn

    def _open(self) -> None:
        self.conn = self._new_h2()
        self.conn.initiate_connection()
        self._flush()

    def _try_upgrade(self) -> None:
        end = self.pending.find(b"\r\n\r\n")
        if end < 0:
            if len(self.pending) > MAX_HEAD_BYTES:
                self._refuse()
            return
        lines = bytes(self.pending[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        upgrade = "h2c" in headers.get("upgrade", "").lower() and "http2-settings" in headers
        if len(parts) != 3 or not upgrade:
            self._refuse()
            return
        length = int(headers.get("content-length", "0") or 0)
        body_start = end + 4
        if len(self.pending) < body_start + length:
            return  # the body is still coming
        body = bytes(self.pending[body_start : body_start + length])
        rest = bytes(self.pending[body_start + length :])
        self.pending = bytearray()
        assert self.transport is not None
        conn = self._new_h2()
        settings = headers["http2-settings"]
        try:
            # h2 decodes the header itself, but wants the padding that clients leave out.
            conn.initiate_upgrade_connection((settings + "=" * (-len(settings) % 4)).encode())
        except (ValueError, h2.exceptions.ProtocolError):
            self._refuse()
            return
        self.transport.write(_SWITCHING)
        self.conn = conn
        self._flush()
        method, target, _ = parts
        headers = {
            name: value
            for name, value in headers.items()
            if name not in ("connection", "upgrade", "http2-settings")
        }
        self._spawn(1, self._request(method, target, headers, body))
        if rest:
            self._feed(rest)

    def _refuse(self) -> None:
        assert self.transport is not None
        self.transport.write(_REFUSE_HTTP1)
        self.transport.close()

    # Frames.

    def _feed(self, data: bytes) -> None:
        assert self.conn is not None
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._flush()
            self.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.streams[event.stream_id] = _Stream(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.body += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self._dispatch(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.streams.pop(event.stream_id, None)
                self._wake(event.stream_id)
            elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
                self._wake(getattr(event, "stream_id", 0))
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.close()
        self._flush()

    def _dispatch(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        headers = {name.decode().lower(): value.decode() for name, value in stream.headers}
        request = self._request(
            headers.pop(":method", "GET"), headers.pop(":path", "/"), headers, bytes(stream.body)
        )
        self._spawn(stream_id, request)

    def _request(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Request:
        split = urlsplit(target)
        return Request(
            method=method,
            path=unquote(split.path),
            headers=headers,
            query=dict(parse_qsl(split.query)),
            body=body,
            peer=self.peer,
        )

    def _spawn(self, stream_id: int, request: Request) -> None:
        task = asyncio.get_running_loop().create_task(self._respond(stream_id, request))
        self.listener.tasks.add(task)
        task.add_done_callback(self.listener.tasks.discard)

    async def _respond(self, stream_id: int, request: Request) -> None:
        reply = await self.listener.app.handle(request)
        if self.closed or self.conn is None:
            return
        try:
            if reply is DROP:
                self.conn.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)
                self._flush()
                return
            body = reply.body
            self.conn.send_headers(
                stream_id,
                [
                    (":status", str(reply.status)),
                    ("content-type", reply.content_type),
                    ("content-length", str(len(body))),
                ],
                end_stream=not body,
            )
            self._flush()
            await self._send_body(stream_id, body)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, ConnectionError):
            # The client reset the stream or went away: nobody is left to answer.
            return

    async def _send_body(self, stream_id: int, body: bytes) -> None:
        assert self.conn is not None
        view = memoryview(body)
        while view:
            window = self.conn.local_flow_control_window(stream_id)
            if window <= 0:
                await self._credit(stream_id)
                continue
            size = min(window, len(view), self.conn.max_outbound_frame_size)
            self.conn.send_data(stream_id, bytes(view[:size]), end_stream=size == len(view))
            view = view[size:]
            self._flush()

    async def _credit(self, stream_id: int) -> None:
        waiter = self.window_waiters.get(stream_id)
        if waiter is None or waiter.done():
            waiter = self.window_waiters[stream_id] = asyncio.get_running_loop().create_future()
        await waiter

    def _wake(self, stream_id: int) -> None:
        # Connection-level credit (stream 0) or new settings may unblock every stream.
        ids = list(self.window_waiters) if stream_id == 0 else [stream_id]
        for sid in ids:
            waiter = self.window_waiters.pop(sid, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _flush(self) -> None:
        if self.conn is None or self.transport is None or self.transport.is_closing():
            return
        data = self.conn.data_to_send()
        if data:
            self.transport.write(data)
