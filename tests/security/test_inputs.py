"""Hostile input in every text field, body and number of the REST API: always a 4xx (or the matching
gRPC code) with a JSON body, never a 5xx or INTERNAL, and nothing stored half-written.

Values that are acceptable (an HTML-looking full name, a secret full of quotes) may succeed; then
they must come back exactly as sent. Every request that failed must have left nothing behind,
which the list endpoints check at the end of each test.
"""

import asyncio
import json
import uuid

import grpc
import httpx
import pytest

from copytrade.auth.v1 import auth_pb2, auth_pb2_grpc
from copytrade.orders.v1 import orders_pb2, orders_pb2_grpc
from copytrade.replicator.v1 import replicator_pb2, replicator_pb2_grpc
from tests.security.actors import PASSWORD, Actors, grpc_code

pytestmark = pytest.mark.e2e

PAYLOADS = {
    "sql": "' OR '1'='1' --",
    "sql drop": "x'); DROP TABLE auth.users; --",
    "nul": "a\x00b",
    "long": "A" * 5000,
    "unicode": "Ωμέγα 😀 \u202e\u0301 ß ﷽",
    "lone surrogate": "\ud800",
    "html": "<script>alert(1)</script>",
    "path": "../../../etc/passwd",
    "format": "%s%n%x{0}${jndi:ldap://x/a}",
    "crlf": "a\r\nX-Injected: 1",
    "control": "\x1b[31m\x07\x7f",
    "blank": "   ",
    "unicode digits": "²١٢",
    "json": '{"$gt": ""}',
}
SERVER_ERRORS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
ORDER = {"symbol": "RELIANCE", "side": "BUY", "order_type": "MARKET", "quantity": 1}


async def send(rest, method: str, path: str, body, headers=None) -> httpx.Response:
    """JSON as a client library would write it: non-ASCII escaped, so a lone surrogate travels too."""
    return await rest.request(
        method, path, content=json.dumps(body).encode(), headers={**(headers or {}), "Content-Type": "application/json"}
    )


def encodable(payload: str) -> bool:
    """Whether a URL or form can carry the value at all (a lone surrogate cannot be UTF-8 encoded)."""
    try:
        payload.encode()
    except UnicodeEncodeError:
        return False
    return True


