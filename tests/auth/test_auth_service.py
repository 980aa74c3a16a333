"""AuthService over real gRPC, backed by real PostgreSQL and Redis."""

import time

import grpc
import jwt
import pytest

from copytrade.auth.v1 import auth_pb2
from copytrade.core.tokens import issue_access_token

PASSWORD = "Password123!"
Code = grpc.StatusCode


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def register(stub, unique, role="MASTER", **fields):
    name = unique("user")
    request = auth_pb2.RegisterRequest(
        email=f"{name}@example.com", username=name, password=PASSWORD, full_name="Test User", role=role,
        iifl_account_id="ACC001",
    )
    for key, value in fields.items():
        setattr(request, key, value)
    return await stub.Register(request)


async def login(stub, username, password=PASSWORD, address=None):
    metadata = (("x-envoy-external-address", address),) if address else ()
    return await stub.Login(auth_pb2.LoginRequest(username=username, password=password), metadata=metadata)


async def expect_error(call, code: grpc.StatusCode, *words: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == code, raised.value.details()
    for word in words:
        assert word in raised.value.details()
    return raised.value


async def test_register_returns_the_new_user(auth_stub, unique):
    user = await register(auth_stub, unique, role="master")
    assert user.id > 0
    assert user.role == "MASTER"
    assert user.balance == "10000.00"
    assert user.is_active
    assert user.iifl_account_id == "ACC001"
    assert user.email.endswith("@example.com")


async def test_role_defaults_to_follower(auth_stub, unique):
    user = await register(auth_stub, unique, role="")
    assert user.role == "FOLLOWER"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"email": ""}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"username": ""}, "username"),
        ({"username": "a b"}, "username"),
        ({"username": "x" * 33}, "username"),
        ({"password": ""}, "password"),
        ({"password": "short1"}, "password"),
        ({"password": "lettersonly"}, "password"),
        ({"password": "1234567890"}, "password"),
        ({"password": "Password1" + "x" * 70}, "password"),
        ({"role": "ADMIN"}, "role"),
        ({"role": "admin"}, "role"),
        ({"role": "TRADER"}, "role"),
        ({"iifl_account_id": "DROP TABLE users;--"}, "iifl_account_id"),
        ({"full_name": "bad\x00name"}, "full_name"),
    ],
)
async def test_register_rejects_bad_input_naming_the_field(auth_stub, unique, fields, field):
    error = await expect_error(register(auth_stub, unique, **fields), Code.INVALID_ARGUMENT, field)
    assert error.details().startswith(f"{field}:")


async def test_register_admin_is_refused_and_nothing_is_stored(auth_stub, unique):
    name = unique("admin")
    await expect_error(
        register(auth_stub, unique, role="ADMIN", username=name, email=f"{name}@example.com"),
        Code.INVALID_ARGUMENT,
        "ADMIN",
    )
    await expect_error(login(auth_stub, name), Code.UNAUTHENTICATED)


async def test_taken_email_and_username_are_already_exists(auth_stub, unique):
    first = await register(auth_stub, unique)
    await expect_error(
        register(auth_stub, unique, email=first.email.upper()), Code.ALREADY_EXISTS, "email"
    )
    await expect_error(
        register(auth_stub, unique, username=first.username.upper()), Code.ALREADY_EXISTS, "username"
    )


async def test_login_by_username_or_email_gives_working_tokens(auth_stub, unique):
    user = await register(auth_stub, unique)
    for name in (user.username, user.email):
        grant = await login(auth_stub, name)
        assert grant.token_type == "bearer"
        assert grant.expires_in == 900
        assert grant.user.id == user.id
        me = await auth_stub.GetMe(auth_pb2.GetMeRequest(), metadata=bearer(grant.access_token))
        assert me.user.username == user.username


async def test_wrong_password_and_unknown_user_get_the_same_answer(auth_stub, unique):
    user = await register(auth_stub, unique)
    wrong = await expect_error(login(auth_stub, user.username, "Wrong12345"), Code.UNAUTHENTICATED)
    unknown = await expect_error(login(auth_stub, unique("nobody")), Code.UNAUTHENTICATED)
    assert wrong.details() == unknown.details()


async def test_sixth_failed_login_for_a_username_is_throttled(auth_stub, unique):
    user = await register(auth_stub, unique)
    for attempt in range(5):
        await expect_error(
            login(auth_stub, user.username, "Wrong12345", address=f"10.9.{attempt}.1"), Code.UNAUTHENTICATED
        )
    await expect_error(login(auth_stub, user.username, "Wrong12345"), Code.RESOURCE_EXHAUSTED, "try again")
    # Even the right password waits until the window passes: that is the point of the throttle.
    await expect_error(login(auth_stub, user.username), Code.RESOURCE_EXHAUSTED)


async def test_failed_logins_are_throttled_per_client_address(base_settings, unique):
    import grpc as grpc_module

    from copytrade.auth.v1 import auth_pb2_grpc
    from services.auth.server import AuthProcess

    strict = base_settings.model_copy(update={"login_failures_per_address": 3})
    process = AuthProcess(strict)
    port = await process.grpc.start(host="127.0.0.1", port=0)
    try:
        async with grpc_module.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            address = f"10.{int(time.time()) % 200}.{unique('')[-3:].encode()[0]}.7"
            for _ in range(3):
                await expect_error(login(stub, unique("ghost"), "Wrong12345", address=address), Code.UNAUTHENTICATED)
            # A fresh username from the same address is refused: the address is what is throttled.
            await expect_error(login(stub, unique("ghost"), "Wrong12345", address=address), Code.RESOURCE_EXHAUSTED)
    finally:
        await process.grpc.stop(drain_seconds=0, grace_seconds=0)
        await process.close()


