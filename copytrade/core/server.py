"""The gRPC server every service runs: grpc.aio with health checking, reflection, the service
interceptor, keepalive that tolerates Envoy's pings, and a graceful shutdown Envoy can follow.
A process run with serve_until_signalled also serves its Prometheus metrics (copytrade/core/metrics.py)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterable
from typing import Any

import grpc
import structlog
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from copytrade.core import heap
from copytrade.core.interceptor import RevocationCheck, ServiceInterceptor
from copytrade.core.metrics import MetricsEndpoint, MetricsInterceptor
from copytrade.core.settings import Settings
from copytrade.core.tracing import server_interceptors

log = structlog.get_logger("copytrade.server")

# Envoy pings idle upstream connections every 30 s; grpc's default policy (one ping per 5 min
# without data, two strikes) would answer with GOAWAY "too_many_pings" and churn connections.
SERVER_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    # Envoy passes the request's URL on as metadata and refuses headers past 32 KiB itself (431);
    # gRPC's own default (8 KiB soft, 16 KiB hard) refused long URLs at random, as 429s.
    ("grpc.max_metadata_size", 40 * 1024),
    ("grpc.absolute_max_metadata_size", 40 * 1024),
    # Recycle long-lived connections now and then so new replicas get a share of the load.
    ("grpc.max_connection_age_ms", 30 * 60_000),
    ("grpc.max_connection_age_grace_ms", 60_000),
)


class GrpcService:
    """One service process's gRPC server."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        *,
        public_methods: Iterable[str] = (),
        is_revoked: RevocationCheck | None = None,
        reflect_also: Iterable[str] = (),
    ) -> None:
        self.settings = settings
        self.name = name
        self._server = grpc.aio.server(
            interceptors=[
                # First, so that it counts the status the service interceptor's error mapping gave.
                MetricsInterceptor(),
                # Tracing (only when on): its span is current while the service interceptor logs.
                *server_interceptors(),
                ServiceInterceptor(settings, public_methods=frozenset(public_methods), is_revoked=is_revoked),
            ],
            options=SERVER_OPTIONS,
        )
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._served: list[str] = []
        self._unlisted: set[str] = set()
        self._reflect_also = list(reflect_also)
        self.port: int | None = None
        # Called when shutdown starts, before the drain: long-lived streams say goodbye while they can.
        self.on_stop: list[Callable[[], None]] = []

    def add(
        self,
        register: Callable[[Any, grpc.aio.Server], None],
        servicer: Any,
        descriptor: ServiceDescriptor,
        *,
        reflect: bool = True,
    ) -> None:
        """`reflect=False` keeps an internal service out of reflection on a process whose reflection
        Envoy exposes (auth's), so the gateway never lists it."""
        register(servicer, self._server)
        self._served.append(descriptor.full_name)
        if not reflect:
            self._unlisted.add(descriptor.full_name)

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        host = host or self.settings.grpc_bind_host
        port = self.settings.grpc_port(self.name) if port is None else port
        listed = [n for n in self._served if n not in self._unlisted]
        names = [*listed, *(n for n in self._reflect_also if n not in self._served)]
        reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server)
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"{self.name}: cannot listen on {host}:{port}")
        await self._server.start()
        for full_name in self._served:
            await self._health.set(full_name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", address=f"{host}:{self.port}", services=self._served)
        return self.port

    async def stop(self, drain_seconds: float | None = None, grace_seconds: float | None = None) -> None:
        """Health NOT_SERVING first so Envoy stops routing here, then let in-flight calls finish."""
        drain = self.settings.shutdown_drain_seconds if drain_seconds is None else drain_seconds
        grace = self.settings.shutdown_grace_seconds if grace_seconds is None else grace_seconds
        await self._health.enter_graceful_shutdown()
        for hook in self.on_stop:
            hook()
        if drain:
            await asyncio.sleep(drain)
        await self._server.stop(grace)
        log.info("stopped")

    async def serve_until_signalled(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # Here rather than in start(): tests run several services in one process, each calling start().
        metrics = MetricsEndpoint.start(self.settings, self.name)
        try:
            await self.start()
            heap.settle()
            await stop.wait()
            log.info("shutting down", drain_seconds=self.settings.shutdown_drain_seconds)
            await self.stop()
        finally:
            if metrics is not None:
                metrics.close()


Registration = tuple[Callable[[Any, grpc.aio.Server], None], Any, ServiceDescriptor]


async def serve_services(settings: Settings, name: str, registrations: Iterable[Registration]) -> None:
    """Run a process whose servicers need nothing but the shared core (token checks via Redis)."""
    from copytrade.core.redis import create_redis, revocation_check

    redis_client = create_redis(settings)
    service = GrpcService(settings, name, is_revoked=revocation_check(redis_client))
    for register, servicer, descriptor in registrations:
        service.add(register, servicer, descriptor)
    try:
        await service.serve_until_signalled()
    finally:
        await redis_client.aclose()