def check(response: httpx.Response, case) -> None:
    """Never a server error; a refusal is the platform's JSON error, never HTML or an echo page."""
    assert response.status_code < 500, (case, response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.headers.get("content-type", "").startswith("application/json"), (case, response.headers)
        assert isinstance(response.json().get("code"), int), (case, response.text[:300])


@pytest.fixture(scope="module")
async def cast(stack):
    """A master with an order, a follower with a linked account following them."""
    run = uuid.uuid4().hex[:6]
    counter = iter(range(1_000_000))

    def unique(prefix: str = "u") -> str:
        return f"{prefix}{run}{next(counter)}"

    async with httpx.AsyncClient(base_url=stack.envoy_url, timeout=30) as rest:
        actors = Actors(stack, rest, unique)
        master, follower = await actors.user("MASTER"), await actors.user("FOLLOWER")
        await actors.link_xts(follower)
        await actors.follow(follower, master)
        order = await actors.place(master)
        yield {"actors": actors, "master": master, "follower": follower, "order": order, "unique": unique}


async def test_register_fields(rest, unique):
    base = {"password": PASSWORD, "role": "FOLLOWER", "full_name": "", "iifl_account_id": ""}
    for field in ("email", "username", "password", "full_name", "role", "iifl_account_id"):
        for name, payload in PAYLOADS.items():
            who = unique("inj")
            body = {**base, "email": f"{who}@example.com", "username": who, field: payload}
            response = await send(rest, "POST", "/api/users/register", body)
            check(response, (field, name))
            login = await send(rest, "POST", "/api/users/login", {"username": who, "password": body["password"]})
            if response.status_code == 200:
                stored = response.json()
                if field == "full_name":
                    assert stored["full_name"] == payload.strip(), name
                assert login.status_code == 200, (field, name, login.text)
            else:
                assert response.status_code == 400, (field, name, response.text)
                # Half a user is no user: the name is still free.
                check(login, (field, name, "login"))
                assert login.status_code in (400, 401), (field, name, login.text)


async def test_login_refresh_and_logout_fields(rest, actors):
    user = await actors.user("FOLLOWER")
    for name, payload in PAYLOADS.items():
        for field in ("username", "password"):
            body = {"username": user.username, "password": "Wrong12345", field: payload}
            check(await send(rest, "POST", "/api/users/login", body), ("json", field, name))
            if encodable(payload):
                check(await rest.post("/api/users/login", data=body), ("form", field, name))
        check(await send(rest, "POST", "/api/users/refresh", {"refresh_token": payload}), ("refresh", name))
    for name, payload in PAYLOADS.items():
        grant = await rest.post("/api/users/login", data={"username": user.username, "password": PASSWORD})
        if grant.status_code == 429:
            break  # the failed logins above used up the budget; enough was tried
        headers = {"Authorization": f"Bearer {grant.json()['access_token']}"}
        check(await send(rest, "POST", "/api/users/logout", {"refresh_token": payload}, headers), ("logout", name))


async def test_place_order_fields(rest, cast):
    master = cast["master"]
    before = await _order_ids(rest, master)
    accepted = 0
    for field in ("symbol", "side", "order_type", "product", "exchange", "validity", "idempotency_key"):
        for name, payload in PAYLOADS.items():
            response = await send(rest, "POST", "/api/orders/place", {**ORDER, field: payload}, master.headers)
            check(response, (field, name))
            if response.status_code == 200:
                accepted += not response.json().get("idempotent_replay", False)
            else:
                assert response.status_code == 400, (field, name, response.text)
    for name, payload in PAYLOADS.items():
        if payload.strip() and payload.isascii() and payload.isprintable() and len(payload) < 4000:
            headers = {**master.headers, "Idempotency-Key": payload}
            response = await rest.post("/api/orders/place", json=ORDER, headers=headers)
            check(response, ("Idempotency-Key", name))
            accepted += response.status_code == 200 and not response.json().get("idempotent_replay", False)
    # Exactly the accepted orders exist: every refused one left nothing behind.
    assert len(await _order_ids(rest, master) - before) == accepted


async def _order_ids(rest, actor) -> set[str]:
    response = await rest.get("/api/orders/my-orders", params={"page_size": 500}, headers=actor.headers)
    assert response.status_code == 200, response.text
    return {o["id"] for o in response.json().get("orders", [])}


async def test_query_string_fields(rest, cast):
    master, follower = cast["master"], cast["follower"]
    order_id = cast["order"]["id"]
    reads = [
        ("/api/orders/my-orders", ("status", "symbol", "page_token"), master),
        ("/api/orders/stats/summary", ("since", "until"), master),
        (f"/api/orders/{order_id}/replication", ("outcome", "page_token"), master),
        ("/api/masters/me/followers", ("status", "page_token"), master),
        ("/api/masters", ("query", "page_token"), follower),
        ("/api/masters/following", ("page_token",), follower),
    ]
    for path, fields, actor in reads:
        for field in fields:
            for name, payload in PAYLOADS.items():
                if encodable(payload):
                    check(await rest.get(path, params={field: payload}, headers=actor.headers), (path, field, name))
            # Bytes that are not UTF-8, straight in the URL.
            check(await rest.get(f"{path}?{field}=%ff%fe", headers=actor.headers), (path, field, "not utf-8"))
            bad = await rest.get(f"{path}?{field}=%C0%AF", headers=actor.headers)
            assert bad.status_code == 400, (path, field, bad.text)
    for value in ("-1", "abc", "99999999999", "1.5", "%00"):
        check(await rest.get(f"/api/orders/my-orders?page_size={value}", headers=master.headers), value)
    for value in ("-1", "0", "abc", "9223372036854775808", "1.5", "1e3", "%00", "%ff", "..%2F..%2Fusers%2Fme"):
        check(await rest.get(f"/api/orders/{value}", headers=master.headers), ("order id", value))
        check(await rest.get(f"/api/orders/{value}/replication", headers=master.headers), ("report id", value))
        check(await rest.delete(f"/api/masters/{value}/follow", headers=follower.headers), ("master id", value))


async def test_watch_fields_over_grpc(stack, cast):
    master = cast["master"]
    async with grpc.aio.insecure_channel(stack.grpc_target("orders")) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        for name, payload in PAYLOADS.items():
            if name in ("lone surrogate", "unicode digits"):
                continue  # a gRPC client cannot encode the first; the second is the test below
            request = orders_pb2.WatchOrdersRequest(resume_after=payload, heartbeat_seconds=5)
            code = await grpc_code(stub.WatchOrders(request, metadata=master.metadata, timeout=1.5))
            assert code not in SERVER_ERRORS, (name, code)
            # A blank cursor is no cursor: that stream runs (until the deadline) like any other.
            expected = grpc.StatusCode.OK if name == "blank" else grpc.StatusCode.INVALID_ARGUMENT
            assert code in (expected, grpc.StatusCode.DEADLINE_EXCEEDED), (name, code)


async def test_watch_cursor_of_unicode_digits_is_invalid_argument(stack, rest, cast):
    master = cast["master"]
    async with grpc.aio.insecure_channel(stack.grpc_target("orders")) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        request = orders_pb2.WatchOrdersRequest(resume_after="²", heartbeat_seconds=5)
        code = await grpc_code(stub.WatchOrders(request, metadata=master.metadata, timeout=1.5))
    response = await rest.get("/api/orders/watch", params={"resume_after": "²"}, headers=master.headers)
    assert (code, response.status_code) == (grpc.StatusCode.INVALID_ARGUMENT, 400)


async def test_subscription_fields(rest, cast):
    follower, master = cast["follower"], cast["master"]
    for name, payload in PAYLOADS.items():
        body = {"master_id": master.id, "copy_strategy": payload, "ratio": 1}
        check(await send(rest, "POST", "/api/masters/follow", body, follower.headers), ("follow", name))
        body = {"copy_strategy": payload, "ratio": 2}
        check(await send(rest, "PATCH", f"/api/masters/{master.id}/follow", body, follower.headers), ("update", name))
    subscriptions = (await rest.get("/api/masters/following", headers=follower.headers)).json()["subscriptions"]
    # Still one subscription, with settings some request really asked for.
    assert len(subscriptions) == 1
    assert subscriptions[0]["copy_strategy"] == "FIXED_RATIO"
    assert subscriptions[0]["ratio"] in ("1.0", "2.0")


async def test_broker_account_fields(rest, actors):
    follower = await actors.user("FOLLOWER")
    for field in ("dialect", "client_code", "app_key", "app_secret", "auth_code"):
        for name, payload in PAYLOADS.items():
            key = actors.unique("K")
            body = {"dialect": "XTS", "client_code": key, "app_key": key, "app_secret": "S3cret", field: payload}
            response = await send(rest, "POST", "/api/broker/accounts", body, follower.headers)
            check(response, (field, name))
            mine = await rest.get("/api/broker/accounts/me", headers=follower.headers)
            if response.status_code == 200:
                assert mine.status_code == 200
                assert (await rest.delete("/api/broker/accounts/me", headers=follower.headers)).status_code == 200
            else:
                assert response.status_code == 400, (field, name, response.text)
                assert mine.status_code == 404, (field, name, "a refused link left an account behind")
    # Relinking with hostile values leaves the linked account as it was, or replaced as asked.
    linked = await actors.link_xts(follower)
    before = (await rest.get("/api/broker/accounts/me", headers=follower.headers)).json()["account"]
    for name, payload in PAYLOADS.items():
        for body in ({"auth_code": payload}, {"app_key": payload, "app_secret": payload}, {"app_key": payload}):
            response = await send(rest, "POST", "/api/broker/accounts/me:relink", body, follower.headers)
            check(response, ("relink", body.keys(), name))
    after = (await rest.get("/api/broker/accounts/me", headers=follower.headers)).json()["account"]
    assert after["id"] == before["id"] and after["client_code"] == linked["client_code"]


BAD_QUANTITIES = [-1, 0, 1e30, 2**63, -(2**63) - 1, 2**64, "abc", 1.5, True, [], {}, "0x10", "", "NaN", 1e-5]
BAD_PRICES = [-1, -0.1, 1e30, 2**63, 1e308, "abc", "NaN", "Infinity", "-Infinity", 5e-324, 1e-300, "1e309", True,
              [], {}, "0x", "16abc", " 16", 2450.55]  # fmt: skip


async def test_numbers_in_orders(rest, cast):
    master = cast["master"]
    before = await _order_ids(rest, master)
    for value in BAD_QUANTITIES:
        response = await rest.post("/api/orders/place", json={**ORDER, "quantity": value}, headers=master.headers)
        check(response, ("quantity", value))
        assert response.status_code == 400, (value, response.text)
    limit = {**ORDER, "order_type": "LIMIT", "price": 2450.5}
    stop = {**ORDER, "order_type": "SL", "price": 2450.5, "trigger_price": 2440}
    for value in BAD_PRICES:
        for field, body in (("price", limit), ("trigger_price", stop), ("price", stop)):
            response = await rest.post("/api/orders/place", json={**body, field: value}, headers=master.headers)
            check(response, (field, value))
            assert response.status_code == 400, (field, value, response.text)
    assert await _order_ids(rest, master) == before


async def test_numbers_in_subscriptions(rest, cast):
    follower, master = cast["follower"], cast["master"]
    before = (await rest.get("/api/masters/following", headers=follower.headers)).json()["subscriptions"]
    cases = [("FIXED_RATIO", "ratio", v) for v in BAD_PRICES if v != 2450.55] + [
        ("PERCENTAGE", "percentage", v) for v in (*BAD_PRICES, 100.001, 0.001)
    ] + [("FIXED_QUANTITY", "fixed_quantity", v) for v in BAD_QUANTITIES] + [
        ("FIXED_RATIO", "max_quantity", v) for v in (-1, 2**63, 1e30, "abc", 1.5, 10**8)
    ]  # fmt: skip
    for strategy, field, value in cases:
        body = {"master_id": master.id, "copy_strategy": strategy, "ratio": 1, field: value}
        if field != "ratio" and strategy != "FIXED_RATIO":
            body.pop("ratio")
        for method, path in (("POST", "/api/masters/follow"), ("PATCH", f"/api/masters/{master.id}/follow")):
            response = await rest.request(method, path, json=body, headers=follower.headers)
            check(response, (method, field, value))
            assert response.status_code == 400, (method, field, value, response.text)
    for value in (-1, 0, 2**63, "abc", 1.5, "%00"):
        response = await rest.post("/api/masters/follow", json={"master_id": value, "ratio": 1}, headers=follower.headers)
        check(response, ("master_id", value))
        assert response.status_code in (400, 404), (value, response.text)
    after = (await rest.get("/api/masters/following", headers=follower.headers)).json()["subscriptions"]
    assert after == before


@pytest.mark.xfail(
    strict=True,
    reason=(
        "Envoy's JSON transcoder parses the JSON string \"0x10\" into the double 16.0 (hex floats), so the "
        "service cannot tell it from 16; needs gateway/ or protos/ (not this suite's to edit): see the report"
    ),
)
async def test_hex_strings_are_not_prices(rest, cast, actors):
    master, follower = cast["master"], await actors.user("FOLLOWER")
    await actors.follow(follower, master)
    before = await _order_ids(rest, master)
    answers = []
    for value in ("0x10", "0X1p4"):
        body = {**ORDER, "order_type": "LIMIT", "price": value}
        answers.append((await rest.post("/api/orders/place", json=body, headers=master.headers)).status_code)
        body = {"copy_strategy": "FIXED_RATIO", "ratio": value}
        answers.append(
            (await rest.patch(f"/api/masters/{master.id}/follow", json=body, headers=follower.headers)).status_code
        )
    assert answers == [400] * len(answers)
    assert await _order_ids(rest, master) == before


ENUMS = ["HOLD", "buy; DROP TABLE orders", "🚀", "B" * 1000, "SELL\u200b", "MARKET\t1", "null", "0"]


async def test_unknown_enum_values_are_refused_naming_the_field(rest, cast, actors):
    master, follower = cast["master"], cast["follower"]
    before = await _order_ids(rest, master)
    for field in ("side", "order_type", "product", "exchange", "validity"):
        for value in ENUMS:
            response = await rest.post("/api/orders/place", json={**ORDER, field: value}, headers=master.headers)
            _refused(response, field, value)
    assert await _order_ids(rest, master) == before
    reads = (
        ("/api/orders/my-orders", "status", master),
        (f"/api/orders/{cast['order']['id']}/replication", "outcome", master),
        ("/api/masters/me/followers", "status", master),
    )
    for path, field, actor in reads:
        for value in ENUMS:
            _refused(await rest.get(path, params={field: value}, headers=actor.headers), field, value)
    for value in ENUMS:
        body = {"master_id": master.id, "copy_strategy": value, "ratio": 1}
        _refused(await rest.post("/api/masters/follow", json=body, headers=follower.headers), "copy_strategy", value)
        body = {"dialect": value, "client_code": "ABC1", "app_key": "k", "app_secret": "s"}
        newcomer = await actors.user("FOLLOWER")
        _refused(await rest.post("/api/broker/accounts", json=body, headers=newcomer.headers), "dialect", value)
        assert (await rest.get("/api/broker/accounts/me", headers=newcomer.headers)).status_code == 404
        who = actors.unique("enum")
        body = {"email": f"{who}@example.com", "username": who, "password": PASSWORD, "role": value}
        _refused(await rest.post("/api/users/register", json=body), "role", value)


def _refused(response: httpx.Response, field: str, value) -> None:
    check(response, (field, value))
    assert response.status_code == 400, (field, value, response.text)
    violations = response.json()["details"][0]["field_violations"]
    assert [v["field"] for v in violations] == [field], (value, response.text)


BODY_PATHS = [
    ("/api/users/register", False),
    ("/api/users/login", False),
    ("/api/users/refresh", False),
    ("/api/orders/place", True),
    ("/api/masters/follow", True),
    ("/api/broker/accounts", True),
]


async def test_oversize_bodies_are_413(rest, cast):
    big = b'{"email": "' + b"a" * (1024 * 1024 + 10) + b'"}'
    form = b"username=" + b"a" * (1024 * 1024 + 10) + b"&password=x"
    for path, authenticated in BODY_PATHS:
        headers = cast["master"].headers if authenticated else {}
        for body, content_type in ((big, "application/json"), (form, "application/x-www-form-urlencoded")):
            response = await rest.post(path, content=body, headers={**headers, "Content-Type": content_type})
            assert response.status_code == 413, (path, content_type, response.status_code, response.text[:200])
            check(response, path)
    # Chunked, with no Content-Length to check up front: still refused.

    async def chunks():
        for _ in range(17):
            yield b"a" * 65536

    response = await rest.post(
        "/api/users/register", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.text[:200]


async def test_oversize_headers_and_urls_are_refused(rest, cast):
    headers = cast["master"].headers
    assert (await rest.get("/api/users/me", headers={**headers, "X-Big": "a" * 40_000})).status_code == 431
    many = {f"X-H{i}": "a" * 300 for i in range(200)}
    assert (await rest.get("/api/users/me", headers={**headers, **many})).status_code == 431
    huge_token = {"Authorization": "Bearer " + "a" * 40_000}
    assert (await rest.get("/api/users/me", headers=huge_token)).status_code == 431
    for length in (10_000, 20_000, 40_000, 60_000):
        response = await rest.get("/api/orders/my-orders", params={"symbol": "A" * length}, headers=headers)
        check(response, length)
        # Never a server error, and never the random 429 gRPC's default metadata limit gave (Envoy
        # passes the URL on as a header; the services now take what Envoy lets through).
        assert response.status_code in (200, 400, 414, 431), (length, response.status_code)


async def test_malformed_json_bodies_are_400(rest, cast):
    deep_object = b'{"a":' * 5000 + b"1" + b"}" * 5000
    deep_array = b'{"email":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    bodies = {
        "deep object": deep_object,
        "deep array": deep_array,
        "invalid utf-8": b'{"email": "\xff\xfe@example.com", "username": "\xc3\x28", "symbol": "\xed\xa0\x80"}',
        "overlong utf-8": b'{"email": "\xc0\xaf", "symbol": "\xe0\x80\xaf", "copy_strategy": "\xc0\xaf"}',
        "not json": b"not json",
        "array root": b"[]",
        "string root": b'"x"',
        "number root": b"1",
        "truncated": b'{"email": "a@b.c',
        "trailing garbage": b'{"email": "a@b.co"} xx',
        "wrong types": b'{"email": 1, "username": [], "password": {}, "quantity": {}, "master_id": [1]}',
        "nul byte raw": b'{"email": "a\x00@b.co"}',
        "escaped lone surrogate": b'{"email": "\\udc00", "symbol": "\\ud800", "copy_strategy": "\\udfff"}',
        "empty": b"",
    }
    for path, authenticated in BODY_PATHS:
        headers = cast["master"].headers if authenticated else {}
        for name, body in bodies.items():
            response = await rest.post(path, content=body, headers={**headers, "Content-Type": "application/json"})
            check(response, (path, name))
            assert 400 <= response.status_code < 500, (path, name, response.status_code, response.text[:200])
    form = await rest.post(
        "/api/users/login", content=b"username=\xff\xfe&password=\xc0\xaf",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert form.status_code == 400, form.text


async def test_undecodable_text_over_grpc_is_invalid_argument_naming_the_field(stack, cast):
    """A gRPC client can send any bytes in a string field; the service names the field at fault."""
    master = cast["master"]
    # ListMyOrdersRequest.symbol is field 4; FollowRequest.copy_strategy is field 2; Register's
    # full_name is field 4: each a length-delimited field holding bytes that are not UTF-8.
    cases = [
        ("orders", "/copytrade.orders.v1.OrderService/ListMyOrders", b"\x22\x02\xff\xfe", "symbol", master),
        ("replicator", "/copytrade.replicator.v1.ReplicatorService/Follow", b"\x08\x01\x12\x01\xc0", "copy_strategy",
         cast["follower"]),
        ("auth", "/copytrade.auth.v1.AuthService/Register", b"\x22\x03\xed\xa0\x80", "full_name", None),
        ("broker_gateway", "/copytrade.broker.v1.BrokerAccountService/LinkAccount", b"\x12\x01\xff", "client_code",
         cast["follower"]),
    ]  # fmt: skip
    for service, method, raw, field, actor in cases:
        async with grpc.aio.insecure_channel(stack.grpc_target(service)) as channel:
            call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call(raw, metadata=actor.metadata if actor else (), timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, raised.value.details())
        assert raised.value.details().startswith(f"{field}:"), (method, raised.value.details())


async def test_nul_in_any_text_field_over_grpc_is_invalid_argument(stack, cast):
    master, follower = cast["master"], cast["follower"]
    async with grpc.aio.insecure_channel(stack.grpc_target("auth")) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        for request, field in (
            (auth_pb2.LoginRequest(username="a\x00", password="x"), "username"),
            (auth_pb2.RegisterRequest(email="a@b.co", username="abc", password=PASSWORD, full_name="\x00"),
             "full_name"),
            (auth_pb2.RefreshRequest(refresh_token="\x00"), "refresh_token"),
        ):  # fmt: skip
            method = auth.Login if isinstance(request, auth_pb2.LoginRequest) else (
                auth.Register if isinstance(request, auth_pb2.RegisterRequest) else auth.Refresh
            )
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await method(request)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
            assert raised.value.details().startswith(f"{field}:"), raised.value.details()
    async with grpc.aio.insecure_channel(stack.grpc_target("orders")) as channel:
        orders = orders_pb2_grpc.OrderServiceStub(channel)
        for request in (
            orders_pb2.ListMyOrdersRequest(symbol="\x00"),
            orders_pb2.GetOrderStatsRequest(since="\x00"),
        ):
            method = orders.ListMyOrders if isinstance(request, orders_pb2.ListMyOrdersRequest) else orders.GetOrderStats
            assert await grpc_code(method(request, metadata=master.metadata)) == grpc.StatusCode.INVALID_ARGUMENT
    async with grpc.aio.insecure_channel(stack.grpc_target("replicator")) as channel:
        replicator = replicator_pb2_grpc.ReplicatorServiceStub(channel)
        request = replicator_pb2.ListMastersRequest(query="\x00")
        assert await grpc_code(replicator.ListMasters(request, metadata=follower.metadata)) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )


async def test_concurrent_garbage_leaves_the_services_healthy(stack, rest, cast):
    """A burst of hostile requests at once: every one refused cleanly, the platform still serves."""
    master = cast["master"]
    requests = []
    for payload in PAYLOADS.values():
        if not encodable(payload):
            continue
        requests.append(rest.post("/api/orders/place", json={**ORDER, "symbol": payload}, headers=master.headers))
        requests.append(rest.get("/api/orders/my-orders", params={"symbol": payload}, headers=master.headers))
        requests.append(rest.get("/api/masters", params={"query": payload}, headers=master.headers))
        requests.append(rest.post("/api/users/login", data={"username": payload, "password": payload}))
    for response in await asyncio.gather(*requests):
        check(response, response.request.url)
    health = await rest.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "healthy", health.text
