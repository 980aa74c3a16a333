"""Each injected fault is observable, and for writes the mock decides whether the order was placed first."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.mock_iifl.conftest import ORDER_V1, ORDER_XTS, MockClient

PLACE_ONLY = {"applies_to": ["place"]}


async def orders_of(mock: MockClient, client_id: str) -> int:
    return (await mock.account("iifl_v1", client_id))["orders"]["count"]


@pytest.mark.parametrize("placed", [0.0, 1.0])
async def test_http_5xx_is_an_html_error_and_the_order_may_or_may_not_exist(
    mock: MockClient, placed: float
) -> None:
    await mock.configure(
        faults={**PLACE_ONLY, "http_5xx": 1.0, "placed_before_fault": placed, "http_5xx_statuses": [502]}
    )
    token = await mock.v1_session("F5XX")
    reply = await mock.v1_place(token, {**ORDER_V1, "orderTag": "t5xx"})
    assert reply.status == 502
    assert "<html>" in reply.text
    assert await orders_of(mock, "F5XX") == int(placed)
    faults = (await mock.inspect())["stats"]["faults"]
    assert faults["http_5xx"] == 1
    assert faults.get("placed_before_fault", 0) == int(placed)


async def test_a_dropped_connection_has_no_answer_and_a_retry_with_the_tag_is_not_doubled(
    mock: MockClient,
) -> None:
    await mock.configure(faults={**PLACE_ONLY, "drop": 1.0, "placed_before_fault": 1.0})
    token = await mock.v1_session("FDROP")
    order = {**ORDER_V1, "orderTag": "drop1"}
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await mock.v1_place(token, order)
    assert await orders_of(mock, "FDROP") == 1
    await mock.configure(faults={})
    retried = await mock.v1_place(token, order)
    assert retried.body["result"][0]["status"] == "Success"
    account = await mock.account("iifl_v1", "FDROP")
    assert (
        account["orders"]["count"],
        account["orders"]["duplicates"],
        account["requests"]["dedupe_hits"],
    ) == (1, 0, 1)
    assert (await mock.inspect())["stats"]["faults"]["drop"] == 1


async def test_a_timeout_holds_the_request_past_the_client_then_closes(mock: MockClient) -> None:
    await mock.configure(
        faults={**PLACE_ONLY, "timeout": 1.0, "placed_before_fault": 0.0, "timeout_hold_seconds": 1.0}
    )
    token = await mock.v1_session("FTIME")
    with pytest.raises(asyncio.TimeoutError):
        await mock.call("POST", "/v1/orders", token=token, json=[ORDER_V1], timeout=0.3)
    started = time.monotonic()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await mock.v1_place(token, ORDER_V1)
    assert time.monotonic() - started >= 0.9
    assert await orders_of(mock, "FTIME") == 0
    assert (await mock.inspect())["stats"]["faults"]["timeout"] == 2


async def test_transport_faults_spare_groups_not_listed(mock: MockClient) -> None:
    await mock.configure(faults={**PLACE_ONLY, "http_5xx": 1.0})
    token = await mock.v1_session("FREAD")
    assert (await mock.call("GET", "/v1/orders", token=token)).status == 200
    await mock.configure(faults={"http_5xx": 1.0})  # the default groups include the reads
    assert (await mock.call("GET", "/v1/orders", token=token)).status >= 500


async def test_ec003_refuses_place_and_modify_without_effect(mock: MockClient) -> None:
    token = await mock.v1_session("F003")
    limit = {**ORDER_V1, "orderType": "LIMIT", "price": "1300.00", "marketProtectionPercent": "0"}
    order_id = (await mock.v1_place(token, limit)).body["result"][0]["brokerOrderId"]
    await mock.configure(faults={"ec003": 1.0})
    item = (await mock.v1_place(token, ORDER_V1)).body["result"][0]
    assert item["status"] == "EC003"
    assert item["message"] == "Something went wrong, please try after some time"
    modify = await mock.call("PUT", f"/v1/orders/{order_id}", token=token, json={"quantity": "9"})
    assert modify.body["result"]["status"] == "EC003"
    await mock.configure(faults={})
    assert (await mock.v1_order(token, order_id))["quantity"] == "5"
    assert await orders_of(mock, "F003") == 1
    xts = await mock.xts_session("k003")
    await mock.configure(faults={"ec003": 1.0})
    reply = await mock.xts("POST", "orders", xts, json={**ORDER_XTS, "orderUniqueIdentifier": "e3"})
    assert (reply.status, reply.body["code"]) == (400, "e-orders-0003")
    assert (await mock.inspect())["stats"]["faults"]["ec003"] == 3


async def test_rms_reject_is_an_inner_error_on_v1_and_http_400_on_xts(mock: MockClient) -> None:
    await mock.configure(faults={"rms_reject": 1.0})
    token = await mock.v1_session("FRMS")
    item = (await mock.v1_place(token, ORDER_V1)).body["result"][0]
    assert item["status"] == "EC101"
    assert "Insufficient funds" in item["message"]
    xts = await mock.xts_session("krms")
    reply = await mock.xts("POST", "orders", xts, json={**ORDER_XTS, "orderUniqueIdentifier": "r1"})
    assert (reply.status, reply.body["code"]) == (400, "e-rms-0001")
    inspected = await mock.inspect()
    assert inspected["totals"]["orders"] == 0
    assert inspected["stats"]["faults"]["rms_reject"] == 2


async def test_faults_can_be_set_for_one_account(mock: MockClient) -> None:
    sick = await mock.v1_session("SICK", config={"faults": {"http_5xx": 1.0, "applies_to": ["place"]}})
    healthy = await mock.v1_session("WELL")
    assert (await mock.v1_place(sick, ORDER_V1)).status >= 500
    assert (await mock.v1_place(healthy, ORDER_V1)).status == 200


async def test_xts_drop_and_5xx(mock: MockClient) -> None:
    token = await mock.xts_session("kdrop")
    await mock.configure(faults={**PLACE_ONLY, "drop": 1.0, "placed_before_fault": 0.0})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await mock.xts("POST", "orders", token, json={**ORDER_XTS, "orderUniqueIdentifier": "d1"})
    await mock.configure(faults={**PLACE_ONLY, "http_5xx": 1.0, "http_5xx_statuses": [503]})
    assert (
        await mock.xts("POST", "orders", token, json={**ORDER_XTS, "orderUniqueIdentifier": "d2"})
    ).status == 503
    assert (await mock.account("xts", "kdrop"))["orders"]["count"] == 0


async def test_a_bad_fault_config_is_refused_with_the_field_named(mock: MockClient) -> None:
    for body in (
        {"faults": {"drop": 1.5}},
        {"faults": {"drop": 0.6, "timeout": 0.6}},
        {"faults": {"applies_to": ["everything"]}},
        {"latency": {"kind": "normal"}},
        {"nonsense": True},
    ):
        reply = await mock.call("POST", "/_mock/config", json=body)
        assert reply.status == 400, body
        assert reply.body["error"]
