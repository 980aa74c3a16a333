"""Observability end to end: a stack whose services and Envoy export traces over OTLP/gRPC to a
collector run in this process, and log at DEBUG as JSON into the stack's log files."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.broker_gateway.credentials_vault import CredentialsVault
from tests.support.stack import package_stack


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """A tiny OTLP/gRPC trace receiver: keeps every span it is sent, by trace id."""

    def __init__(self) -> None:
        self.traces: dict[str, list[ReceivedSpan]] = defaultdict(list)

    async def Export(self, request: trace_service_pb2.ExportTraceServiceRequest, context):
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received = ReceivedSpan(
                        service=str(resource.get("service.name", "")),
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        kind=span.kind,
                        attributes={a.key: _value(a.value) for a in span.attributes},
                    )
                    self.traces[received.trace_id].append(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    def find(self, predicate) -> list[ReceivedSpan]:
        return [span for spans in list(self.traces.values()) for span in spans if predicate(span)]

    async def wait_for(self, probe, timeout: float = 30.0):
        """probe() until it returns something true, or give its last answer after timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = probe()
            if found or asyncio.get_running_loop().time() > deadline:
                return found
            await asyncio.sleep(0.2)


def _value(value) -> object:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture(scope="package")
async def collector() -> AsyncIterator[tuple[Collector, int]]:
    receiver = Collector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield receiver, port
    finally:
        await server.stop(0)


@pytest.fixture(scope="package")
async def stack(backing, collector):
    _, port = collector
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        # Spans leave each service within 200 ms instead of 5 s, so the test is quick.
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        # The gateway's per-copy lines are DEBUG; the log test reads them.
        "LOG_LEVEL": "DEBUG",
    }
    async with package_stack(backing, "observability", **env) as running:
        yield running


@pytest.fixture
async def rest(stack):
    async with httpx.AsyncClient(base_url=stack.envoy_url, timeout=30) as client:
        yield client


@dataclass
class Replicated:
    """One master order copied to two followers (one XTS account, one IIFL Capital v1 account), and
    every secret the flow handled, for the log test to look for."""

    master_id: int
    order_id: int
    follower_ids: list[int]
    secrets: dict[str, str]


@pytest.fixture(scope="package")
async def replicated(stack) -> Replicated:
    secrets: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=stack.envoy_url, timeout=30) as rest:
        master = await _user(rest, "MASTER", secrets)
        xts, v1 = await _user(rest, "FOLLOWER", secrets), await _user(rest, "FOLLOWER", secrets)
        tag = uuid.uuid4().hex[:10]
        secrets["xts app_secret"] = f"xts-secret-{uuid.uuid4().hex}"
        await _link(rest, xts, {"dialect": "XTS", "client_code": f"X{tag}", "app_key": f"X{tag}",
                                "app_secret": secrets["xts app_secret"]})  # fmt: skip
        secrets["v1 app_secret"] = f"v1-secret-{uuid.uuid4().hex}"
        mock = f"http://127.0.0.1:{stack.settings.mock_iifl_port}/_mock/v1/authcode"
        issued = await rest.post(mock, json={"client_id": f"V{tag}", "app_secret": secrets["v1 app_secret"]})
        assert issued.status_code == 200, issued.text
        secrets["v1 auth_code"] = issued.json()["auth_code"]
        await _link(rest, v1, {"dialect": "IIFL_CAPITAL_V1", "client_code": f"V{tag}", "app_key": f"key{tag}",
                               "app_secret": secrets["v1 app_secret"], "auth_code": secrets["v1 auth_code"]})  # fmt: skip
        for follower in (xts, v1):
            followed = await rest.post(
                "/api/masters/follow",
                json={"master_id": master["id"], "copy_strategy": "FIXED_QUANTITY", "fixed_quantity": 1},
                headers=follower["headers"],
            )
            assert followed.status_code == 200, followed.text

        placed = await rest.post(
            "/api/orders/place",
            json={"symbol": "RELIANCE", "side": "BUY", "order_type": "MARKET", "quantity": 5},
            headers=master["headers"],
        )
        assert placed.status_code == 200, placed.text
        order_id = int(placed.json()["order"]["id"])
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            view = (await rest.get(f"/api/orders/{order_id}", headers=master["headers"])).json()
            copies = view.get("follower_orders", [])
            if len(copies) == 2 and all(c["status"] not in ("PENDING", "") for c in copies):
                break
            assert asyncio.get_running_loop().time() < deadline, view
            await asyncio.sleep(0.2)
        assert {c["status"] for c in copies} == {"SUBMITTED"}, copies
    secrets.update(await _session_tokens(stack, [xts["id"], v1["id"]]))
    return Replicated(master["id"], order_id, [xts["id"], v1["id"]], secrets)


async def _user(rest: httpx.AsyncClient, role: str, secrets: dict[str, str]) -> dict:
    name = f"{role.lower()[:4]}{uuid.uuid4().hex[:10]}"
    password = f"Pw-{uuid.uuid4().hex}!"
    body = {"email": f"{name}@example.com", "username": name, "password": password, "role": role}
    registered = await rest.post("/api/users/register", json=body)
    assert registered.status_code == 200, registered.text
    grant = await rest.post("/api/users/login", data={"username": name, "password": password})
    assert grant.status_code == 200, grant.text
    granted = grant.json()
    secrets[f"{name} password"] = password
    secrets[f"{name} access token"] = granted["access_token"]
    secrets[f"{name} refresh token"] = granted["refresh_token"]
    return {
        "id": int(granted["user"]["id"]),
        "headers": {"Authorization": f"Bearer {granted['access_token']}"},
    }


async def _link(rest: httpx.AsyncClient, user: dict, body: dict) -> None:
    linked = await rest.post("/api/broker/accounts", json=body, headers=user["headers"])
    assert linked.status_code == 200, linked.text
    assert linked.json()["account"]["status"] == "LINKED", linked.text


async def _session_tokens(stack, user_ids: list[int]) -> dict[str, str]:
    """The broker session tokens the gateway holds for the users (decrypted as the gateway does)."""
    vault = CredentialsVault(stack.settings.credentials_key)
    engine = create_async_engine(stack.database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT user_id, session_encrypted FROM broker_gateway.linked_accounts"
                    " WHERE user_id = ANY(:ids)"
                ),
                {"ids": user_ids},
            )
            sealed = {user_id: session for user_id, session in rows}
    finally:
        await engine.dispose()
    assert set(sealed) == set(user_ids) and all(sealed.values()), sealed
    return {f"user {user_id} broker session": vault.open_session(s) for user_id, s in sealed.items()}
