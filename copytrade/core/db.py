"""PostgreSQL through SQLAlchemy's asyncio engine on asyncpg. Each service owns one schema."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from copytrade.core.settings import Settings


def create_engine(settings: Settings, *, application_name: str) -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        # A restarted PostgreSQL leaves dead pooled connections; test them before use.
        pool_pre_ping=True,
        connect_args={"server_settings": {"application_name": application_name}},
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


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
