"""Trading tools speak gRPC to Envoy's port; operators use grpcurl through reflection."""

import json
import struct
import subprocess

import grpc
import httpx
import pytest

from copytrade.auth.v1 import auth_pb2, auth_pb2_grpc

pytestmark = pytest.mark.e2e
PASSWORD = "Password123!"


def grpcurl(*args: str) -> subprocess.CompletedProcess:
    # Not check=True: the callers assert on the exit code, some expecting a failure.
    return subprocess.run(["grpcurl", *args], capture_output=True, text=True, timeout=30, check=False)


async def test_register_login_getme_over_grpc_through_envoy(stack, unique):
    name = unique("grpc")
    async with grpc.aio.insecure_channel(stack.envoy_target) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        user = await stub.Register(auth_pb2.RegisterRequest(
            email=f"{name}@example.com", username=name, password=PASSWORD, role="FOLLOWER"))
        grant = await stub.Login(auth_pb2.LoginRequest(username=name, password=PASSWORD))
        me = await stub.GetMe(auth_pb2.GetMeRequest(), metadata=(("authorization", f"Bearer {grant.access_token}"),))
        assert me.user.id == user.id

        for call, code in (
            (stub.GetMe(auth_pb2.GetMeRequest()), grpc.StatusCode.UNAUTHENTICATED),
            (stub.Login(auth_pb2.LoginRequest(username=name, password="Wrong12345")), grpc.StatusCode.UNAUTHENTICATED),
            (stub.Register(auth_pb2.RegisterRequest(email="bad", username=name, password=PASSWORD)),
             grpc.StatusCode.INVALID_ARGUMENT),
            (stub.Register(auth_pb2.RegisterRequest(email=f"{name}@example.com", username=unique("x"),
                                                    password=PASSWORD)), grpc.StatusCode.ALREADY_EXISTS),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call
            assert raised.value.code() == code


async def test_sixth_failed_grpc_login_is_resource_exhausted(stack, registered_user):
    async with grpc.aio.insecure_channel(stack.envoy_target) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        codes = []
        for _ in range(6):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.Login(auth_pb2.LoginRequest(username=registered_user["username"], password="Wrong12345"))
            codes.append(raised.value.code())
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 5 + [grpc.StatusCode.RESOURCE_EXHAUSTED]


def test_grpcurl_lists_every_service_through_envoy(stack):
    listed = grpcurl("-plaintext", stack.envoy_target, "list")
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert {
        "copytrade.auth.v1.AuthService",
        "copytrade.platform.v1.PlatformService",
        "copytrade.orders.v1.OrderService",
        "copytrade.replicator.v1.ReplicatorService",
        "copytrade.broker.v1.BrokerAccountService",
    } <= services
    # The fan-out API is internal: not listed at the edge, and not callable there either.
    assert "copytrade.broker.v1.BrokerGatewayService" not in services


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("auth", "copytrade.auth.v1.AuthService"),
        ("orders", "copytrade.orders.v1.OrderService"),
        ("replicator", "copytrade.replicator.v1.ReplicatorService"),
        ("broker_gateway", "copytrade.broker.v1.BrokerGatewayService"),
    ],
)
def test_grpcurl_lists_each_services_own_port(stack, service, expected):
    listed = grpcurl("-plaintext", stack.settings.grpc_target(service), "list")
    assert listed.returncode == 0, listed.stderr
    assert expected in listed.stdout.split()
    assert "grpc.health.v1.Health" in listed.stdout


def test_register_and_login_with_grpcurl(stack, unique):
    name = unique("cli")
    registered = grpcurl(
        "-plaintext", "-d", json.dumps({"email": f"{name}@example.com", "username": name, "password": PASSWORD,
                                         "role": "MASTER"}),
        stack.envoy_target, "copytrade.auth.v1.AuthService/Register",
    )
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["username"] == name
    logged_in = grpcurl(
        "-plaintext", "-d", json.dumps({"username": name, "password": PASSWORD}),
        stack.envoy_target, "copytrade.auth.v1.AuthService/Login",
    )
    assert logged_in.returncode == 0, logged_in.stderr
    assert json.loads(logged_in.stdout)["token_type"] == "bearer"


def test_unbuilt_rpc_answers_unimplemented_not_internal(stack, logged_in):
    called = grpcurl(
        "-plaintext", "-H", f"authorization: Bearer {logged_in['access_token']}", "-d", '{"order_id": 1}',
        stack.envoy_target, "copytrade.orders.v1.OrderService/CancelOrder",
    )
    assert called.returncode != 0
    assert "Unimplemented" in called.stderr


async def test_grpc_web_call_through_envoy(stack):
    from copytrade.platform.v1 import platform_pb2

    payload = platform_pb2.GetHealthRequest().SerializeToString()
    frame = b"\x00" + struct.pack(">I", len(payload)) + payload
    async with httpx.AsyncClient(base_url=stack.envoy_url) as client:
        response = await client.post(
            "/copytrade.platform.v1.PlatformService/GetHealth",
            content=frame,
            headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
        )
    assert response.status_code == 200
    body = response.content
    length = struct.unpack(">I", body[1:5])[0]
    health = platform_pb2.GetHealthResponse.FromString(body[5 : 5 + length])
    assert health.status == "healthy"
    assert b"grpc-status:0" in body[5 + length :]
