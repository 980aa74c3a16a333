"""The body of every service's Alembic env.py: online migrations of one schema over asyncpg.

Each service keeps its tables and its own `alembic_version` table in a schema named after it, so
services migrate independently and never touch each other's tables.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

# Serialises concurrent migration runs (several replicas starting at once) on one database.
_MIGRATION_LOCK_ID = 0x0C0D7ADE


def run(metadata: MetaData, schema: str) -> None:
    if context.is_offline_mode():
        context.configure(
            url=context.config.get_main_option("sqlalchemy.url"),
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=True,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(metadata, schema))


async def _run_online(metadata: MetaData, schema: str) -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        # copytrade.core.migrate sets it from DATABASE_URL; a bare `alembic` run would not.
        raise RuntimeError("alembic: sqlalchemy.url is not set; run migrations through copytrade.core.migrate")
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_migrate, metadata, schema)
    finally:
        await engine.dispose()


def _migrate(conn: Connection, metadata: MetaData, schema: str) -> None:
    with conn.begin():
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=conn,
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=True,
            transactional_ddl=True,
        )
        context.run_migrations()
