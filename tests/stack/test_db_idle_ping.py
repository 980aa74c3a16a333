"""Pooled PostgreSQL connections: one that died while idle is replaced before use, without a ping on
every checkout (copytrade/core/db.py)."""

from sqlalchemy import text

from copytrade.core import db


async def _backend_pid(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()


async def _terminate(engine, pid: int) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


async def test_a_connection_killed_while_idle_is_replaced_before_use(base_settings, monkeypatch):
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
    engine = db.create_engine(base_settings.model_copy(update={"database_pool_size": 1}), application_name="t")
    killer = db.create_engine(base_settings, application_name="t-killer")
    try:
        pid = await _backend_pid(engine)
        await _terminate(killer, pid)  # what a PostgreSQL restart does to every pooled connection
        assert await _backend_pid(engine) != pid  # no error: the dead one was found and replaced
    finally:
        await engine.dispose()
        await killer.dispose()


async def test_a_connection_used_moments_ago_is_not_pinged(base_settings):
    engine = db.create_engine(base_settings.model_copy(update={"database_pool_size": 1}), application_name="t")
    pings = 0
    original = engine.sync_engine.dialect.do_ping

    def counting_ping(dbapi_connection):
        nonlocal pings
        pings += 1
        return original(dbapi_connection)

    engine.sync_engine.dialect.do_ping = counting_ping
    try:
        for _ in range(5):
            await _backend_pid(engine)
        assert pings == 0
    finally:
        await engine.dispose()
