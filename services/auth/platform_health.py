"""PlatformService: the seed's `GET /health`, reporting the real state of every part, and the API docs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
import nats
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from copytrade.core import db
from copytrade.core.settings import VERSION, Settings
from copytrade.platform.v1 import platform_pb2, platform_pb2_grpc
from services.auth.docs import ApiDocs

CHECK_TIMEOUT_SECONDS = 1.5
# /health is public: answer repeated calls from a short cache instead of probing every part again.
CACHE_SECONDS = 1.0
PEER_SERVICES = {
    "orders": "copytrade.orders.v1.OrderService",
    "replicator": "copytrade.replicator.v1.ReplicatorService",
    "broker_gateway": "copytrade.broker.v1.BrokerGatewayService",
}


class PlatformServicer(platform_pb2_grpc.PlatformServiceServicer):
    def __init__(
        self, settings: Settings, engine: AsyncEngine, redis_client: aioredis.Redis, docs: ApiDocs | None = None
    ) -> None:
        self._settings = settings
        self._docs = docs or ApiDocs()
        # A check passes when it returns, whatever it returns (Redis's ping answers True); it fails by raising.
        self._checks: dict[str, Callable[[], Awaitable[object]]] = {
            "postgres": lambda: db.ping(engine),
            "redis": redis_client.ping,
            "nats": self._check_nats,
            "auth": _noop,  # answering this call is the proof
        }
        self._channels = {name: grpc.aio.insecure_channel(settings.grpc_target(name)) for name in PEER_SERVICES}
        for name, channel in self._channels.items():
            self._checks[name] = _grpc_health_check(channel, PEER_SERVICES[name])
        self._cached: tuple[float, platform_pb2.GetHealthResponse] | None = None
        self._lock = asyncio.Lock()

    async def GetHealth(self, request: platform_pb2.GetHealthRequest, context: grpc.aio.ServicerContext):
        async with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < CACHE_SECONDS:
                return self._cached[1]
            results = await asyncio.gather(*(_timed(name, check) for name, check in self._checks.items()))
            healthy = all(r.status == "ok" for r in results)
            response = platform_pb2.GetHealthResponse(
                status="healthy" if healthy else "degraded",
                version=VERSION,
                environment=self._settings.environment.value,
                dependencies=results,
            )
            self._cached = (time.monotonic(), response)
            return response

    async def GetApiDocs(self, request: platform_pb2.GetApiDocsRequest, context: grpc.aio.ServicerContext):
        return self._docs.answer(request)

    async def _check_nats(self) -> None:
        conn = await nats.connect(
            self._settings.nats_url, connect_timeout=CHECK_TIMEOUT_SECONDS, allow_reconnect=False, max_reconnect_attempts=0
        )
        try:
            await conn.jetstream().account_info()
        finally:
            await conn.close()

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self._channels.values()))


async def _noop() -> None:
    return None


def _grpc_health_check(channel: grpc.aio.Channel, service: str) -> Callable[[], Awaitable[None]]:
    stub = health_pb2_grpc.HealthStub(channel)

    async def check() -> None:
        # types-grpcio-health-checking declares HealthStub without its methods; the generated class has Check.
        reply = await stub.Check(  # type: ignore[attr-defined]
            health_pb2.HealthCheckRequest(service=service), timeout=CHECK_TIMEOUT_SECONDS
        )
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    return check


async def _timed(name: str, check: Callable[[], Awaitable[object]]) -> platform_pb2.DependencyHealth:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - any failure means "down", reported with its reason
        reason = str(exc) or exc.__class__.__name__
        if isinstance(exc, grpc.aio.AioRpcError):
            reason = f"{exc.code().name}: {exc.details()}"
        return platform_pb2.DependencyHealth(name=name, status="down", error=reason[:200])
    elapsed = (time.perf_counter() - started) * 1000
    return platform_pb2.DependencyHealth(name=name, status="ok", latency_ms=f"{elapsed:.1f}")
