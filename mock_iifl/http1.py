"""The HTTP/1.1 listener: aiohttp's low-level server, keep-alive, no routing of its own.

aiohttp's plain `web.Server` (no Application, router or middleware) is the cheapest request path it
has; on this project's 2-core machine it answered 5,000 concurrent requests where a hypercorn-based
mock saturated near 1,000 requests per second.
"""

from __future__ import annotations

from aiohttp import web

from mock_iifl.app import MockApp
from mock_iifl.wire import DROP, Request

# How long stop() waits for requests in flight (a "timeout" fault may hold one for minutes).
SHUTDOWN_SECONDS = 1.0


class Http1Listener:
    def __init__(self, app: MockApp, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.ServerRunner | None = None

    async def start(self) -> int:
        """Listen; returns the port (the one the OS chose if port was 0)."""
        # No handler cancellation: a request whose client gave up still completes, as on a real
        # server, so an order placed by a timed-out request exists.
        server = web.Server(self._handle, handler_cancellation=False, access_log=None)
        self._runner = web.ServerRunner(server, shutdown_timeout=SHUTDOWN_SECONDS)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=4096, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, raw: web.BaseRequest) -> web.StreamResponse:
        request = Request(
            method=raw.method,
            path=raw.path,
            # Case-insensitive already, so lower-case lookups work as the Request promises.
            headers=raw.headers,
            query=raw.query,
            body=await raw.read() if raw.body_exists else b"",
            peer=raw.remote or "",
        )
        reply = await self.app.handle(request)
        if reply is DROP:
            # Closed unanswered; aiohttp then fails to write the placeholder below and moves on.
            if raw.transport is not None:
                raw.transport.close()
            return web.Response(status=500)
        return web.Response(status=reply.status, body=reply.body, content_type=reply.content_type)
