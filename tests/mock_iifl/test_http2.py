"""The h2c listener serves the same state: prior knowledge, the HTTP/1.1 upgrade, flow control, faults."""

from __future__ import annotations

import asyncio
import hashlib
import json

import h2.config
import h2.connection
import h2.events
import httpx
import pytest

from tests.mock_iifl.conftest import ORDER_V1, MockClient, MockServer


@pytest.fixture
async def h2_client(mock_server: MockServer) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=mock_server.h2_url, http1=False, http2=True) as client:
        yield client


async def test_httpx_with_prior_knowledge_trades_over_http2(
    mock: MockClient, h2_client: httpx.AsyncClient
) -> None:
    # An account registered over HTTP/1.1 logs in and trades over HTTP/2: one state behind both.
    code = (await mock.v1_register("H2A"))["auth_code"]
    checksum = hashlib.sha256(f"H2A{code}secret1".encode()).hexdigest()
    login = await h2_client.post("/v1/getusersession", json={"checkSum": checksum})
    assert login.http_version == "HTTP/2"
    token = login.json()["userSession"]
    placed = await h2_client.post("/v1/orders", json=[ORDER_V1], headers={"Authorization": f"Bearer {token}"})
    assert placed.json()["result"][0]["status"] == "Success"
    assert (await mock.account("iifl_v1", "H2A"))["orders"]["count"] == 1
    xts = await h2_client.post(
        "/interactive/user/session", json={"appKey": "h2k", "secretKey": "s", "source": "WEBAPI"}
    )
    assert xts.json()["type"] == "success"


async def test_many_streams_and_a_body_larger_than_the_flow_window(
    mock: MockClient, h2_client: httpx.AsyncClient
) -> None:
    token = await mock.v1_session("H2B")
    headers = {"Authorization": f"Bearer {token}"}
    replies = await asyncio.gather(
        *(
            h2_client.post("/v1/orders", json=[{**ORDER_V1, "orderTag": f"s{i}"}], headers=headers)
            for i in range(300)
        )
    )
    assert {reply.status_code for reply in replies} == {200}
    book = await h2_client.get("/v1/orders", headers=headers)
    assert len(book.content) > 200_000  # well past the 64 KiB initial window
    assert len(book.json()["result"]) == 300


async def test_a_dropped_request_is_a_reset_stream(mock: MockClient, h2_client: httpx.AsyncClient) -> None:
    token = await mock.v1_session("H2C")
    await mock.configure(faults={"drop": 1.0, "applies_to": ["place"], "placed_before_fault": 1.0})
    with pytest.raises(httpx.RemoteProtocolError):
        await h2_client.post("/v1/orders", json=[ORDER_V1], headers={"Authorization": f"Bearer {token}"})
    # The connection itself survives for the other streams.
    assert (await h2_client.get("/_mock/health")).status_code == 200
    assert (await mock.account("iifl_v1", "H2C"))["orders"]["count"] == 1


async def test_http1_upgrade_to_h2c(mock_server: MockServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", mock_server.h2_port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = conn.initiate_upgrade_connection()
    writer.write(
        b"GET /_mock/health HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n"
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    writer.write(conn.data_to_send())
    await writer.drain()
    status, body, ended = None, b"", False
    while not ended:
        for event in conn.receive_data(await asyncio.wait_for(reader.read(65536), 5)):
            if isinstance(event, h2.events.ResponseReceived):
                status = dict(event.headers)[b":status"]
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                ended = True
        writer.write(conn.data_to_send())
    writer.close()
    await writer.wait_closed()
    assert (status, json.loads(body)) == (b"200", {"status": "ok"})


async def test_plain_http1_on_the_h2_port_is_refused(mock_server: MockServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", mock_server.h2_port)
    writer.write(b"GET /_mock/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 505")
    writer.close()
    await writer.wait_closed()
