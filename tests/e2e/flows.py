"""Steps a user takes through Envoy, shared by the end-to-end tests of the copy-trading path."""

import asyncio

PASSWORD = "Password123!"


async def register_and_login(rest, unique, role: str) -> dict:
    """A new user of `role`: their id and the headers that carry their access token."""
    name = unique(role.lower()[:4])
    body = {"email": f"{name}@example.com", "username": name, "password": PASSWORD, "role": role}
    assert (await rest.post("/api/users/register", json=body)).status_code == 200
    grant = await rest.post("/api/users/login", data={"username": name, "password": PASSWORD})
    assert grant.status_code == 200, grant.text
    user = grant.json()
    return {"id": user["user"]["id"], "headers": {"Authorization": f"Bearer {user['access_token']}"}}


async def link_and_follow(rest, unique, follower: dict, master: dict, strategy: dict) -> None:
    """The follower links an XTS account (the mock logs it in) and follows the master."""
    app_key = unique("K")
    linked = await rest.post(
        "/api/broker/accounts",
        json={"dialect": "XTS", "client_code": app_key, "app_key": app_key, "app_secret": "s3cret"},
        headers=follower["headers"],
    )
    assert linked.status_code == 200, linked.text
    assert linked.json()["account"]["status"] == "LINKED"
    followed = await rest.post(
        "/api/masters/follow", json={"master_id": int(master["id"]), **strategy}, headers=follower["headers"]
    )
    assert followed.status_code == 200, followed.text


async def eventually(probe, accept, timeout: float = 20.0):
    """`await probe()` until `accept` takes its result or the time is up; the last result either way."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await probe()
        if accept(result) or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.2)


async def place_market_buy(rest, headers: dict, symbol: str, quantity: int) -> str:
    """A master's MARKET buy through Envoy's REST API; the new order's id."""
    placed = await rest.post(
        "/api/orders/place",
        json={"symbol": symbol, "side": "BUY", "order_type": "MARKET", "quantity": quantity},
        headers=headers,
    )
    assert placed.status_code == 200, placed.text
    return placed.json()["order"]["id"]
