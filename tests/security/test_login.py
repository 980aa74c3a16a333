"""Guessing passwords and probing for accounts: throttled, and nothing tells who exists.

What registration reveals, by design: a taken username or email is 409 naming the field that is
taken (`{"code": 6, "message": "email: is already taken", ...}`), so that a person signing up knows
what to change. That says "this email has an account" and nothing more: no id, no other field of
the existing account. Login, refresh and every other answer say nothing about who exists.
"""

import grpc
import pytest

from copytrade.auth.v1 import auth_pb2, auth_pb2_grpc
from services.auth import admin
from tests.security.actors import PASSWORD

pytestmark = pytest.mark.e2e

BAD_CREDENTIALS = {"code": 16, "message": "incorrect username or password", "details": []}
PER_USERNAME = 5  # LOGIN_FAILURES_PER_USERNAME's default, which the stack runs with


async def login(rest, username: str, password: str):
    return await rest.post("/api/users/login", data={"username": username, "password": password})


async def test_password_guessing_is_throttled_even_with_the_right_password(rest, actors):
    victim = await actors.user("FOLLOWER")
    answers = [(await login(rest, victim.username, f"Guess{n}xyz")).status_code for n in range(PER_USERNAME)]
    assert answers == [401] * PER_USERNAME
    blocked = await login(rest, victim.username, "Guess6xyz")
    assert blocked.status_code == 429, blocked.text
    assert blocked.json()["code"] == 8
    # The right password now waits too: otherwise the throttle would confirm a correct guess.
    assert (await login(rest, victim.username, PASSWORD)).status_code == 429


@pytest.mark.parametrize("spelling", ["upper", "padded", "email", "email upper"])
async def test_throttle_cannot_be_dodged_by_spelling_the_account_differently(rest, actors, spelling):
    victim = await actors.user("FOLLOWER")
    spell = {
        "upper": victim.username.upper(),
        "padded": f"  {victim.username} ",
        "email": victim.email,
        "email upper": victim.email.upper(),
    }[spelling]
    for n in range(PER_USERNAME):
        # Alternate spellings: each accepted by login, all one account, so one budget.
        name = victim.username if n % 2 else spell
        assert (await login(rest, name, f"Guess{n}xyz")).status_code == 401
    assert (await login(rest, spell, "Guess6xyz")).status_code == 429
    assert (await login(rest, victim.username, "Guess7xyz")).status_code == 429


async def test_unknown_users_are_throttled_like_real_ones(rest, unique):
    ghost = unique("ghost")
    answers = [(await login(rest, ghost, f"Guess{n}xyz")).status_code for n in range(PER_USERNAME + 1)]
    assert answers == [401] * PER_USERNAME + [429]


async def test_wrong_password_unknown_user_and_disabled_user_answer_identically(stack, rest, actors, unique):
    user = await actors.user("MASTER")
    disabled = await actors.user("MASTER")
    await admin.set_active(stack.settings, disabled.username, False)
    answers = {
        "wrong password": await login(rest, user.username, "Wrong12345"),
        "unknown user": await login(rest, unique("nobody"), "Wrong12345"),
        "unknown email": await login(rest, f"{unique('nobody')}@example.com", "Wrong12345"),
        "disabled user, right password": await login(rest, disabled.username, PASSWORD),
        "json, wrong password": await rest.post(
            "/api/users/login", json={"username": user.username, "password": "Wrong12345"}
        ),
        "json, unknown user": await rest.post(
            "/api/users/login", json={"username": unique("nobody"), "password": "Wrong12345"}
        ),
    }
    for case, response in answers.items():
        assert (response.status_code, response.json()) == (401, BAD_CREDENTIALS), case
        # No header tells them apart either (Envoy's own are the same for all).
        assert "www-authenticate" not in response.headers, case


async def test_grpc_login_answers_wrong_password_and_unknown_user_identically(stack, actors, unique):
    user = await actors.user("FOLLOWER")
    async with grpc.aio.insecure_channel(stack.envoy_target) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        errors = []
        for name in (user.username, unique("nobody")):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.Login(auth_pb2.LoginRequest(username=name, password="Wrong12345"))
            errors.append((raised.value.code(), raised.value.details()))
    assert errors[0] == errors[1] == (grpc.StatusCode.UNAUTHENTICATED, "incorrect username or password")


async def test_registration_says_which_field_is_taken_and_nothing_more(rest, actors, unique):
    existing = await actors.user("MASTER", full_name="Existing Person", iifl_account_id="EXIST01")
    fresh = unique("new")
    taken_email = await rest.post(
        "/api/users/register",
        json={"email": existing.email.upper(), "username": fresh, "password": PASSWORD, "role": "FOLLOWER"},
    )
    taken_username = await rest.post(
        "/api/users/register",
        json={"email": f"{fresh}@example.com", "username": existing.username.upper(), "password": PASSWORD},
    )
    for response, field in ((taken_email, "email"), (taken_username, "username")):
        assert response.status_code == 409, response.text
        body = response.json()
        assert body["code"] == 6
        assert body["message"] == f"{field}: is already taken"
        assert [v["field"] for v in body["details"][0]["field_violations"]] == [field]
        # Nothing of the existing account comes back: not its id, name, email, role or details.
        for secret in (existing.username, existing.email, "Existing Person", "EXIST01", "MASTER"):
            assert secret.lower() not in response.text.lower(), (field, secret)
        assert f'"{existing.id}"' not in response.text
    # Neither attempt stored anything: the fresh name is still free.
    assert (await login(rest, fresh, PASSWORD)).status_code == 401
