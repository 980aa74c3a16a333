"""Real requests through a real Envoy: REST, native gRPC, gRPC-Web and grpcurl, as clients send them."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import jwt
import pytest

from copytrade.auth.v1 import auth_pb2, auth_pb2_grpc
from tests.gateway.conftest import gateway_settings, run_gateway, token


@pytest.fixture
async def rest(gateway):
    async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as client:
        yield client


@pytest.fixture
async def auth_stub(gateway):
    async with grpc.aio.insecure_channel(gateway.target) as channel:
        yield auth_pb2_grpc.AuthServiceStub(channel)


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


async def test_rest_register_reaches_the_service_with_snake_case_fields(rest, upstream):
    body = {
        "email": "a@example.com",
        "username": "asha",
        "password": "pw12345678",
        "full_name": "Asha K",
        "iifl_account_id": "IIFL1",
    }
    response = await rest.post("/api/users/register", json=body)
    assert response.status_code == 200, response.text
    request, metadata = upstream.calls["Register"]
    assert (request.full_name, request.iifl_account_id) == ("Asha K", "IIFL1")
    assert metadata["x-envoy-original-path"] == "/api/users/register"
    # proto field names, and zero values printed rather than omitted
    assert response.json() == {
        "id": "7",
        "email": "a@example.com",
        "username": "asha",
        "full_name": "Asha K",
        "role": "",
        "iifl_account_id": "IIFL1",
        "balance": "",
        "is_active": False,
        "created_at": "",
    }


async def test_form_login_reaches_login_with_http_body_raw(rest, upstream):
    response = await rest.post(
        "/api/users/login",
        content=b"username=a&password=b",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    request, _ = upstream.calls["LoginWithHttpBody"]
    assert request.http_body.content_type == "application/x-www-form-urlencoded"
    assert request.http_body.data == b"username=a&password=b"
    assert response.json()["access_token"] == "t"


async def test_health_needs_no_token(rest):
    response = await rest.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"


async def test_missing_token_is_a_json_401(rest):
    response = await rest.get("/api/users/me")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"code": 16, "message": "Jwt is missing", "details": []}


async def test_valid_token_reaches_get_me_with_the_authorization_header(rest, upstream):
    access = token()
    response = await rest.get("/api/users/me", headers=bearer(access))
    assert response.status_code == 200, response.text
    assert response.json()["user"]["username"] == "me"
    _, metadata = upstream.calls["GetMe"]
    # forward: true, so the service can verify the token again
    assert metadata["authorization"] == f"Bearer {access}"


def _tampered() -> str:
    header, payload, signature = token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps(claims | {"sub": "1"}).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize(
    ("make_token", "message"),
    [
        (_tampered, "Jwt verification fails"),
        (lambda: token(exp=1_600_000_000, iat=1_599_999_000), "Jwt is expired"),
        (
            lambda: jwt.encode(
                {"sub": "42", "iss": "copytrade-auth", "aud": "copytrade-api", "exp": 4_000_000_000},
                None,
                algorithm="none",
            ),
            None,
        ),
        (lambda: token(iss="someone-else"), None),
        (lambda: token(exp=None), None),
        (
            lambda: jwt.encode(
                {"sub": "42", "iss": "copytrade-auth", "aud": "copytrade-api", "exp": 4_000_000_000},
                "another-secret-that-is-at-least-32-bytes",
                algorithm="HS256",
            ),
            "Jwt verification fails",
        ),
    ],
    ids=["tampered", "expired", "alg-none", "wrong-issuer", "no-expiry", "other-secret"],
)
async def test_bad_tokens_are_a_json_401(rest, upstream, make_token, message):
    upstream.calls.pop("GetMe", None)
    response = await rest.get("/api/users/me", headers=bearer(make_token()))
    assert response.status_code == 401, response.text
    assert response.json()["code"] == 16
    if message:
        assert response.json()["message"] == message
    assert "GetMe" not in upstream.calls


async def test_token_for_another_audience_is_a_json_403(rest):
    response = await rest.get("/api/users/me", headers=bearer(token(aud="another-api")))
    assert response.status_code == 403
    assert response.json()["code"] == 7


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/api/users/nope", None, 404, 5),
        ("GET", "/health?verbose=1", None, 400, 3),
        ("POST", "/api/users/register", b'{"username":', 400, 3),
    ],
    ids=["unknown-path", "unknown-query-parameter", "malformed-json"],
)
async def test_envoys_own_rest_errors_are_json(rest, method, path, body, status, code):
    response = await rest.request(method, path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["code"] == code and response.json()["message"]


@pytest.mark.parametrize(
    ("path", "method", "body", "content_type"),
    [
        ("/api/users/login", "LoginWithHttpBody", b"username=" + b"x" * (1 << 20), "application/x-www-form-urlencoded"),
        ("/api/users/register", "Register", b'{"username": "' + b"x" * (1 << 20) + b'"}', "application/json"),
    ],
)
async def test_body_over_1_mib_is_a_json_413_and_never_reaches_a_service(rest, upstream, path, method, body, content_type):
    upstream.calls.pop(method, None)
    response = await rest.post(path, content=body, headers={"content-type": content_type})
    assert response.status_code == 413
    assert response.json()["code"] == 8
    assert method not in upstream.calls


async def test_service_error_becomes_http_status_and_json(rest):
    response = await rest.post("/api/users/register", json={"username": "taken"})
    assert response.status_code == 400
    assert response.json() == {"code": 3, "message": "username: taken is already registered", "details": []}


async def test_service_down_is_a_json_503(rest):
    # DeadProbeService lives in package copytrade.replicator.v1: discovered, given the replicator
    # cluster, whose only host is a closed port.
    response = await rest.get("/test/dead", headers=bearer(token()))
    assert response.status_code == 503
    assert response.json()["code"] == 14


async def test_server_stream_reaches_rest_clients_as_server_sent_events(rest):
    response = await rest.get("/test/ticks", params={"count": 3}, headers=bearer(token()))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text == 'data: {"seq":1}\n\ndata: {"seq":2}\n\ndata: {"seq":3}\n\n'


async def test_cors_preflight_and_exposed_grpc_headers(rest):
    origin = {"origin": "https://app.example.com"}
    preflight = await rest.options(
        "/api/users/me",
        headers=origin
        | {"access-control-request-method": "GET", "access-control-request-headers": "authorization"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    # Also on Envoy's own 401, or a browser could not read why it failed.
    denied = await rest.get("/api/users/me", headers=origin)
    assert denied.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "grpc-status" in denied.headers["access-control-expose-headers"]


async def test_client_address_comes_from_envoy_not_the_client(rest, upstream):
    await rest.post(
        "/api/users/register",
        json={"username": "spoof"},
        headers={"x-envoy-external-address": "6.6.6.6", "x-envoy-internal": "true"},
    )
    _, metadata = upstream.calls["Register"]
    assert metadata["x-envoy-external-address"] == "127.0.0.1"
    assert "x-envoy-internal" not in metadata


async def test_native_grpc_with_and_without_token(auth_stub, upstream):
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await auth_stub.GetMe(auth_pb2.GetMeRequest())
    # gRPC clients get a status and a plain message, not the JSON REST clients get
    assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert denied.value.details() == "Jwt is missing"

    access = token()
    reply = await auth_stub.GetMe(auth_pb2.GetMeRequest(), metadata=tuple(bearer(access).items()))
    assert reply.user.username == "me"
    assert upstream.calls["GetMe"][1]["authorization"] == f"Bearer {access}"

    public = await auth_stub.Register(auth_pb2.RegisterRequest(username="grpc-user"))
    assert public.username == "grpc-user"
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await auth_stub.Register(auth_pb2.RegisterRequest(username="taken"))
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_dot_segments_cannot_borrow_a_public_prefix(gateway):
    # Without path normalisation jwt_authn would see the public health prefix and let this through.
    async with grpc.aio.insecure_channel(gateway.target) as channel:
        call = channel.unary_unary(
            "/grpc.health.v1.Health/../copytrade.auth.v1.AuthService/GetMe",
            request_serializer=auth_pb2.GetMeRequest.SerializeToString,
            response_deserializer=auth_pb2.GetMeResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await call(auth_pb2.GetMeRequest())
    assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _grpc_web_frames(body: bytes) -> list[tuple[int, bytes]]:
    frames = []
    while body:
        flags, length = struct.unpack(">BI", body[:5])
        frames.append((flags, body[5 : 5 + length]))
        body = body[5 + length :]
    return frames


async def test_grpc_web_call(rest):
    message = auth_pb2.GetMeRequest().SerializeToString()
    response = await rest.post(
        "/copytrade.auth.v1.AuthService/GetMe",
        content=struct.pack(">BI", 0, len(message)) + message,
        headers=bearer(token()) | {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/grpc-web+proto"
    (data_flags, data), (trailer_flags, trailers) = _grpc_web_frames(response.content)
    assert (data_flags, trailer_flags) == (0x00, 0x80)
    assert auth_pb2.GetMeResponse.FromString(data).user.username == "me"
    assert b"grpc-status:0" in trailers


async def test_grpc_web_without_token_gets_grpc_status(rest):
    response = await rest.post(
        "/copytrade.auth.v1.AuthService/GetMe",
        content=b"\x00\x00\x00\x00\x00",
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
    )
    assert response.headers["grpc-status"] == "16"
    assert response.headers["grpc-message"] == "Jwt is missing"


async def test_grpcurl_lists_services_through_envoy(gateway):
    # A subprocess run from the event loop: the upstream double answers on that same loop.
    grpcurl = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"
    listing = await asyncio.create_subprocess_exec(
        grpcurl, "-plaintext", gateway.target, "list", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(listing.communicate(), 20)
    assert listing.returncode == 0, stderr.decode()
    assert {
        "copytrade.auth.v1.AuthService",
        "copytrade.platform.v1.PlatformService",
        "grpc.health.v1.Health",
    } <= set(stdout.decode().split())


async def test_rate_limit_answers_429_json_and_resource_exhausted(upstream, descriptor, tmp_path):
    async with run_gateway(
        gateway_settings(upstream), descriptor, tmp_path, requests_per_second=2
    ) as limited:
        async with httpx.AsyncClient(base_url=limited.url, timeout=5) as client:
            statuses = [(await client.get("/health")) for _ in range(8)]
        async with grpc.aio.insecure_channel(limited.target) as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            codes = []
            for _ in range(6):
                try:
                    await stub.Register(auth_pb2.RegisterRequest(username="burst"))
                    codes.append(grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code())
    limited_replies = [r for r in statuses if r.status_code == 429]
    assert limited_replies, [r.status_code for r in statuses]
    assert limited_replies[0].json() == {"code": 8, "message": "local_rate_limited", "details": []}
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
