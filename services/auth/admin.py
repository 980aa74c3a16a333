"""Operator actions on users: disable, enable, delete. `python -m services.auth.admin disable NAME`.

`python -m services.auth.admin service-token` prints a SERVICE token (valid ACCESS_TOKEN_TTL_SECONDS,
signed with JWT_SECRET), which the internal services take: for grpcurl calls to the broker gateway's
BrokerGatewayService or the user directory while diagnosing.

A disabled or deleted user must lose access at once, not when their last access token expires:
besides the row (which login and refresh check), each action sets or clears the Redis mark that
every service's token check reads (`copytrade.core.redis.disabled_user_key`). Their refresh tokens
die with them: Refresh checks the row.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from copytrade.core import db
from copytrade.core.redis import create_redis, disabled_user_key
from copytrade.core.settings import Settings
from copytrade.core.tokens import issue_service_token
from services.auth.models import User
from services.auth.users import UserRepository


async def _find(
    settings: Settings, login_name: str
) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession], User]:
    engine = db.create_engine(settings, application_name="copytrade-auth-admin")
    sessions = db.session_factory(engine)
    user = await UserRepository(sessions).by_login_name(login_name)
    if user is None:
        await engine.dispose()
        raise LookupError(f"no user {login_name!r}")
    return engine, sessions, user


async def set_active(settings: Settings, login_name: str, active: bool) -> int:
    """Disables (or enables again) a user by username or email; returns their id."""
    engine, sessions, user = await _find(settings, login_name)
    redis = create_redis(settings)
    try:
        # The mark first when disabling, last when enabling: never a moment with the row and the
        # mark both saying "active" for a user who is being disabled.
        if not active:
            await redis.set(disabled_user_key(user.id), "1")
        async with sessions() as session:
            await session.execute(update(User).where(User.id == user.id).values(is_active=active))
            await session.commit()
        if active:
            await redis.delete(disabled_user_key(user.id))
        return user.id
    finally:
        await redis.aclose()
        await engine.dispose()


async def delete_user(settings: Settings, login_name: str) -> int:
    """Deletes a user by username or email; their tokens stop working everywhere at once."""
    engine, sessions, user = await _find(settings, login_name)
    redis = create_redis(settings)
    try:
        # Ids are never reused (an identity column), so the mark can stay for good.
        await redis.set(disabled_user_key(user.id), "1")
        async with sessions() as session:
            await session.execute(delete(User).where(User.id == user.id))
            await session.commit()
        return user.id
    finally:
        await redis.aclose()
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.auth.admin", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("disable", "enable", "delete", "service-token"))
    parser.add_argument("user", nargs="?", help="username or email (not for service-token)")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.action == "service-token":
        if args.user:
            parser.error("service-token takes no user")
        print(issue_service_token(settings))
        return 0
    if not args.user:
        parser.error(f"{args.action} needs a user (username or email)")
    try:
        if args.action == "delete":
            user_id = asyncio.run(delete_user(settings, args.user))
        else:
            user_id = asyncio.run(set_active(settings, args.user, args.action == "enable"))
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.action}d user {user_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
