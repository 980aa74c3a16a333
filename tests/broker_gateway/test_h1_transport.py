"""The httptools transport against small servers that misbehave on purpose: framing, reuse, timeouts,
smuggling and TLS, the cases the mock broker cannot produce."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.broker_gateway.brokers.h1 import HttptoolsTransport
from services.broker_gateway.brokers.http import NoReply, NotSent

Answer = Callable[[int, bytes, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """Reads each request (head and Content-Length body) and lets `answer` write the reply."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")),
                    0,
                )
                self.requests.append(head + await reader.readexactly(length))
                await self.answer(len(self.requests), head, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(answer: Answer, tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[Server, int]]:
    server = Server(answer)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    try:
        yield server, listener.sockets[0].getsockname()[1]
    finally:
        listener.close()
        await listener.wait_closed()


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body


async def numbered(number: int, head: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(ok(b'{"n":%d}' % number))


async def test_connections_are_kept_alive_and_reused() -> None:
    async with serving(numbered) as (server, port):
        transport = HttptoolsTransport(f"http://127.0.0.1:{port}/api", timeout=2)
        try:
            replies = [await transport.request("POST", "/orders", headers={"X-Key": "k"}, body=b"[]") for _ in range(3)]
        finally:
            await transport.close()
    assert [r.body for r in replies] == [b'{"n":1}', b'{"n":2}', b'{"n":3}']
    assert server.connections == 1
    first = server.requests[0].decode()
    assert first.startswith("POST /api/orders HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}\r\n" in first and "X-Key: k\r\n" in first and "Content-Length: 2\r\n" in first
    assert first.endswith("\r\n\r\n[]")


async def test_a_chunked_reply_is_read_whole() -> None:
    async def chunked(number: int, head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n")

    async with serving(chunked) as (server, port):
        transport = HttptoolsTransport(f"http://127.0.0.1:{port}", timeout=2)
        try:
            reply = await transport.request("GET", "/x", headers={})
            again = await transport.request("GET", "/x", headers={})
        finally:
            await transport.close()
    assert (reply.status, reply.body) == (201, b'{"a":1}') and again.body == b'{"a":1}'
    assert server.connections == 1


async def test_a_reply_that_says_close_is_not_reused_nor_is_one_the_server_closed_while_idle() -> None:
    async def close_after(number: int, head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(ok(extra=b"Connection: close\r\n") if number == 1 else ok())
        if number in (1, 2):
            await writer.drain()
            writer.close()  # 1 said so; 2 did not, and goes away while idle all the same

    async with serving(close_after) as (server, port):
        transport = HttptoolsTransport(f"http://127.0.0.1:{port}", timeout=2)
        try:
            for _ in range(3):
                assert (await transport.request("GET", "/", headers={})).status == 200
                await asyncio.sleep(0.05)  # the server's FIN arrives before the next request
        finally:
            await transport.close()
    assert server.connections == 3


async def test_a_timeout_is_a_no_reply_and_the_late_answer_is_never_read_as_the_next_one() -> None:
    async def slow_first(number: int, head: bytes, writer: asyncio.StreamWriter) -> None:
        if number == 1:
            await asyncio.sleep(0.4)
        writer.write(ok(b'{"n":%d}' % number))

    async with serving(slow_first) as (server, port):
        transport = HttptoolsTransport(f"http://127.0.0.1:{port}", timeout=2)
        try:
            with pytest.raises(NoReply) as late:
                await transport.request("POST", "/orders", headers={}, body=b"{}", timeout=0.1)
            assert late.value.timed_out and late.value.sent
            await asyncio.sleep(0.5)
            reply = await transport.request("POST", "/orders", headers={}, body=b"{}")
        finally:
            await transport.close()
    assert reply.body == b'{"n":2}' and server.connections == 2


async def test_a_dropped_or_garbled_reply_is_a_no_reply_that_may_have_been_seen() -> None:
    async def bad(number: int, head: bytes, writer: asyncio.StreamWriter) -> None:
        if number == 1:
            writer.close()
        else:
            writer.write(b"HTTP/1.1 abc nonsense\r\n\r\n")

    async with serving(bad) as (_, port):
        transport = HttptoolsTransport(f"http://127.0.0.1:{port}", timeout=2)
        try:
            for _ in range(2):
                with pytest.raises(NoReply) as failed:
                    await transport.request("POST", "/orders", headers={}, body=b"{}")
                assert not failed.value.timed_out and failed.value.sent
        finally:
            await transport.close()


async def test_a_line_break_in_a_header_or_path_is_refused_unsent() -> None:
    async with serving(numbered) as (server, port):
        transport = HttptoolsTransport(f"http://127.0.0.1:{port}", timeout=2)
        try:
            with pytest.raises(NotSent):
                await transport.request("GET", "/", headers={"Authorization": "t\r\nX-Evil: 1"})
            with pytest.raises(NotSent):
                await transport.request("GET", "/a HTTP/1.1\r\nHost: x\r\n\r\nGET /b", headers={})
            with pytest.raises(NotSent):
                await transport.request("GET", "/", headers={"Authorization": "ключ"})
        finally:
            await transport.close()
    assert server.requests == []


async def test_nothing_listening_is_not_sent_and_a_bad_url_is_refused() -> None:
    with pytest.raises(ValueError, match="base URL"):
        HttptoolsTransport("ftp://broker.example/v1", timeout=1)
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    transport = HttptoolsTransport(f"http://127.0.0.1:{port}", timeout=1)
    try:
        with pytest.raises(NotSent):
            await transport.request("POST", "/orders", headers={}, body=b"{}")
    finally:
        await transport.close()


async def test_warm_opens_connections_that_requests_then_use() -> None:
    async with serving(numbered) as (server, port):
        transport = HttptoolsTransport(f"http://127.0.0.1:{port}", timeout=2, max_connections=3)
        try:
            assert await transport.warm(5) == 3  # no more than the pool may hold
            await asyncio.gather(*(transport.request("GET", "/", headers={}) for _ in range(3)))
        finally:
            await transport.close()
    assert server.connections == 3


def _certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broker.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_https_checks_the_certificate(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    async with serving(numbered, tls=server_tls) as (_, port):
        trusting = HttptoolsTransport(
            f"https://127.0.0.1:{port}/v1", timeout=2, ssl_context=ssl.create_default_context(cafile=str(cert))
        )
        untrusting = HttptoolsTransport(f"https://127.0.0.1:{port}/v1", timeout=2)
        try:
            assert (await trusting.request("GET", "/", headers={})).body == b'{"n":1}'
            with pytest.raises(NotSent, match="cannot connect"):
                await untrusting.request("GET", "/", headers={})
        finally:
            await trusting.close()
            await untrusting.close()


def test_the_host_header_names_the_port_only_when_it_is_not_the_default() -> None:
    def host(url: str) -> str:
        message = HttptoolsTransport(url, timeout=1)._message("GET", "/x", {}, b"")
        return next(line for line in message.decode().split("\r\n") if line.startswith("Host: "))

    assert host("https://api.example.in/v1") == "Host: api.example.in"
    assert host("http://api.example.in:8080/v1") == "Host: api.example.in:8080"
    assert host("http://[::1]:8080/v1") == "Host: [::1]:8080"
