"""XTS orders: place, modify (every field), cancel by query, books, positions, dedupe by identifier."""

from __future__ import annotations

from decimal import Decimal

from tests.mock_iifl.conftest import ORDER_XTS, MockClient, eventually

LIMIT_AWAY = {**ORDER_XTS, "orderType": "LIMIT", "limitPrice": 1300.0}


def modify_body(app_order_id: int, **changes: object) -> dict:
    return {
        "appOrderID": app_order_id,
        "modifiedProductType": "MIS",
        "modifiedOrderType": "LIMIT",
        "modifiedOrderQuantity": 5,
        "modifiedDisclosedQuantity": 0,
        "modifiedLimitPrice": 1300.0,
        "modifiedStopPrice": 0,
        "modifiedTimeInForce": "DAY",
        "orderUniqueIdentifier": "x1",
        **changes,
    }


async def test_place_returns_an_integer_app_order_id_and_echoes_the_identifier(mock: MockClient) -> None:
    token = await mock.xts_session("xk1")
    reply = await mock.xts("POST", "orders", token, json={**ORDER_XTS, "orderUniqueIdentifier": "cid42"})
    assert reply.status == 200
    assert (reply.body["type"], reply.body["code"]) == ("success", "s-orders-0001")
    result = reply.body["result"]
    assert isinstance(result["AppOrderID"], int)
    assert result["OrderUniqueIdentifier"] == "cid42"
    row = await eventually(
        lambda: mock.xts_order(token, result["AppOrderID"]), lambda r: r["OrderStatus"] == "Filled"
    )
    assert (row["ExchangeSegment"], row["ExchangeInstrumentID"], row["OrderUniqueIdentifier"]) == (
        "NSECM",
        2885,
        "cid42",
    )
    assert (row["CumulativeQuantity"], row["LeavesQuantity"]) == (5, 0)
    assert Decimal(row["OrderAverageTradedPrice"]) == Decimal("1412.30")


async def test_segment_by_number_and_refusals_are_http_400(mock: MockClient) -> None:
    token = await mock.xts_session("xk2")
    by_number = await mock.xts(
        "POST", "orders", token, json={**ORDER_XTS, "exchangeSegment": 1, "orderUniqueIdentifier": "n1"}
    )
    assert by_number.body["type"] == "success"
    cases = {
        "stop market": {"orderType": "STOPMARKET", "stopPrice": 1400.0},
        "unknown segment": {"exchangeSegment": "MCXFO"},
        "no identifier": {"orderUniqueIdentifier": ""},
        "bad product": {"productType": "INTRADAY"},
        "off tick": {"orderType": "LIMIT", "limitPrice": 1400.05},
    }
    for name, change in cases.items():
        reply = await mock.xts(
            "POST", "orders", token, json={"orderUniqueIdentifier": "r1", **ORDER_XTS, **change}
        )
        assert (reply.status, reply.body["type"], reply.body["code"]) == (400, "error", "e-orders-0005"), name
    not_json = await mock.xts("POST", "orders", token, json=[1, 2])
    assert (not_json.status, not_json.body["code"]) == (400, "e-request-0001")


async def test_modify_needs_every_field_and_cancel_goes_by_query(mock: MockClient) -> None:
    token = await mock.xts_session("xk3")
    placed = await mock.xts("POST", "orders", token, json={**LIMIT_AWAY, "orderUniqueIdentifier": "x1"})
    app_id = placed.body["result"]["AppOrderID"]
    await eventually(lambda: mock.xts_order(token, app_id), lambda r: r["OrderStatus"] == "New")
    partial = {key: value for key, value in modify_body(app_id).items() if key != "modifiedStopPrice"}
    assert (await mock.xts("PUT", "orders", token, json=partial)).status == 400
    modified = await mock.xts(
        "PUT", "orders", token, json=modify_body(app_id, modifiedOrderQuantity=9, modifiedLimitPrice=1301.5)
    )
    assert modified.body["code"] == "s-orders-0002"
    row = await mock.xts_order(token, app_id)
    assert (row["OrderQuantity"], row["OrderPrice"], row["OrderStatus"]) == (9, 1301.5, "Replaced")
    cancelled = await mock.xts(
        "DELETE", "orders", token, params={"appOrderID": str(app_id), "orderUniqueIdentifier": "x1"}
    )
    assert (cancelled.body["code"], cancelled.body["result"]["AppOrderID"]) == ("s-orders-0003", app_id)
    assert (await mock.xts_order(token, app_id))["OrderStatus"] == "PendingCancel"
    row = await eventually(lambda: mock.xts_order(token, app_id), lambda r: r["OrderStatus"] == "Cancelled")
    assert row["LeavesQuantity"] == 0
    again = await mock.xts("DELETE", "orders", token, params={"appOrderID": str(app_id)})
    assert (again.status, again.body["code"]) == (400, "e-orders-0005")
    history = await mock.xts("GET", "orders", token, params={"appOrderID": str(app_id)})
    assert [r["OrderStatus"] for r in history.body["result"]] == [
        "PendingNew",
        "New",
        "Replaced",
        "Cancelled",
    ]


async def test_trades_and_positions_follow_fills(mock: MockClient) -> None:
    token = await mock.xts_session("xk4")
    assert (await mock.xts("GET", "orders/trades", token)).body["result"] == []
    assert (await mock.xts("GET", "portfolio/positions", token, params={"dayOrNet": "NetWise"})).body[
        "result"
    ] == {"positionList": []}
    buy = await mock.xts(
        "POST", "orders", token, json={**ORDER_XTS, "orderQuantity": 10, "orderUniqueIdentifier": "b1"}
    )
    sell = await mock.xts(
        "POST", "orders", token, json={**ORDER_XTS, "orderSide": "SELL", "orderUniqueIdentifier": "s1"}
    )
    for reply in (buy, sell):
        await eventually(
            lambda app_id=reply.body["result"]["AppOrderID"]: mock.xts_order(token, app_id),
            lambda r: r["OrderStatus"] == "Filled",
        )
    trades = (await mock.xts("GET", "orders/trades", token)).body["result"]
    assert sorted((t["OrderSide"], t["LastTradedQuantity"], t["LastTradedPrice"]) for t in trades) == [
        ("BUY", 10, 1412.3),
        ("SELL", 5, 1412.3),
    ]
    positions = (await mock.xts("GET", "portfolio/positions", token, params={"dayOrNet": "NetWise"})).body
    (position,) = positions["result"]["positionList"]
    assert (position["Quantity"], position["ProductType"], position["OpenBuyQuantity"]) == ("5", "MIS", "10")
    assert positions["code"] == "s-portfolio-0005"


async def test_a_repeated_identifier_in_one_session_returns_the_first_order(mock: MockClient) -> None:
    token = await mock.xts_session("xk5")
    order = {**ORDER_XTS, "orderUniqueIdentifier": "once"}
    first = (await mock.xts("POST", "orders", token, json=order)).body["result"]["AppOrderID"]
    assert (await mock.xts("POST", "orders", token, json=order)).body["result"]["AppOrderID"] == first
    assert len((await mock.xts("GET", "orders", token)).body["result"]) == 1
    account = await mock.account("xts", "xk5")
    assert (
        account["orders"]["count"],
        account["orders"]["duplicates"],
        account["requests"]["dedupe_hits"],
    ) == (1, 0, 1)
