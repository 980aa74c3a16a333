"""A real Envoy, configured by gateway.config, in front of a test double of the services.

The double is a grpc.aio server with deterministic AuthService and PlatformService handlers that
record what reached them, plus a probe service in package copytrade.orders.v1 (a server stream, to
see SSE) and one in copytrade.replicator.v1 whose cluster points at a closed port. The probes are
compiled from a .proto written here, into the same descriptor set Envoy reads, so the test also
shows that a new package is discovered and routed to its own cluster.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import jwt
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_tools import protoc

from copytrade.auth.v1 import auth_pb2, auth_pb2_grpc
from copytrade.core.settings import PROJECT_ROOT, Settings
from copytrade.platform.v1 import platform_pb2, platform_pb2_grpc
from gateway import process
from gateway.config import write_config

SECRET = "gateway-test-secret-of-at-least-32-bytes"
ISSUER = "copytrade-auth"
AUDIENCE = "copytrade-api"
PROBE_PROTO = """
syntax = "proto3";
package copytrade.%(segment)s.v1;
import "google/api/annotations.proto";
service %(service)s {
  rpc %(method)s(ProbeRequest) returns (%(stream)s ProbeResponse) {
    option (google.api.http) = {get: "%(path)s"};
  }
}
message ProbeRequest { int32 count = 1; }
message ProbeResponse { int32 seq = 1; }
"""
PROBES = {
    "orders": {
        "service": "TickProbeService",
        "method": "WatchTicks",
        "stream": "stream",
        "path": "/test/ticks",
    },
    "replicator": {"service": "DeadProbeService", "method": "Ping", "stream": "", "path": "/test/dead"},
}
TICKS_SERVICE = "copytrade.orders.v1.TickProbeService"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def token(**overrides: object) -> str:
    """An access token as the auth service issues it; overrides change or (with None) drop claims."""
    now = int(time.time())
    claims = {"sub": "42", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300} | overrides
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, SECRET, algorithm="HS256")


def build_descriptor(out_dir: Path, protos: list[str], extra_root: Path | None = None) -> Path:
    """A descriptor set with imports, built the way scripts/gen_protos.py builds build/api.binpb."""
    import grpc_tools

    out = out_dir / "api.binpb"
    roots = [
        PROJECT_ROOT / "protos",
        PROJECT_ROOT / "third_party" / "googleapis",
        Path(grpc_tools.__file__).parent / "_proto",
    ]
    if extra_root is not None:
        roots.insert(0, extra_root)
    args = [
        "protoc",
        *(f"-I{root}" for root in roots),
        "--include_imports",
        f"--descriptor_set_out={out}",
        *protos,
    ]
    assert protoc.main(args) == 0, f"protoc failed for {protos}"
    return out


@dataclass
class Upstream:
    """What reached the double: method name -> (request, metadata dict) of the last call."""

    port: int = 0
    calls: dict[str, tuple[object, dict[str, str]]] = field(default_factory=dict)

    def record(self, method: str, request: object, context: grpc.aio.ServicerContext) -> None:
        self.calls[method] = (request, dict(context.invocation_metadata() or ()))


class FakeAuth(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def Register(self, request, context):
        self.upstream.record("Register", request, context)
        if request.username == "taken":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "username: taken is already registered")
        return auth_pb2.RegisterResponse(
            id=7,
            email=request.email,
            username=request.username,
            full_name=request.full_name,
            iifl_account_id=request.iifl_account_id,
        )

    async def LoginWithHttpBody(self, request, context):
        self.upstream.record("LoginWithHttpBody", request, context)
        return auth_pb2.LoginWithHttpBodyResponse(access_token="t", token_type="bearer", expires_in=900)

    async def GetMe(self, request, context):
        self.upstream.record("GetMe", request, context)
        return auth_pb2.GetMeResponse(user=auth_pb2.User(id=42, username="me"))


class FakePlatform(platform_pb2_grpc.PlatformServiceServicer):
    async def GetHealth(self, request, context):
        return platform_pb2.GetHealthResponse(status="healthy", version="test")


def _tick_handler(pool: descriptor_pool.DescriptorPool) -> grpc.GenericRpcHandler:
    request_type = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("copytrade.orders.v1.ProbeRequest")
    )
    response_type = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("copytrade.orders.v1.ProbeResponse")
    )

    async def watch_ticks(request, context):
        for seq in range(1, request.count + 1):
            yield response_type(seq=seq)

    return grpc.method_handlers_generic_handler(
        TICKS_SERVICE,
        {
            "WatchTicks": grpc.unary_stream_rpc_method_handler(
                watch_ticks, request_type.FromString, response_type.SerializeToString
            )
        },
    )


def _pool(descriptor: Path) -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(descriptor.read_bytes()).file:
        pool.Add(file)
    return pool


@pytest.fixture(scope="module")
def descriptor(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("descriptor")
    probes = []
    for segment, probe in PROBES.items():
        path = folder / "copytrade" / segment / "v1" / "probe.proto"
        path.parent.mkdir(parents=True)
        path.write_text(PROBE_PROTO % dict(probe, segment=segment))
        probes.append(str(path.relative_to(folder)))
    return build_descriptor(
        folder, ["copytrade/auth/v1/auth.proto", "copytrade/platform/v1/platform.proto", *probes], folder
    )


@pytest.fixture(scope="module")
async def upstream(descriptor):
    # The ping policy the real services use, so Envoy's 30 s keepalive is not answered with GOAWAY.
    server = grpc.aio.server(
        options=[
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
            ("grpc.http2.max_ping_strikes", 0),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
    )
    double = Upstream()
    auth_pb2_grpc.add_AuthServiceServicer_to_server(FakeAuth(double), server)
    platform_pb2_grpc.add_PlatformServiceServicer_to_server(FakePlatform(), server)
    server.add_generic_rpc_handlers((_tick_handler(_pool(descriptor)),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            "copytrade.auth.v1.AuthService",
            "copytrade.platform.v1.PlatformService",
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    double.port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    for service in ("copytrade.auth.v1.AuthService", TICKS_SERVICE):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    yield double
    await server.stop(grace=0)


def gateway_settings(upstream: Upstream) -> Settings:
    return Settings(
        jwt_secret=SECRET,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        envoy_port=free_port(),
        envoy_admin_port=free_port(),
        auth_grpc_target=f"127.0.0.1:{upstream.port}",
        # A name, not an address: the STRICT_DNS clusters must resolve it, as they resolve docker's.
        orders_grpc_target=f"localhost:{upstream.port}",
        # Nothing listens there: requests for this cluster show what a client sees when a service is down.
        replicator_grpc_target=f"127.0.0.1:{free_port()}",
    )


@dataclass(frozen=True)
class Gateway:
    settings: Settings
    config: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.envoy_port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.settings.envoy_port}"


@contextlib.asynccontextmanager
async def run_gateway(
    settings: Settings, descriptor: Path, out_dir: Path, **options
) -> AsyncIterator[Gateway]:
    """Write the config, start Envoy on it, wait until auth and orders are healthy, stop it after."""
    config = write_config(settings, out_dir, descriptor=descriptor, **options)
    log_path = out_dir / "envoy.log"
    with log_path.open("wb") as log:
        envoy = await process.start_envoy(config, log=log)
        try:
            try:
                await process.wait_ready(
                    settings.envoy_admin_port, ["auth", "orders"], timeout=15, process=envoy
                )
            except process.EnvoyError as exc:
                raise AssertionError(f"{exc}\n--- envoy log ---\n{log_path.read_text()}") from exc
            yield Gateway(settings, config)
        finally:
            await process.stop_envoy(envoy)


@pytest.fixture(scope="module")
async def gateway(upstream, descriptor, tmp_path_factory):
    async with run_gateway(
        gateway_settings(upstream), descriptor, tmp_path_factory.mktemp("envoy")
    ) as running:
        yield running
