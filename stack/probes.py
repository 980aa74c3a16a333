"""Readiness checks: each answers "does this server serve yet?" with the server's own protocol."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


async def postgres_accepts(host: str, port: int, user: str = "postgres", database: str = "postgres") -> bool:
    # A real login, not a TCP connect: PostgreSQL listens before it has finished crash recovery.
    connection = await asyncpg.connect(host=host, port=port, user=user, database=database, timeout=2)
    await connection.close()
    return True


async def redis_pong(host: str, port: int) -> bool:
    # Redis answers -LOADING while it replays its AOF; only +PONG means it serves.
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        return (await reader.readline()).startswith(b"+PONG")
    finally:
        writer.close()
        await writer.wait_closed()


async def http_ok(host: str, port: int, path: str) -> bool:
    """GET path over HTTP/1.0; True on a 2xx status."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
        await writer.drain()
        status_line = (await reader.readline()).split()
        return len(status_line) >= 2 and status_line[1].startswith(b"2")
    finally:
        writer.close()
        await writer.wait_closed()


async def grpc_serving(target: str, service: str = "", timeout: float = 2.0) -> bool:
    """grpc.health.v1 Check: True when `service` ("" is the whole server) is SERVING."""
    async with grpc.aio.insecure_channel(target) as channel:
        # types-grpcio-health-checking declares HealthStub without its methods; the generated class has Check.
        response = await health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
    return response.status == health_pb2.HealthCheckResponse.SERVING


async def tcp_reachable(url: str, default_port: int) -> bool:
    """For servers given by URL: something listens at the URL's host and port (the first of a list)."""
    first = urlsplit(url.split(",")[0].strip())
    _, writer = await asyncio.open_connection(first.hostname or "127.0.0.1", first.port or default_port)
    writer.close()
    await writer.wait_closed()
    return True
