"""The inspection endpoint is the ground truth tests assert on; latency is drawn as configured."""

from __future__ import annotations

import time

from tests.mock_iifl.conftest import ORDER_V1, ORDER_XTS, MockClient


async def test_inspection_counts_orders_by_account_and_tag_and_the_global_counters(mock: MockClient) -> None:
    a = await mock.v1_session("INS1")
    b = await mock.xts_session("ins2")
    await mock.v1_place(a, {**ORDER_V1, "orderTag": "t1"}, {**ORDER_V1, "orderTag": "t2"}, ORDER_V1)
    await mock.v1_place(a, {**ORDER_V1, "orderTag": "t1"})  # deduplicated
    await mock.xts("POST", "orders", b, json={**ORDER_XTS, "orderUniqueIdentifier": "u1"})
    await mock.call("GET", "/v1/orders", token="nonsense")
    everything = await mock.inspect(by_tag="1")
    assert everything["totals"] == {
        "accounts": 2,
        "orders": 4,
        "duplicates": 0,
        "place_items": 5,
        "dedupe_hits": 1,
        "refused": 0,
        "trades": everything["totals"]["trades"],
    }
    by_account = {acc["client_id"]: acc for acc in everything["accounts"]}
    assert by_account["INS1"]["orders"]["by_tag"] == {"t1": 1, "t2": 1}
    assert by_account["INS1"]["orders"]["untagged"] == 1
    assert by_account["ins2"]["orders"]["by_tag"] == {"u1": 1}
    stats = everything["stats"]
    assert stats["requests"]["iifl_v1.place"] == 2
    assert stats["requests"]["xts.place"] == 1
    assert stats["events"]["auth_failures"] == 1
    assert stats["events"]["orders_created"] == 4
    one = await mock.inspect(dialect="iifl_v1", client_id="INS1")
    assert [acc["client_id"] for acc in one["accounts"]] == ["INS1"]
    assert "by_tag" not in one["accounts"][0]["orders"]


async def test_ground_truth_order_list(mock: MockClient) -> None:
    token = await mock.v1_session("INS3")
    await mock.v1_place(token, {**ORDER_V1, "orderTag": "g1"})
    (order,) = await mock.control("GET", "accounts/iifl_v1/INS3/orders")
    assert (order["tag"], order["instrument"], order["side"], order["quantity"]) == (
        "g1",
        "NSEEQ:2885",
        "BUY",
        5,
    )


async def test_reset_forgets_everything(mock: MockClient) -> None:
    token = await mock.v1_session("INS4")
    await mock.v1_place(token, ORDER_V1)
    await mock.control("POST", "prices", {"NSEEQ:2885": "1500.00"})
    await mock.control("POST", "reset", {"config": {"latency": {"kind": "zero"}}})
    assert (await mock.inspect())["totals"]["orders"] == 0
    assert (await mock.call("GET", "/v1/orders", token=token)).status == 401
    assert (await mock.control("GET", "prices"))["NSEEQ:2885"] == "1412.30"


async def test_latency_is_uniform_by_default_fixed_or_zero_and_per_account(mock: MockClient) -> None:
    await mock.configure(latency={"kind": "fixed", "ms": 120})
    token = await mock.v1_session("LAT1")
    started = time.monotonic()
    await mock.call("GET", "/v1/limits", token=token)
    assert time.monotonic() - started >= 0.12
    await mock.control("PATCH", "accounts/iifl_v1/LAT1", {"config": {"latency": {"kind": "zero"}}})
    started = time.monotonic()
    for _ in range(5):
        await mock.call("GET", "/v1/limits", token=token)
    assert time.monotonic() - started < 0.5
    await mock.configure(latency={})  # the default: uniform 50-150 ms
    other = await mock.v1_session("LAT2")
    started = time.monotonic()
    await mock.call("GET", "/v1/limits", token=other)
    assert time.monotonic() - started >= 0.05


async def test_control_errors_name_the_problem(mock: MockClient) -> None:
    missing = await mock.call("POST", "/_mock/accounts", json={"dialect": "iifl_v1"})
    assert (missing.status, missing.body["error"]) == (400, "client_id is required for an iifl_v1 account")
    await mock.v1_register("DUPE")
    assert (
        await mock.call("POST", "/_mock/accounts", json={"dialect": "iifl_v1", "client_id": "DUPE"})
    ).status == 409
    assert (await mock.call("GET", "/_mock/accounts/iifl_v1/NOBODY")).status == 404
    off_tick = await mock.call("POST", "/_mock/prices", json={"NSEEQ:2885": "1400.03"})
    assert off_tick.status == 400
    assert (await mock.call("POST", "/_mock/prices", json={"NSEEQ:1": "10.00"})).status == 404
