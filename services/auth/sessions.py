"""What the auth service keeps in Redis: refresh tokens, revoked access tokens, login failures."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from copytrade.core.settings import Settings
from copytrade.core.tokens import Principal, new_refresh_token, revoked_key
from services.auth import metrics


def _refresh_key(token: str) -> str:
    # Only a digest is stored: a Redis dump must not hand out working refresh tokens.
    return "auth:refresh:" + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RefreshGrant:
    user_id: int


class TokenStore:
    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self._redis = client
        self._ttl = settings.refresh_token_ttl_seconds

    async def issue_refresh_token(self, user_id: int) -> str:
        token = new_refresh_token()
        await self._redis.set(_refresh_key(token), json.dumps({"user_id": user_id}), ex=self._ttl)
        return token

    async def consume_refresh_token(self, token: str) -> RefreshGrant | None:
        """Single use: the token is gone once read, so a replayed one fails."""
        raw = await self._redis.getdel(_refresh_key(token))
        return RefreshGrant(user_id=int(json.loads(raw)["user_id"])) if raw else None

    async def revoke_refresh_token(self, token: str, owner_id: int) -> None:
        key = _refresh_key(token)
        raw = await self._redis.get(key)
        # Nobody may revoke somebody else's refresh token by guessing or stealing one.
        if raw and int(json.loads(raw)["user_id"]) == owner_id:
            await self._redis.delete(key)

    async def revoke_access_token(self, principal: Principal) -> None:
        remaining = principal.expires_at - int(time.time())
        if remaining > 0:
            await self._redis.set(revoked_key(principal.jti), "1", ex=remaining + 1)


class LoginThrottle:
    """Counts failed logins per username and per client address in a fixed window."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self._redis = client
        self._window = settings.login_failure_window_seconds
        self._per_username = settings.login_failures_per_username
        self._per_address = settings.login_failures_per_address

    @staticmethod
    def _keys(username: str, address: str) -> tuple[str, str]:
        return f"auth:login-failures:user:{username.lower()}", f"auth:login-failures:addr:{address}"

    async def retry_after(self, username: str, address: str) -> int | None:
        """Seconds until another attempt is allowed, or None if it is allowed now."""
        user_key, addr_key = self._keys(username, address)
        async with self._redis.pipeline(transaction=False) as pipe:
            # One call per line: redis-py types a pipeline's commands as awaitables, not as the
            # pipeline they return, so chained calls do not type-check.
            pipe.get(user_key)
            pipe.get(addr_key)
            pipe.ttl(user_key)
            pipe.ttl(addr_key)
            user_failures, addr_failures, user_ttl, addr_ttl = await pipe.execute()
        waits = []
        if int(user_failures or 0) >= self._per_username:
            waits.append(max(int(user_ttl), 1))
            metrics.USERNAME_LIMIT.inc()
        if int(addr_failures or 0) >= self._per_address:
            waits.append(max(int(addr_ttl), 1))
            metrics.ADDRESS_LIMIT.inc()
        return max(waits) if waits else None

    async def record_failure(self, username: str, address: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in self._keys(username, address):
                # SET NX EX then INCR (INCR keeps the TTL): the window starts at the first failure.
                # Not EXPIRE NX, which the embedded Redis 6.2 lacks.
                pipe.set(key, 0, ex=self._window, nx=True)
                pipe.incr(key)
            await pipe.execute()

    async def record_success(self, username: str) -> None:
        await self._redis.delete(self._keys(username, "")[0])
