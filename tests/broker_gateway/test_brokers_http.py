"""The HTTP layer under both implementations: what each failure means for a write, against the mock's
HTTP/1.1 and h2c listeners."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest

from services.broker_gateway.brokers import (
    BrokerSession,
    Dialect,
    OutcomeUnknown,
    Unavailable,
    make_adapter,
    make_transport,
)
from services.broker_gateway.brokers.http import HttpClients, NoReply, NotSent
from tests.broker_gateway.test_brokers_support import BASE_PATHS, MASTER, settings_for, spec

pytest_plugins = ("tests.broker_gateway.test_brokers_support",)

# (client, HTTP/2 over h2c)
TRANSPORTS = [("httptools", False), ("aiohttp", False), ("httpx", False), ("httpx", True)]


def transport_for(mock, kind: str, h2c: bool, dialect: Dialect, timeout: float = 2.0):
    base = (mock.server.h2_url if h2c else mock.server.url) + BASE_PATHS[dialect]
    return make_transport(kind, base, timeout=timeout, h2c=h2c)


@pytest.mark.parametrize(("kind", "h2c"), TRANSPORTS)
async def test_each_client_places_and_classifies_a_lost_write(brokers, mock, kind, h2c) -> None:
    account = await brokers.account(Dialect.IIFL_CAPITAL_V1)
    session = await brokers.login(account)
    transport = transport_for(mock, kind, h2c, Dialect.IIFL_CAPITAL_V1, timeout=0.3)
    adapter = make_adapter(Dialect.IIFL_CAPITAL_V1, transport, MASTER)
    try:
        assert await transport.warm(4) >= 1
        ack = await adapter.place(session, spec(Dialect.IIFL_CAPITAL_V1, "H1"))
        assert ack.broker_order_id
        await mock.configure(
            dedupe=False, faults={"drop": 1.0, "applies_to": ["place"], "placed_before_fault": 1.0}
        )
        with pytest.raises(OutcomeUnknown) as dropped:
            await adapter.place(session, spec(Dialect.IIFL_CAPITAL_V1, "H2"))
        assert dropped.value.code == "CONNECTION_DROPPED"
        await mock.configure(
            dedupe=False, faults={"timeout": 1.0, "timeout_hold_seconds": 1.0, "applies_to": ["place"]}
        )
        with pytest.raises(OutcomeUnknown) as timed_out:
            await adapter.place(session, spec(Dialect.IIFL_CAPITAL_V1, "H3"))
        assert timed_out.value.code == "BROKER_TIMEOUT"
        await mock.configure(faults={"http_5xx": 1.0, "applies_to": ["place", "orders"]})
        with pytest.raises(OutcomeUnknown) as five:
            await adapter.place(session, spec(Dialect.IIFL_CAPITAL_V1, "H4"))
        assert five.value.code.startswith("HTTP_5")
        with pytest.raises(Unavailable):  # the same on a read is only a failed read
            await adapter.order_book(session)
    finally:
        await transport.close()


@pytest.mark.parametrize(("kind", "h2c"), TRANSPORTS)
async def test_a_refused_connection_is_not_sent(kind, h2c) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the socket closes
    transport = make_transport(kind, f"http://127.0.0.1:{port}/v1", timeout=1.0, h2c=h2c)
    try:
        with pytest.raises(NotSent):
            await transport.request("POST", "/orders", headers={}, body=b"[]")
        adapter = make_adapter(Dialect.XTS, transport, MASTER)
        with pytest.raises(Unavailable) as refused:
            await adapter.order_book(_fake_session())
        assert refused.value.code == "BROKER_UNREACHABLE"
    finally:
        await transport.close()


def _fake_session() -> BrokerSession:
    now = datetime.now(UTC)
    return BrokerSession(token="t", dialect=Dialect.XTS, opened_at=now, expires_at=now)


@pytest.mark.parametrize("kind", ["httptools", "aiohttp"])
async def test_a_write_is_never_sent_again_on_a_dropped_connection(brokers, mock, kind) -> None:
    # aiohttp by default sends PUT/DELETE again when a reused connection drops; no transport may.
    account = await brokers.account(Dialect.XTS)
    session = await brokers.login(account)
    transport = transport_for(mock, kind, False, Dialect.XTS)
    await transport.request("GET", "/orders", headers={"Authorization": session.token})  # a pooled connection
    await mock.configure(faults={"drop": 1.0, "applies_to": ["cancel"], "placed_before_fault": 0.0})
    try:
        with pytest.raises(NoReply):
            await transport.request(
                "DELETE", "/orders?appOrderID=1", headers={"Authorization": session.token}
            )
    finally:
        await transport.close()
    assert (await mock.inspect())["stats"]["requests"]["xts.cancel"] == 1


async def test_one_pool_per_broker_url_from_settings(mock) -> None:
    clients = HttpClients(settings_for(mock.server))
    try:
        v1 = clients.for_dialect("IIFL_CAPITAL_V1")
        assert v1 is clients.for_dialect("IIFL_CAPITAL_V1") and v1 is not clients.for_dialect("XTS")
        assert v1.base_url == f"{mock.server.url}/v1"
        assert await clients.warm(8) == 16
    finally:
        await clients.close()
