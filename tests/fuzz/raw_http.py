"""What schemathesis does not send: odd headers and raw bodies, through Envoy.

Headers, over REST and native gRPC (HTTP/2 without TLS): Envoy accepts any HTTP token as a header
name and any visible byte in a value; grpcio accepts far less and answered INTERNAL for what it could
not parse (gateway.filters.sanitize_headers now drops those). Names come from HTTP's token alphabet,
values from what HTTP lets through; reserved gRPC names get the malformed values that broke the services.

Bodies: bytes, text and JSON-like documents (deep nesting, huge numbers, duplicate keys, lone
surrogates) under any content type, to REST routes and, framed or not, to gRPC-Web paths.
"""

from __future__ import annotations

import json
import struct

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz.support import Actor, Tally, known_unfixed

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
RESERVED = (
    "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "grpc-status", "grpc-message",
    "grpc-status-details-bin", "grpc-previous-rpc-attempts", "grpc-retry-pushback-ms", "grpc-trace-bin",
    "grpc-tags-bin", "grpc-internal-encoding-request", "lb-token", "lb-cost-bin", "endpoint-load-metrics-bin",
    "x-foo-bin", "te", "content-encoding", "x-envoy-external-address", "x-forwarded-for", "idempotency-key",
)
ODD_VALUES = ("", "A", "-1S", "0S", "99999999999S", "1n", "zstd", "gzip", "!!!", "AAA=", "\u00e9", "x" * 2000)
names = st.one_of(st.sampled_from(RESERVED), st.text(TCHARS, min_size=1, max_size=24))
values = st.one_of(
    st.sampled_from(ODD_VALUES),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=64),
)
header_lists = st.lists(st.tuples(names, values), min_size=1, max_size=6)
TARGETS = (
    ("rest", "GET", "/api/users/me"),
    ("rest", "GET", "/health"),
    ("rest", "POST", "/api/users/login"),
    ("grpc", "POST", "/copytrade.auth.v1.AuthService/GetMe"),
    ("grpc", "POST", "/copytrade.orders.v1.OrderService/ListMyOrders"),
)
EMPTY_GRPC_MESSAGE = struct.pack(">?I", False, 0)


def run_header_fuzz(base_url: str, actor: Actor, examples: int, *, derandomize: bool) -> Tally:
    tally = Tally("odd headers via Envoy")
    with httpx.Client(base_url=base_url, timeout=15) as rest, httpx.Client(
        base_url=base_url, timeout=15, http1=False, http2=True
    ) as h2c:

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=derandomize,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(target=st.sampled_from(TARGETS), extra=header_lists, with_token=st.booleans())
        def run(target: tuple[str, str, str], extra: list[tuple[str, str]], with_token: bool) -> None:
            kind, method, path = target
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra]
            if with_token:
                headers.append((b"authorization", actor.headers()["Authorization"].encode()))
            label = f"{kind} {method} {path}"
            try:
                if kind == "rest":
                    body = b"username=nobody&password=wrong" if method == "POST" else None
                    headers.append((b"content-type", b"application/x-www-form-urlencoded"))
                    response = rest.request(method, path, headers=headers, content=body)
                else:
                    headers += [(b"content-type", b"application/grpc"), (b"te", b"trailers")]
                    response = h2c.request(method, path, headers=headers, content=EMPTY_GRPC_MESSAGE)
            except httpx.LocalProtocolError:
                return  # the client itself refuses to send it: nothing reached Envoy
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                if kind == "grpc" and any(not v.isascii() or not v.isprintable() for _, v in extra):
                    # A refusal at the HTTP/2 layer of bytes HTTP/2 forbids (seen once in 800 tries, as a
                    # COMPRESSION_ERROR on a long-used connection; not reproducible on a fresh one since the
                    # gateway resets only the offending stream): not a 5xx, not the services.
                    tally.record(label, "h2-stream-refused")
                    return
                tally.record(label, "transport-error", f"{type(exc).__name__}: {exc} with {extra!r}")
                return
            except httpx.HTTPError as exc:
                tally.record(label, "transport-error", f"{type(exc).__name__}: {exc} with {extra!r}")
                return
            # httpx shows no HTTP/2 trailers, but grpcio answers an error raised before the first message
            # (every one here: a bad header fails the call before its handler runs) trailers-only,
            # that is with grpc-status among the headers.
            grpc_status = response.headers.get("grpc-status")
            outcome = f"{response.status_code}" + (f"/grpc-{grpc_status}" if grpc_status else "")
            failure = None
            if response.status_code >= 500 or grpc_status in ("2", "13", "15"):
                failure = f"{outcome} {response.text[:200]!r} with headers {extra!r}"
            tally.record(label, outcome, failure)

        run()
    return tally



JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20), st.sampled_from(["RELIANCE", "BUY", "MARKET", "MASTER", "1e999", "-0", "\u0000"]),
)
json_documents = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=12,
).map(json.dumps)
JSON_TRICKS = (
    '{"a":1,"a":2}', '{"quantity": 1e999}', '{"quantity": 99999999999999999999}', '{"email": "\\ud800"}',
    "[" * 3000 + "]" * 3000, '{"master_id": "12abc"}', '{"price": "NaN"}', '{"symbol": {"nested": true}}',
    '{"quantity": [1, 2]}', "null", "[]", "\"x\"", "{", "{}}", "\ufeff{}", '{"username": "a", "password": 5}',
)
bodies = st.one_of(
    json_documents.map(str.encode),
    st.sampled_from(JSON_TRICKS).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
    st.text(max_size=100).map(str.encode),
    st.just(b"username=a&password=b&username=c"),
)
CONTENT_TYPES = (
    b"application/json", b"application/json; charset=latin-1", b"application/x-www-form-urlencoded", b"text/plain",
    b"multipart/form-data; boundary=x", b"", b"application/grpc-web+proto", b"application/grpc-web-text",
    b"application/grpc-web+json", b"application/octet-stream",
)
BODY_TARGETS = (
    ("POST", "/api/users/register"),
    ("POST", "/api/users/login"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/users/refresh"),
    ("POST", "/api/users/logout"),
    ("POST", "/api/orders/place"),
    ("POST", "/api/orders/1:cancel"),
    ("POST", "/api/masters/follow"),
    ("PATCH", "/api/masters/1/follow"),
    ("POST", "/api/broker/accounts"),
    ("POST", "/api/broker/accounts/me:relink"),
    ("POST", "/copytrade.auth.v1.AuthService/Login"),
    ("POST", "/copytrade.orders.v1.OrderService/PlaceOrder"),
    ("POST", "/copytrade.orders.v1.OrderService/WatchOrders"),
)


def grpc_web_frame(payload: bytes) -> bytes:
    return struct.pack(">?I", False, len(payload)) + payload


def run_body_fuzz(base_url: str, actor: Actor, examples: int, *, derandomize: bool) -> Tally:
    tally = Tally("raw bodies via Envoy")
    with httpx.Client(base_url=base_url, timeout=httpx.Timeout(15, read=1.5)) as client:

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=derandomize,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(
            target=st.sampled_from(BODY_TARGETS),
            body=bodies,
            content_type=st.sampled_from(CONTENT_TYPES),
            framed=st.booleans(),
            with_token=st.booleans(),
        )
        def run(target: tuple[str, str], body: bytes, content_type: bytes, framed: bool, with_token: bool) -> None:
            method, path = target
            headers = [(b"content-type", content_type)] if content_type else []
            if with_token:
                headers.append((b"authorization", actor.headers()["Authorization"].encode()))
            if framed and content_type.startswith(b"application/grpc-web"):
                body = grpc_web_frame(body)
            label = f"{method} {path} [{content_type.decode()}]"
            try:
                with client.stream(method, path, headers=headers, content=body) as response:
                    status = response.status_code
                    text = response.read()[:200] if "watch" not in path.lower() else b""
                    grpc_status = response.headers.get("grpc-status")
            except httpx.ReadTimeout:
                # WatchOrders accepted it and is streaming; anything else was merely slow (a busy machine).
                tally.record(label, "open-stream" if "WatchOrders" in path else "slow")
                return
            except httpx.HTTPError as exc:
                tally.record(label, "transport-error", f"{type(exc).__name__}: {exc} with {body[:100]!r}")
                return
            outcome = f"{status}" + (f"/grpc-{grpc_status}" if grpc_status else "")
            if known_unfixed(path, status, text.decode(errors="replace")):
                tally.record(label, f"{outcome}-known")
                return
            failure = None
            if status >= 500 or grpc_status in ("2", "13", "15"):
                failure = f"{outcome} {text!r} for body {body[:150]!r}"
            tally.record(label, outcome, failure)

        run()
    return tally
