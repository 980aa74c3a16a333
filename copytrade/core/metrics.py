"""Prometheus metrics every service shares, and the `/metrics` endpoint each process serves.

Each service process serves the text exposition at `http://<grpc_bind_host>:<name>_metrics_port/metrics`
(settings.metrics_port; 0 turns it off). The shared metrics are declared here; a service's own are
declared in its `metrics` module (services/replicator/pipeline/metrics.py,
services/broker_gateway/brokers/metrics.py, services/auth/metrics.py), so that a process exposes
only the families it can fill.

- gRPC, server side (`MetricsInterceptor`, first on every GrpcService): RPCs handled and their
  latency by service, method and final status code; a streaming RPC is counted when it ends.
- JetStream (`ConsumerLag`): the pending and ack-pending messages of a durable consumer, read every
  few seconds. Replicas share a durable, so they report the same values: aggregate with max().

Labels never carry user or order ids: a series per user would grow without bound.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from nats.js import JetStreamContext
from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics, start_http_server

from copytrade.core import background
from copytrade.core.logging import get_logger
from copytrade.core.settings import Settings

log = get_logger(__name__)
# No `_created` series beside every counter and histogram: they double the scrape for no use here.
disable_created_metrics()

# Seconds; from a health check's sub-millisecond answer to a 5,000-copy ExecuteFanout stream.
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
RPC_LABELS = ("grpc_service", "grpc_method", "grpc_code")

RPCS_HANDLED = Counter(
    "copytrade_grpc_server_handled",
    "gRPC calls this process finished, by service, method and final status code.",
    RPC_LABELS,
)
RPC_SECONDS = Histogram(
    "copytrade_grpc_server_handling_seconds",
    "Time from a gRPC call's start here to its final status (a stream's whole life).",
    RPC_LABELS,
    buckets=RPC_BUCKETS,
)
CONSUMER_PENDING = Gauge(
    "copytrade_jetstream_consumer_pending_messages",
    "Messages in the stream the durable consumer has not been given yet (its backlog).",
    ("stream", "consumer"),
)
CONSUMER_ACK_PENDING = Gauge(
    "copytrade_jetstream_consumer_ack_pending_messages",
    "Messages given to the durable consumer's subscribers and not yet acknowledged.",
    ("stream", "consumer"),
)
CONSUMER_REDELIVERED = Gauge(
    "copytrade_jetstream_consumer_redelivered_messages",
    "Unacknowledged messages the durable consumer has delivered more than once.",
    ("stream", "consumer"),
)


class MetricsEndpoint:
    """`GET /metrics` on its own port, served by prometheus_client's WSGI server in a thread.

    A thread rather than the event loop: a scrape then never waits behind a busy fan-out, and a
    stalled loop still shows up in the process metrics the scrape returns.
    """

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.port: int = server.server_address[1]

    @classmethod
    def start(cls, settings: Settings, service: str) -> MetricsEndpoint | None:
        """Serve the process's metrics on the service's metrics port; None when the port is 0.

        Raises OSError naming the address when the port is taken.
        """
        port = settings.metrics_port(service)
        if port == 0:
            return None
        host = settings.grpc_bind_host
        try:
            server, thread = start_http_server(port, addr=host)
        except OSError as exc:
            raise OSError(f"{service}: cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
        endpoint = cls(server, thread)
        log.info("metrics_serving", address=f"{host}:{endpoint.port}", path="/metrics")
        return endpoint

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _split(method: str) -> tuple[str, str]:
    # "/copytrade.orders.v1.OrderService/PlaceOrder" -> ("copytrade.orders.v1.OrderService", "PlaceOrder")
    service, _, name = method.lstrip("/").partition("/")
    return service, name


def _final_code(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    """The status the call ended with: what the handler set or aborted with, else what the error
    means (a cancelled task is CANCELLED; any other escaped error is answered UNKNOWN by grpc)."""
    code = context.code()
    if code is not None:
        if isinstance(code, grpc.StatusCode):
            return code.name
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), "UNKNOWN")
    if error is None:
        return "OK"
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    return "UNKNOWN"


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every RPC by its final status; first in the server's list, so it sees the
    status the other interceptors' error mapping produced."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        service, method = _split(details.method)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _timed_unary(service, method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _timed_stream(service, method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # client streaming: the platform declares none


def _observe(service: str, method: str, code: str, started: float) -> None:
    RPCS_HANDLED.labels(service, method, code).inc()
    RPC_SECONDS.labels(service, method, code).observe(time.perf_counter() - started)


def _timed_unary(service: str, method: str, behaviour: Callable[..., Any]):
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            result = behaviour(request, context)
            return await result if asyncio.iscoroutine(result) else result
        except BaseException as exc:
            error = exc
            raise
        finally:
            _observe(service, method, _final_code(context, error), started)

    return handle


def _timed_stream(service: str, method: str, behaviour: Callable[..., Any]):
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            async for message in behaviour(request, context):
                yield message
        except BaseException as exc:
            error = exc
            raise
        finally:
            _observe(service, method, _final_code(context, error), started)

    return handle


class ConsumerLag:
    """Keeps the JetStream gauges of some durable consumers current, every `interval` seconds."""

    def __init__(
        self, js: JetStreamContext, consumers: Iterable[tuple[str, str]], *, interval: float = 5.0
    ) -> None:
        self._js = js
        self._consumers = list(consumers)  # (stream, durable)
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="jetstream-consumer-lag")

    async def stop(self) -> None:
        await background.stop(self._task)
        self._task = None

    async def refresh(self) -> None:
        """Read every consumer's state once; one that cannot be read keeps its last values."""
        for stream, durable in self._consumers:
            try:
                info = await self._js.consumer_info(stream, durable, timeout=self._interval)
            except Exception as exc:  # noqa: BLE001 - NATS away or the consumer not made yet: try next time
                log.debug("consumer_info_failed", stream=stream, consumer=durable, error=type(exc).__name__)
                continue
            CONSUMER_PENDING.labels(stream, durable).set(info.num_pending or 0)
            CONSUMER_ACK_PENDING.labels(stream, durable).set(info.num_ack_pending or 0)
            CONSUMER_REDELIVERED.labels(stream, durable).set(info.num_redelivered or 0)

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self._interval)
