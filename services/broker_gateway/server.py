"""The broker gateway's process: IIFL sessions per linked account, pooled connections, the
streaming fan-out (BrokerGatewayService, internal) and account linking (BrokerAccountService)."""

from __future__ import annotations

import asyncio

from copytrade.broker.v1 import broker_pb2, broker_pb2_grpc
from copytrade.core import db
from copytrade.core.logging import get_logger
from copytrade.core.redis import create_redis, revocation_check
from copytrade.core.server import GrpcService
from copytrade.core.settings import Settings
from services.broker_gateway.account_changes import AccountChanges
from services.broker_gateway.account_servicer import BrokerAccountServicer
from services.broker_gateway.accounts import AccountRepository
from services.broker_gateway.brokers import HttpClients
from services.broker_gateway.credentials_vault import CredentialsVault
from services.broker_gateway.instruments import InstrumentMaster
from services.broker_gateway.servicer import BrokerGatewayServicer
from services.broker_gateway.sessions import SessionManager

_SERVICES = broker_pb2.DESCRIPTOR.services_by_name
log = get_logger(__name__)


class BrokerGatewayProcess:
    """Everything the process holds, so tests can run it in-process and close it cleanly."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = db.create_engine(settings, application_name="copytrade-broker-gateway")
        self.redis = create_redis(settings)
        self.http = HttpClients(settings)
        instruments = InstrumentMaster.load()
        accounts = AccountRepository(db.session_factory(self.engine))
        vault = CredentialsVault(settings.credentials_key)
        self.sessions = SessionManager(settings, accounts, vault, self.http, instruments)
        self.account_changes = AccountChanges()
        self.grpc = GrpcService(settings, "broker_gateway", is_revoked=revocation_check(self.redis))
        self.grpc.add(
            broker_pb2_grpc.add_BrokerGatewayServiceServicer_to_server,
            BrokerGatewayServicer(settings, self.sessions, instruments, accounts),
            _SERVICES["BrokerGatewayService"],
        )
        self.grpc.add(
            broker_pb2_grpc.add_BrokerAccountServiceServicer_to_server,
            BrokerAccountServicer(settings, accounts, vault, self.sessions, self.account_changes),
            _SERVICES["BrokerAccountService"],
        )

    async def warm(self) -> None:
        """Open connections to the brokers before the first fan-out needs them."""
        try:
            opened = await self.http.warm(self.settings.broker_warm_connections)
            log.info("broker_pools_warm", connections=opened)
        except Exception as exc:  # noqa: BLE001 - a broker down at start-up is not fatal; orders will say so
            log.warning("broker_pools_not_warmed", error=type(exc).__name__)

    async def close(self) -> None:
        await self.account_changes.close()
        await self.http.close()
        await self.redis.aclose()
        await self.engine.dispose()


async def serve(settings: Settings) -> None:
    process = BrokerGatewayProcess(settings)
    warming = asyncio.create_task(process.warm())
    try:
        await process.account_changes.connect(settings)
        await process.grpc.serve_until_signalled()
    finally:
        warming.cancel()
        await process.close()
