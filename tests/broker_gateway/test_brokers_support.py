"""Shared pieces of the broker-package tests (no tests here), loaded by them as a pytest plugin:
the mock IIFL server from the mock's own fixtures (one process for all of them), linked accounts
registered in it, and AccountClients pointed at it.

Every test starts from the mock fixture's reset (no latency, rate limits off, seed 7); a test that
wants latency, rate limits or faults configures them itself.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest

from copytrade.core.settings import Settings
from services.broker_gateway.brokers import (
    AccountClient,
    BrokerAdapter,
    BrokerSession,
    CircuitBreaker,
    Credentials,
    Dialect,
    OrderSpec,
    SessionLimits,
    make_adapter,
    make_transport,
)
from services.broker_gateway.brokers.http import Transport
from services.broker_gateway.instruments import InstrumentMaster, OrderRequest
from tests.mock_iifl.conftest import MockClient, MockServer, mock, mock_server  # noqa: F401 - served as a plugin

MASTER = InstrumentMaster.load()
DIALECTS = (Dialect.IIFL_CAPITAL_V1, Dialect.XTS)
MOCK_NAMES = {Dialect.IIFL_CAPITAL_V1: "iifl_v1", Dialect.XTS: "xts"}
BASE_PATHS = {Dialect.IIFL_CAPITAL_V1: "/v1", Dialect.XTS: "/interactive"}
ALGO_ID = "COPYTRADE01"
_names = itertools.count(1)


def settings_for(server: MockServer, **overrides) -> Settings:
    return Settings(mock_iifl_port=server.port, mock_iifl_h2_port=server.h2_port, **overrides)


def spec(dialect: Dialect, tag: str, **fields) -> OrderSpec:
    """A valid order (default: buy 5 RELIANCE at a LIMIT below the market, so it rests OPEN)."""
    values = {"exchange": 1, "symbol": "RELIANCE", "side": 1, "order_type": 2, "product": 2, "quantity": 5,
              "price": "1300.00", **fields}  # fmt: skip
    checked = MASTER.validate(OrderRequest(tag=tag, **values), dialect, algo_id=ALGO_ID)
    assert isinstance(checked, OrderSpec), checked
    return checked


@dataclass(frozen=True)
class Account:
    dialect: Dialect
    client_id: str
    credentials: Credentials

    @property
    def mock_name(self) -> str:
        return MOCK_NAMES[self.dialect]


class Brokers:
    """Linked accounts in the mock and clients for them, over one transport per dialect."""

    def __init__(self, mock_client: MockClient, http: str = "aiohttp") -> None:
        self.mock = mock_client
        self.transports: dict[Dialect, Transport] = {
            dialect: make_transport(http, mock_client.server.url + BASE_PATHS[dialect], timeout=5.0)
            for dialect in DIALECTS
        }
        self.adapters: dict[Dialect, BrokerAdapter] = {
            dialect: make_adapter(dialect, self.transports[dialect], MASTER) for dialect in DIALECTS
        }

    async def account(self, dialect: Dialect, *, config: dict | None = None) -> Account:
        """A new broker account registered in the mock (its own faults/latency/limits in `config`)."""
        client_id = f"T{next(_names)}X{id(self) % 10_000}"
        secret = f"secret{client_id}"
        body = {"dialect": MOCK_NAMES[dialect], "client_id": client_id, "app_key": f"key{client_id}",
                "app_secret": secret, "config": config or {}}  # fmt: skip
        registered = await self.mock.control("POST", "accounts", body)
        return Account(dialect, client_id, Credentials(client_id, registered["app_key"], secret))

    async def credentials(self, account: Account) -> Credentials:
        """What opens a session now: v1 needs a fresh one-time auth code (the daily browser login)."""
        if account.dialect is Dialect.XTS:
            return account.credentials
        issued = await self.mock.control("POST", f"accounts/iifl_v1/{account.client_id}/authcode")
        return replace(account.credentials, auth_code=issued["auth_code"])

    async def login(self, account: Account) -> BrokerSession:
        return await self.adapters[account.dialect].open_session(await self.credentials(account))

    def client(
        self,
        account: Account,
        session: BrokerSession | None,
        *,
        request_timeout: float = 2.0,
        order_deadline: float = 10.0,
        breaker: CircuitBreaker | None = None,
        on_session_expired=None,
        orders_per_second: float = 10.0,
        reads_per_second: float = 3.0,
    ) -> AccountClient:
        return AccountClient(
            self.adapters[account.dialect],
            session,
            limits=SessionLimits.create(
                orders_per_second=orders_per_second, reads_per_second=reads_per_second
            ),
            breaker=breaker,
            request_timeout=request_timeout,
            order_deadline=order_deadline,
            on_session_expired=on_session_expired,
        )

    async def ready(
        self, dialect: Dialect, *, config: dict | None = None, **client_options
    ) -> tuple[Account, AccountClient]:
        account = await self.account(dialect, config=config)
        return account, self.client(account, await self.login(account), **client_options)

    async def summary(self, account: Account) -> dict:
        """The mock's own count of what this account received and holds."""
        return await self.mock.account(account.mock_name, account.client_id)

    async def close(self) -> None:
        for transport in self.transports.values():
            await transport.close()


@pytest.fixture
async def brokers(mock: MockClient) -> AsyncIterator[Brokers]:  # noqa: F811 - the mock fixture, imported above
    helper = Brokers(mock)
    try:
        yield helper
    finally:
        await helper.close()
