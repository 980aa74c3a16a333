"""The auth service's process: users, tokens, and the platform's health endpoint."""

from __future__ import annotations

from copytrade.auth.v1 import auth_pb2, auth_pb2_grpc
from copytrade.core import api_catalog, db
from copytrade.core.redis import create_redis, revocation_check
from copytrade.core.server import GrpcService
from copytrade.core.settings import Settings
from copytrade.platform.v1 import platform_pb2, platform_pb2_grpc
from services.auth.directory import UserDirectoryServicer
from services.auth.passwords import PasswordHasher
from services.auth.platform_health import PlatformServicer
from services.auth.servicer import AuthServicer
from services.auth.sessions import LoginThrottle, TokenStore
from services.auth.users import UserRepository

_AUTH = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]
_DIRECTORY = auth_pb2.DESCRIPTOR.services_by_name["UserDirectoryService"]
_PLATFORM = platform_pb2.DESCRIPTOR.services_by_name["PlatformService"]
PUBLIC_METHODS = frozenset(
    {
        *(f"/{_AUTH.full_name}/{m}" for m in ("Register", "Login", "LoginWithHttpBody", "Refresh")),
        f"/{_PLATFORM.full_name}/GetHealth",
        f"/{_PLATFORM.full_name}/GetApiDocs",
    }
)


class AuthProcess:
    """Everything the process holds, so tests can run it in-process and close it cleanly."""

    def __init__(self, settings: Settings) -> None:
        self.engine = db.create_engine(settings, application_name="copytrade-auth")
        self.redis = create_redis(settings)
        self.platform = PlatformServicer(settings, self.engine, self.redis)
        self.grpc = GrpcService(
            settings,
            "auth",
            public_methods=PUBLIC_METHODS,
            is_revoked=revocation_check(self.redis),
            # Envoy routes reflection here, so this process describes the platform's whole public API.
            reflect_also=api_catalog.public_service_names(),
        )
        sessions = db.session_factory(self.engine)
        auth = AuthServicer(
            settings,
            UserRepository(sessions),
            PasswordHasher(settings.bcrypt_rounds),
            TokenStore(self.redis, settings),
            LoginThrottle(self.redis, settings),
        )
        self.grpc.add(auth_pb2_grpc.add_AuthServiceServicer_to_server, auth, _AUTH)
        self.grpc.add(
            auth_pb2_grpc.add_UserDirectoryServiceServicer_to_server,
            UserDirectoryServicer(sessions),
            _DIRECTORY,
            reflect=False,
        )
        self.grpc.add(platform_pb2_grpc.add_PlatformServiceServicer_to_server, self.platform, _PLATFORM)

    async def close(self) -> None:
        await self.platform.close()
        await self.redis.aclose()
        await self.engine.dispose()


async def serve(settings: Settings) -> None:
    process = AuthProcess(settings)
    try:
        await process.grpc.serve_until_signalled()
    finally:
        await process.close()
