"""Orders through Envoy's REST surface: the seed's place-order curl, idempotency, reading, 400s."""

import uuid

import pytest

pytestmark = pytest.mark.e2e

SEED_ORDER = {"symbol": "RELIANCE", "side": "BUY", "order_type": "MARKET", "quantity": 10, "price": 2450.50}


def bearer(logged_in) -> dict[str, str]:
    return {"Authorization": f"Bearer {logged_in['access_token']}"}


async def test_seed_place_order_curl(rest, logged_in):
    response = await rest.post("/api/orders/place", json=SEED_ORDER, headers=bearer(logged_in))
    assert response.status_code == 200, response.text
    order = response.json()["order"]
    assert order["symbol"] == "RELIANCE" and order["side"] == "BUY" and order["quantity"] == "10"
    assert order["price"] == "2450.50" and order["status"] == "PENDING" and order["product"] == "CNC"
    assert order["user_id"] == logged_in["user"]["id"]

    mine = await rest.get("/api/orders/my-orders", headers=bearer(logged_in))
    assert mine.status_code == 200 and [o["id"] for o in mine.json()["orders"]] == [order["id"]]
    one = await rest.get(f"/api/orders/{order['id']}", headers=bearer(logged_in))
    assert one.status_code == 200 and one.json()["order"]["id"] == order["id"]
    stats = await rest.get("/api/orders/stats/summary", headers=bearer(logged_in))
    assert stats.status_code == 200, stats.text
    assert stats.json()["total_orders"] == "1" and stats.json()["orders_by_status"] == {"PENDING": "1"}


async def test_idempotency_key_header_replays_the_order(rest, logged_in):
    headers = {**bearer(logged_in), "Idempotency-Key": str(uuid.uuid4())}
    first = await rest.post("/api/orders/place", json=SEED_ORDER, headers=headers)
    again = await rest.post("/api/orders/place", json={**SEED_ORDER, "price": "2450.5"}, headers=headers)
    assert first.status_code == again.status_code == 200, again.text
    assert first.json()["order"]["id"] == again.json()["order"]["id"]
    assert again.json()["idempotent_replay"] is True
    other = await rest.post("/api/orders/place", json={**SEED_ORDER, "quantity": 11}, headers=headers)
    assert other.status_code == 409 and other.json()["message"].startswith("idempotency_key:")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"symbol": "NOSUCHSTOCK"}, "symbol"),
        ({"side": "HOLD"}, "side"),
        ({"order_type": "STOP"}, "order_type"),
        ({"product": "MTF"}, "product"),
        ({"exchange": "MCX"}, "exchange"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": 1000000}, "quantity"),
        ({"price": 2450.55}, "price"),
        ({"price": -1}, "price"),
        ({"order_type": "LIMIT", "price": None}, "price"),
        ({"order_type": "SL-M"}, "trigger_price"),
    ],
)
async def test_bad_orders_are_400_naming_the_field(rest, logged_in, overrides, field):
    body = {k: v for k, v in {**SEED_ORDER, **overrides}.items() if v is not None}
    response = await rest.post("/api/orders/place", json=body, headers=bearer(logged_in))
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["code"] == 3 and error["message"].startswith(f"{field}:")
    assert error["details"][0]["field_violations"][0]["field"] == field


async def test_someone_elses_order_is_404(rest, logged_in, unique):
    placed = await rest.post("/api/orders/place", json=SEED_ORDER, headers=bearer(logged_in))
    name = unique("other")
    await rest.post(
        "/api/users/register",
        json={"email": f"{name}@example.com", "username": name, "password": "Password123!", "role": "MASTER"},
    )
    other = (await rest.post("/api/users/login", data={"username": name, "password": "Password123!"})).json()
    response = await rest.get(f"/api/orders/{placed.json()['order']['id']}", headers=bearer(other))
    assert response.status_code == 404 and response.json()["code"] == 5
