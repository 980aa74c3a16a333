"""Redis: token revocation, login throttling and caches. One client (with its pool) per process."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from copytrade.core import errors
from copytrade.core.interceptor import RevocationCheck
from copytrade.core.settings import Settings
from copytrade.core.tokens import Principal, revoked_key

# Connections per process. Every authenticated RPC makes one short call (the revocation check), so a
# small pool serves thousands of concurrent RPCs, provided callers queue for a connection.
POOL_SIZE = 64
POOL_WAIT_SECONDS = 5


def create_redis(settings: Settings) -> aioredis.Redis:
    # A blocking pool: redis-py's default pool raises MaxConnectionsError past 100 connections, which
    # turned a burst of RPCs into UNAVAILABLE answers; this one makes the burst wait its turn.
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT_SECONDS,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=2,
        health_check_interval=30,
    )
    return aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes its connections


def disabled_user_key(user_id: int) -> str:
    """Set while a user is disabled or deleted: their unexpired tokens stop working at once."""
    return f"auth:disabled-user:{user_id}"


def revocation_check(client: aioredis.Redis) -> RevocationCheck:
    async def is_revoked(principal: Principal) -> bool:
        try:
            return await client.exists(revoked_key(principal.jti), disabled_user_key(principal.user_id)) > 0
        except RedisError as exc:
            # Fail closed: without the revocation list a logged-out token must not pass.
            raise errors.Unavailable(f"token revocation list unavailable: {exc.__class__.__name__}") from None

    return is_revoked
