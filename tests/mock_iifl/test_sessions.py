"""Logins of both dialects, auto-provisioning, and the death of sessions: on demand and at midnight IST."""

from __future__ import annotations

import base64
import json

from tests.mock_iifl.conftest import ORDER_V1, MockClient


async def test_v1_login_with_the_checksum_gives_a_jwt_session(mock: MockClient) -> None:
    registered = await mock.v1_register("CLIENT1", "appsecret")
    reply = await mock.v1_login("CLIENT1", registered["auth_code"], "appsecret")
    assert reply.status == 200
    assert reply.body["status"] == "Ok"
    claims = reply.body["userSession"].split(".")[1]
    assert (
        json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["preferred_username"]
        == "CLIENT1"
    )
    limits = await mock.call("GET", "/v1/limits", token=reply.body["userSession"])
    assert limits.body["result"]["clientId"] == "CLIENT1"


async def test_v1_login_refuses_a_wrong_secret_and_a_reused_or_replaced_auth_code(mock: MockClient) -> None:
    code = (await mock.v1_register("CLIENT2", "right"))["auth_code"]
    wrong = await mock.v1_login("CLIENT2", code, "wrong")
    assert (wrong.status, wrong.body["status"], wrong.body["userSession"]) == (200, "EC801", None)
    assert (await mock.v1_login("CLIENT2", code, "right")).body["status"] == "Ok"
    assert (await mock.v1_login("CLIENT2", code, "right")).body["status"] == "EC801"  # one use only
    first = (await mock.control("POST", "accounts/iifl_v1/CLIENT2/authcode"))["auth_code"]
    second = (await mock.control("POST", "accounts/iifl_v1/CLIENT2/authcode"))["auth_code"]
    assert (await mock.v1_login("CLIENT2", first, "right")).body[
        "status"
    ] == "EC801"  # a new login replaced it
    assert (await mock.v1_login("CLIENT2", second, "right")).body["status"] == "Ok"
    stats = (await mock.inspect())["stats"]
    assert stats["events"]["login_failures"] == 3
    assert stats["events"]["sessions_created"] == 2


async def test_v1_auth_code_endpoint_auto_provisions_and_registers_the_secret(mock: MockClient) -> None:
    issued = await mock.control("POST", "v1/authcode", {"client_id": "AUTO1", "app_secret": "mine"})
    assert (await mock.v1_login("AUTO1", issued["auth_code"], "mine")).body["status"] == "Ok"
    account = await mock.account("iifl_v1", "AUTO1")
    assert account["auto_provisioned"] is True
    assert account["funds"] == "10000000.00"
    # Without a secret one is made up and handed back; a different secret later is a conflict.
    generated = await mock.control("POST", "v1/authcode", {"client_id": "AUTO2"})
    assert (await mock.v1_login("AUTO2", generated["auth_code"], generated["app_secret"])).body[
        "status"
    ] == "Ok"
    conflict = await mock.call(
        "POST", "/_mock/v1/authcode", json={"client_id": "AUTO1", "app_secret": "other"}
    )
    assert conflict.status == 409


async def test_auto_provision_off_refuses_unknown_clients(mock: MockClient) -> None:
    await mock.configure(auto_provision=False)
    reply = await mock.call("POST", "/_mock/v1/authcode", json={"client_id": "NOBODY"})
    assert reply.status == 404
    xts = await mock.xts_login("unknown-key")
    assert (xts.status, xts.body["code"]) == (400, "e-user-0005")


async def test_xts_login_auto_provisions_and_checks_the_secret(mock: MockClient) -> None:
    first = await mock.xts_login("appkey1", "s1")
    assert first.status == 200
    assert first.body["code"] == "s-user-0001"
    assert first.body["result"]["userID"] == "appkey1"
    wrong = await mock.xts_login("appkey1", "not-s1")
    assert (wrong.status, wrong.body["type"], wrong.body["code"]) == (400, "error", "e-user-0005")
    await mock.control(
        "POST", "accounts", {"dialect": "xts", "client_id": "IIFL77", "app_key": "k77", "app_secret": "s77"}
    )
    assert (await mock.xts_login("k77", "s77")).body["result"]["userID"] == "IIFL77"


async def test_xts_token_goes_without_bearer(mock: MockClient) -> None:
    token = await mock.xts_session("appkey2")
    assert (await mock.xts("GET", "orders", token)).status == 200
    with_bearer = await mock.call("GET", "/interactive/orders", token=token, bearer=True)
    assert with_bearer.status == 400
    assert with_bearer.body == {
        "type": "error",
        "code": "e-session-0007",
        "description": "Invalid Token",
        "result": {},
    }


async def test_expired_sessions_get_401_on_v1_and_e_session_0007_on_xts(mock: MockClient) -> None:
    v1 = await mock.v1_session("EXP1")
    other = await mock.v1_session("EXP2")
    xts = await mock.xts_session("expkey")
    expired = await mock.control("POST", "sessions/expire", {"dialect": "iifl_v1", "client_id": "EXP1"})
    assert expired == {"expired": 1}
    assert (await mock.call("GET", "/v1/orders", token=v1)).status == 401
    assert (await mock.v1_place(v1, ORDER_V1)).status == 401
    assert (await mock.call("GET", "/v1/limits", token=other)).status == 200
    assert (await mock.control("POST", "sessions/expire", {}))["expired"] == 2
    assert (await mock.call("GET", "/v1/limits", token=other)).status == 401
    dead = await mock.xts("GET", "orders", xts)
    assert (dead.status, dead.body["code"]) == (400, "e-session-0007")
    # The daily login gives a working session again.
    assert (await mock.call("GET", "/v1/limits", token=await mock.v1_session("EXP1"))).status == 200


async def test_sessions_die_at_midnight_ist(mock: MockClient) -> None:
    await mock.control("POST", "clock", {"set": "2026-11-24T23:59:00+05:30"})
    v1 = await mock.v1_session("NIGHT1")
    xts = await mock.xts_session("nightkey")
    assert (await mock.call("GET", "/v1/limits", token=v1)).status == 200
    await mock.control("POST", "clock", {"advance_seconds": 59})
    assert (await mock.call("GET", "/v1/limits", token=v1)).status == 200
    await mock.control("POST", "clock", {"advance_seconds": 1})
    assert (await mock.call("GET", "/v1/limits", token=v1)).status == 401
    assert (await mock.xts("GET", "orders", xts)).body["code"] == "e-session-0007"


async def test_xts_logout_ends_the_session(mock: MockClient) -> None:
    token = await mock.xts_session("logoutkey")
    assert (await mock.xts("DELETE", "user/session", token)).body["type"] == "success"
    assert (await mock.xts("GET", "orders", token)).body["code"] == "e-session-0007"
