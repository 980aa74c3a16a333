"""Privilege escalation: nobody registers as ADMIN (or SERVICE), changes their own role, or trades as
a master without being one."""

import grpc
import pytest

from copytrade.auth.v1 import auth_pb2
from copytrade.orders.v1 import orders_pb2, orders_pb2_grpc
from tests.security.actors import PASSWORD, grpc_code, with_claims

pytestmark = pytest.mark.e2e

PRIVILEGED_ROLES = [
    "ADMIN", "admin", " Admin ", "ADMIN\u0000", "SERVICE", "service", "ＡＤＭＩＮ", "ADMİN", "MASTER,ADMIN",
    "MASTER ADMIN", "ROOT", "SUPERUSER", "0", "2",
]  # fmt: skip
ORDER = {"symbol": "RELIANCE", "side": "BUY", "order_type": "MARKET", "quantity": 1}


@pytest.mark.parametrize("role", PRIVILEGED_ROLES)
async def test_nobody_registers_with_a_privileged_or_unknown_role(rest, unique, role):
    name = unique("esc")
    response = await rest.post(
        "/api/users/register",
        json={"email": f"{name}@example.com", "username": name, "password": PASSWORD, "role": role},
    )
    assert response.status_code == 400, response.text
    assert response.json()["details"][0]["field_violations"][0]["field"] == "role"
    # Nothing was stored: the account cannot log in.
    login = await rest.post("/api/users/login", data={"username": name, "password": PASSWORD})
    assert login.status_code == 401


async def test_registration_ignores_fields_a_client_may_not_set(rest, unique):
    name = unique("smug")
    response = await rest.post(
        "/api/users/register",
        json={
            "email": f"{name}@example.com", "username": name, "password": PASSWORD, "role": "FOLLOWER",
            "id": "1", "balance": "99999999.00", "is_active": True, "created_at": "2000-01-01T00:00:00Z",
            "user": {"role": "ADMIN"}, "roles": ["ADMIN"], "is_admin": True,
        },
    )  # fmt: skip
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        user = response.json()
        assert (user["role"], user["balance"]) == ("FOLLOWER", "10000.00")
        assert user["created_at"] != "2000-01-01T00:00:00Z"
        grant = (await rest.post("/api/users/login", data={"username": name, "password": PASSWORD})).json()
        me = await rest.get("/api/users/me", headers={"Authorization": f"Bearer {grant['access_token']}"})
        assert me.json()["user"]["role"] == "FOLLOWER"


async def test_no_request_changes_ones_own_role(stack, rest, actors):
    follower = await actors.user("FOLLOWER")
    change = {"role": "MASTER", "user": {"role": "ADMIN"}}
    for method in ("PATCH", "PUT", "POST"):
        for path in ("/api/users/me", "/api/users/me/role", f"/api/users/{follower.id}", "/api/users/register"):
            response = await rest.request(method, path, json={**change, "username": follower.username},
                                          headers=follower.headers)  # fmt: skip
            assert response.status_code >= 400 or path == "/api/users/register", (method, path, response.text)
    # Refresh hands out a new token for the role on record, never one the client asks for.
    refreshed = await rest.post("/api/users/refresh", json={"refresh_token": follower.refresh_token, "role": "MASTER"})
    assert refreshed.status_code == 200, refreshed.text
    new_headers = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    for headers in (follower.headers, new_headers):
        assert (await rest.get("/api/users/me", headers=headers)).json()["user"]["role"] == "FOLLOWER"
        assert (await rest.post("/api/orders/place", json=ORDER, headers=headers)).status_code == 403
    # Editing the role claim of one's own token breaks its signature.
    promoted = {"Authorization": f"Bearer {with_claims(follower.access_token, role='MASTER')}"}
    assert (await rest.post("/api/orders/place", json=ORDER, headers=promoted)).status_code == 401
    # The public API has no call that edits a user: a new one must come with its own attack tests.
    methods = {m.name for m in auth_pb2.DESCRIPTOR.services_by_name["AuthService"].methods}
    assert methods == {"Register", "Login", "LoginWithHttpBody", "Refresh", "Logout", "GetMe"}


async def test_a_follower_cannot_place_master_orders(stack, rest, actors):
    follower = await actors.user("FOLLOWER")
    for body, headers in (
        (ORDER, follower.headers),
        ({**ORDER, "idempotency_key": actors.unique("k")}, follower.headers),
        ({**ORDER, "order_type": "LIMIT", "price": 2450.5}, follower.headers),
        (ORDER, {**follower.headers, "Idempotency-Key": actors.unique("k")}),
        ({**ORDER, "is_master_order": True, "user_id": "1", "role": "MASTER"}, follower.headers),
    ):
        response = await rest.post("/api/orders/place", json=body, headers=headers)
        assert response.status_code in (400, 403), response.text
    request = orders_pb2.PlaceOrderRequest(symbol="RELIANCE", side="BUY", order_type="MARKET", quantity=1)
    for target in (stack.envoy_target, stack.grpc_target("orders")):
        async with grpc.aio.insecure_channel(target) as channel:
            stub = orders_pb2_grpc.OrderServiceStub(channel)
            assert await grpc_code(stub.PlaceOrder(request, metadata=follower.metadata)) == (
                grpc.StatusCode.PERMISSION_DENIED
            )
    # Nothing was stored for the follower.
    mine = await rest.get("/api/orders/my-orders", headers=follower.headers)
    assert mine.status_code == 200 and mine.json().get("orders", []) == []
