"""Bad input through Envoy's REST surface: a 4xx with a JSON body naming what is wrong, never a 5xx."""

import base64
import json
import time

import httpx
import jwt
import pytest

pytestmark = pytest.mark.e2e

PASSWORD = "Password123!"


def registration(unique, **overrides):
    name = unique("rest")
    body = {"email": f"{name}@example.com", "username": name, "password": PASSWORD, "role": "MASTER"}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"email": None}, "email"),
        ({"username": None}, "username"),
        ({"password": None}, "password"),
        ({"email": "not-an-email"}, "email"),
        ({"password": "weak"}, "password"),
        ({"password": "nodigitshere"}, "password"),
        ({"role": "ADMIN"}, "role"),
        ({"role": "SUPERUSER"}, "role"),
    ],
)
async def test_register_bad_input_is_400_naming_the_field(rest, unique, overrides, field):
    response = await rest.post("/api/users/register", json=registration(unique, **overrides))
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == 3
    assert body["message"].startswith(f"{field}:")
    assert body["details"][0]["field_violations"][0]["field"] == field


async def test_register_taken_email_or_username_is_409(rest, unique, registered_user):
    taken_email = registration(unique, email=registered_user["email"])
    response = await rest.post("/api/users/register", json=taken_email)
    assert response.status_code == 409 and response.json()["message"].startswith("email:")
    taken_name = registration(unique, username=registered_user["username"])
    response = await rest.post("/api/users/register", json=taken_name)
    assert response.status_code == 409 and response.json()["message"].startswith("username:")


async def test_malformed_json_and_wrong_types_are_4xx(rest):
    response = await rest.post(
        "/api/users/register", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    response = await rest.post("/api/users/register", json={"email": ["a"], "username": {"x": 1}})
    assert response.status_code == 400


async def test_wrong_password_is_401(rest, registered_user):
    response = await rest.post(
        "/api/users/login", data={"username": registered_user["username"], "password": "Wrong12345"}
    )
    assert response.status_code == 401
    assert response.json()["message"] == "incorrect username or password"


async def test_sixth_failed_login_within_a_minute_is_429(rest, registered_user):
    codes = []
    for _ in range(6):
        response = await rest.post(
            "/api/users/login", data={"username": registered_user["username"], "password": "Wrong12345"}
        )
        codes.append(response.status_code)
    assert codes == [401] * 5 + [429]
    assert "try again" in response.json()["message"]


def _unsigned(claims: dict) -> str:
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


async def test_bad_tokens_are_401(rest, stack, logged_in):
    token = logged_in["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    expired = jwt.encode({**claims, "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600},
                         stack.settings.jwt_secret, algorithm="HS256")
    cases = {
        "no token": {},
        "tampered": {"authorization": f"Bearer {token[:-3]}abc"},
        "forged": {"authorization": f"Bearer {jwt.encode(claims, 'f' * 40, algorithm='HS256')}"},
        "expired": {"authorization": f"Bearer {expired}"},
        "alg none": {"authorization": f"Bearer {_unsigned(claims)}"},
        "refresh token": {"authorization": f"Bearer {logged_in['refresh_token']}"},
    }
    for case, headers in cases.items():
        response = await rest.get("/api/users/me", headers=headers)
        assert response.status_code == 401, (case, response.status_code, response.text)
        assert "message" in response.json(), case


async def test_token_after_logout_is_401(rest, logged_in):
    auth = {"authorization": f"Bearer {logged_in['access_token']}"}
    assert (await rest.get("/api/users/me", headers=auth)).status_code == 200
    response = await rest.post("/api/users/logout", headers=auth, json={"refresh_token": logged_in["refresh_token"]})
    assert response.status_code == 200 and response.json()["revoked"] is True
    response = await rest.get("/api/users/me", headers=auth)
    assert response.status_code == 401
    assert "revoked" in response.json()["message"]
    response = await rest.post("/api/users/refresh", json={"refresh_token": logged_in["refresh_token"]})
    assert response.status_code == 401


async def test_refresh_through_envoy(rest, logged_in):
    response = await rest.post("/api/users/refresh", json={"refresh_token": logged_in["refresh_token"]})
    assert response.status_code == 200
    renewed = response.json()
    me = await rest.get("/api/users/me", headers={"authorization": f"Bearer {renewed['access_token']}"})
    assert me.status_code == 200


async def test_unknown_path_is_404_not_5xx(rest):
    response = await rest.get("/api/nothing-here")
    assert response.status_code == 404


async def test_declared_but_unbuilt_rpcs_need_a_token_first(rest):
    # Everything but register, login, refresh, health and docs is behind the token check.
    response = await rest.get("/api/orders/my-orders")
    assert response.status_code == 401


async def test_oversize_body_is_413(rest):
    response = await rest.post(
        "/api/users/register", content=b'{"email": "' + b"a" * (2 * 1024 * 1024) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413


async def test_http2_rest_client_works_too(stack):
    async with httpx.AsyncClient(base_url=stack.envoy_url, http2=True) as client:
        response = await client.get("/health")
    assert response.status_code == 200
