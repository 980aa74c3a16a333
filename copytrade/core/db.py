"""PostgreSQL through SQLAlchemy's asyncio engine on asyncpg. Each service owns one schema."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import MetaData, event, exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from copytrade.core.settings import Settings

# A pooled connection idle for longer than this is tested before use.
PING_AFTER_IDLE_SECONDS = 1.0


def create_engine(
    settings: Settings,
    *,
    application_name: str,
    synchronous_commit: bool = True,
    by_key_only: bool = False,
) -> AsyncEngine:
    """The process's pool. `synchronous_commit=False` makes every commit on it return before its WAL
    reaches disk (PostgreSQL's setting, per connection): for writes that a crash of PostgreSQL may
    forget without harm, and a transaction that must be durable says SET LOCAL synchronous_commit
    TO ON.

    `by_key_only`: every statement on this pool finds its rows through an index, and the planner
    is told to keep to that (enable_seqscan off, a cost it avoids rather than a ban). For a pool
    whose statements write a table that grows faster than autovacuum analyzes it: the planner,
    from statistics taken while the table was small, chose to scan the whole table for each batch
    and keeps that plan cached on the connection.
    """
    server_settings = {"application_name": application_name}
    if not synchronous_commit:
        server_settings["synchronous_commit"] = "off"
    if by_key_only:
        server_settings["enable_seqscan"] = "off"
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        connect_args={"server_settings": server_settings},
    )
    _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """A restarted PostgreSQL leaves dead pooled connections, so they are tested before use; but
    only those idle for a while (SQLAlchemy's recipe for custom pessimistic checks). pool_pre_ping
    tests every checkout: one more round trip for every transaction, twice on a replication's path
    to the first copy, and 7% of the replicator's CPU in a fan-out. A connection checked in
    moments ago was working moments ago; if PostgreSQL dies in between, the statement fails, the
    pool drops every connection older than the failure, and the caller's retry gets a fresh one.
    """
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    @event.listens_for(pool, "checkin")
    def _checked_in(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection) -> None:
        idle_since = record.info.get("checked_in_at")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as error:  # any failure of the ping means "reconnect"
            raise exc.DisconnectionError() from error
        if alive is False:
            raise exc.DisconnectionError()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def autocommit_sessions(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    """Sessions on the same pool whose statements each commit on their own: no BEGIN and COMMIT
    round trips around a single statement that needs no more (the pool resets the isolation level
    when a connection comes back)."""
    engine: AsyncEngine = sessions.kw["bind"]
    return async_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.exec_driver_sql("SELECT 1")


def schema_metadata(schema: str) -> MetaData:
    """A service's tables, all in its own schema, with constraint names Alembic can reproduce."""
    return MetaData(
        schema=schema,
        naming_convention={
            "pk": "pk_%(table_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        },
    )
