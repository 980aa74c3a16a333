"""Redis: token revocation, login throttling and caches. One client (with its pool) per process."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from copytrade.core import errors
from copytrade.core.interceptor import RevocationCheck
from copytrade.core.settings import Settings
from copytrade.core.tokens import Principal, revoked_key


def create_redis(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=2,
        health_check_interval=30,
    )


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