async def test_missing_login_fields_are_invalid_argument(auth_stub):
    await expect_error(login(auth_stub, "", "x"), Code.INVALID_ARGUMENT, "username")
    await expect_error(login(auth_stub, "someone", ""), Code.INVALID_ARGUMENT, "password")


@pytest.mark.parametrize(
    ("content_type", "body_template"),
    [
        ("application/x-www-form-urlencoded", "username={name}&password=Password123%21"),
        ("application/x-www-form-urlencoded; charset=utf-8", "grant_type=password&username={name}&password=Password123!"),
        ("application/json", '{{"username": "{name}", "password": "Password123!"}}'),
    ],
)
async def test_seed_login_accepts_form_and_json_bodies(auth_stub, unique, content_type, body_template):
    user = await register(auth_stub, unique)
    body = auth_pb2.LoginWithHttpBodyRequest()
    body.http_body.content_type = content_type
    body.http_body.data = body_template.format(name=user.username).encode()
    grant = await auth_stub.LoginWithHttpBody(body)
    assert grant.access_token and grant.token_type == "bearer"


@pytest.mark.parametrize(
    ("content_type", "data", "field"),
    [
        ("text/plain", b"username=a&password=b", "content_type"),
        ("application/json", b"{not json", "body"),
        ("application/json", b"[1, 2]", "body"),
        ("application/json", b'{"username": 5, "password": "x"}', "username"),
        ("application/x-www-form-urlencoded", b"\xff\xfe", "body"),
    ],
)
async def test_seed_login_rejects_bad_bodies(auth_stub, content_type, data, field):
    body = auth_pb2.LoginWithHttpBodyRequest()
    body.http_body.content_type = content_type
    body.http_body.data = data
    await expect_error(auth_stub.LoginWithHttpBody(body), Code.INVALID_ARGUMENT, field)


async def test_refresh_rotates_and_the_old_token_is_dead(auth_stub, unique):
    user = await register(auth_stub, unique)
    grant = await login(auth_stub, user.username)
    renewed = await auth_stub.Refresh(auth_pb2.RefreshRequest(refresh_token=grant.refresh_token))
    assert renewed.refresh_token != grant.refresh_token
    await auth_stub.GetMe(auth_pb2.GetMeRequest(), metadata=bearer(renewed.access_token))
    await expect_error(
        auth_stub.Refresh(auth_pb2.RefreshRequest(refresh_token=grant.refresh_token)), Code.UNAUTHENTICATED
    )
    await expect_error(auth_stub.Refresh(auth_pb2.RefreshRequest()), Code.INVALID_ARGUMENT, "refresh_token")


async def test_refresh_token_is_not_an_access_token(auth_stub, unique):
    user = await register(auth_stub, unique)
    grant = await login(auth_stub, user.username)
    await expect_error(
        auth_stub.GetMe(auth_pb2.GetMeRequest(), metadata=bearer(grant.refresh_token)), Code.UNAUTHENTICATED
    )


async def test_logout_revokes_access_and_refresh_tokens(auth_stub, unique):
    user = await register(auth_stub, unique)
    grant = await login(auth_stub, user.username)
    reply = await auth_stub.Logout(
        auth_pb2.LogoutRequest(refresh_token=grant.refresh_token), metadata=bearer(grant.access_token)
    )
    assert reply.revoked
    await expect_error(
        auth_stub.GetMe(auth_pb2.GetMeRequest(), metadata=bearer(grant.access_token)), Code.UNAUTHENTICATED, "revoked"
    )
    await expect_error(
        auth_stub.Refresh(auth_pb2.RefreshRequest(refresh_token=grant.refresh_token)), Code.UNAUTHENTICATED
    )


async def test_logout_needs_a_token(auth_stub):
    await expect_error(auth_stub.Logout(auth_pb2.LogoutRequest()), Code.UNAUTHENTICATED)


async def test_get_me_refuses_missing_forged_expired_and_unsigned_tokens(auth_stub, base_settings, unique):
    user = await register(auth_stub, unique)
    good = (await login(auth_stub, user.username)).access_token
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = jwt.encode(claims, "x" * 40, algorithm="HS256")
    expired, _ = issue_access_token(base_settings, user.id, user.role, now=time.time() - 3600)
    unsigned = jwt.encode(claims, None, algorithm="none")
    tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    await expect_error(auth_stub.GetMe(auth_pb2.GetMeRequest()), Code.UNAUTHENTICATED, "missing")
    for token in (forged, expired, unsigned, tampered, "garbage"):
        await expect_error(auth_stub.GetMe(auth_pb2.GetMeRequest(), metadata=bearer(token)), Code.UNAUTHENTICATED)


async def test_token_for_a_user_that_does_not_exist_is_refused(auth_stub, base_settings):
    ghost, _ = issue_access_token(base_settings, 9_000_000_000, "FOLLOWER")
    await expect_error(auth_stub.GetMe(auth_pb2.GetMeRequest(), metadata=bearer(ghost)), Code.UNAUTHENTICATED)


async def test_platform_health_reports_real_dependencies(platform_stub):
    from copytrade.platform.v1 import platform_pb2

    health = await platform_stub.GetHealth(platform_pb2.GetHealthRequest())
    states = {d.name: d.status for d in health.dependencies}
    assert states["postgres"] == states["redis"] == states["nats"] == "ok"
    # The other services are not running in this tier, and health says so instead of lying.
    assert states["orders"] == "down"
    assert health.status == "degraded"
    assert health.version and health.environment == "development"
