"""Odd headers and raw bodies never make a service answer INTERNAL or Envoy answer 5xx (tests.fuzz.raw_http)."""

from __future__ import annotations

import asyncio
import base64

import httpx

from tests.fuzz.raw_http import run_body_fuzz, run_header_fuzz
from tests.fuzz.support import CI_EXAMPLES, examples_per_target, is_full_run

# The headers that made grpcio answer INTERNAL (HTTP 500) before gateway.filters.sanitize_headers.
FOUND_BY_FUZZING = [
    ("p-%io+t", "x"),
    ("x-foo-bin", "!!!notbase64"),
    ("x-foo-bin", "A"),
    ("x-foo-bin", "T2"),
    ("grpc-timeout", "zzz"),
    ("grpc-timeout", "-1S"),
    ("grpc-timeout", "0S"),
    ("grpc-encoding", "zstd-nope"),
    ("grpc-status", "x"),
    ("grpc-previous-rpc-attempts", "x"),
    ("grpc-retry-pushback-ms", "x"),
    ("grpc-internal-encoding-request", "zz"),
    ("lb-cost-bin", "AAAA"),
]


async def test_headers_grpc_cannot_carry_are_dropped_from_rest_requests(stack, actors):
    async with httpx.AsyncClient(base_url=stack.envoy_url, timeout=15) as rest:
        for name, value in FOUND_BY_FUZZING:
            headers = {**actors["master"].headers(), name: value}
            response = await rest.get("/api/users/me", headers=headers)
            assert response.status_code == 200, (name, value, response.text)
            assert response.json()["user"]["id"] == str(actors["master"].user_id)


async def test_unsupported_grpc_encoding_is_unimplemented_for_grpc_callers(stack, actors):
    async with httpx.AsyncClient(base_url=stack.envoy_url, timeout=15, http1=False, http2=True) as h2c:
        response = await h2c.post(
            "/copytrade.auth.v1.AuthService/GetMe",
            headers={
                **actors["master"].headers(),
                "content-type": "application/grpc",
                "te": "trailers",
                "grpc-encoding": "zstd-nope",
            },
            content=b"\x00\x00\x00\x00\x00",
        )
    assert response.status_code == 200
    assert response.headers["grpc-status"] == "12"
    assert "zstd-nope" in response.headers["grpc-message"]


async def test_grpc_web_text_that_is_not_base64_is_invalid_argument_and_base64_still_works(stack):
    async with httpx.AsyncClient(base_url=stack.envoy_url, timeout=15) as client:
        path = "/copytrade.platform.v1.PlatformService/GetHealth"
        headers = {"content-type": "application/grpc-web-text", "x-grpc-web": "1"}
        bad = await client.post(path, headers=headers, content=b"\x00\x00\x00\x00\x041256")
        assert (bad.status_code, bad.headers["grpc-status"]) == (200, "3"), bad.headers
        good = await client.post(path, headers=headers, content=base64.b64encode(b"\x00\x00\x00\x00\x00"))
        assert good.status_code == 200
        # Envoy answers in binary gRPC-Web unless asked (accept) for text.
        assert b"grpc-status:0" in good.content, good.content[-200:]
        assert b"postgres" in good.content, good.content[:200]


async def test_a_grpc_call_that_is_not_post_is_unimplemented_not_internal(stack):
    # gRPC-Web to a REST path with PATCH reached grpcio as a non-POST gRPC call: INTERNAL before the fix.
    async with httpx.AsyncClient(base_url=stack.envoy_url, timeout=15) as client:
        response = await client.patch(
            "/api/masters/1/follow", headers={"content-type": "application/grpc-web+proto"}, content=b""
        )
    assert (response.status_code, response.headers["grpc-status"]) == (200, "12"), response.headers


async def test_odd_bytes_in_http2_header_values_leave_the_connection_working(stack, actors):
    async with httpx.AsyncClient(base_url=stack.envoy_url, timeout=15, http1=False, http2=True) as h2c:
        for _ in range(3):
            odd = await h2c.get("/health", headers=[(b"x-odd", b"\xdc1\x87"), (b"lb-token", b"\xec")])
            assert odd.status_code == 200
        response = await h2c.get("/api/users/me", headers=actors["master"].headers())
    assert response.status_code == 200


async def test_generated_headers_never_cause_a_server_error(stack, actors, capsys, tallies):
    examples = examples_per_target(ci_default=CI_EXAMPLES * 10, full_factor=5)
    tally = await asyncio.to_thread(
        run_header_fuzz, stack.envoy_url, actors["master"], examples, derandomize=not is_full_run()
    )
    tallies.append(tally)
    with capsys.disabled():
        print("\n" + tally.report())
    assert tally.inputs >= examples // 2, tally.report()
    assert not tally.failures, tally.report()


async def test_generated_bodies_never_cause_a_server_error(stack, actors, capsys, tallies):
    examples = examples_per_target(ci_default=CI_EXAMPLES * 10, full_factor=5)
    tally = await asyncio.to_thread(
        run_body_fuzz, stack.envoy_url, actors["master"], examples, derandomize=not is_full_run()
    )
    tallies.append(tally)
    with capsys.disabled():
        print("\n" + tally.report())
    assert tally.inputs >= examples // 2, tally.report()
    assert not tally.failures, tally.report()
