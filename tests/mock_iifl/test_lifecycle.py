"""Orders move on timers: accepted -> open -> (partially) filled -> complete, or rejected, or resting."""

from __future__ import annotations

from decimal import Decimal

from tests.mock_iifl.conftest import ORDER_V1, ORDER_XTS, MockClient, eventually


async def statuses_seen(mock: MockClient, token: str, order_id: str, final: str) -> list[str]:
    """Every distinct status the book shows while polling, until `final`."""
    seen: list[str] = []

    async def poll() -> str:
        status = (await mock.v1_order(token, order_id))["orderStatus"]
        if not seen or seen[-1] != status:
            seen.append(status)
        return status

    await eventually(poll, lambda status: status == final)
    return seen


async def test_a_market_order_goes_received_open_complete(mock: MockClient) -> None:
    await mock.configure(lifecycle={"ack_ms": 300, "fill_ms": 300})
    token = await mock.v1_session("LC1")
    order_id = (await mock.v1_place(token, ORDER_V1)).body["result"][0]["brokerOrderId"]
    assert await statuses_seen(mock, token, order_id, "COMPLETE") == [
        "PUT ORDER REQ RECEIVED",
        "OPEN",
        "COMPLETE",
    ]
    row = await mock.v1_order(token, order_id)
    assert (row["filledQuantity"], row["pendingQuantity"], row["averageTradedPrice"]) == ("5", "0", "1412.30")
    assert row["exchangeOrderId"]
    trades = (await mock.call("GET", "/v1/trades", token=token)).body["result"]
    assert [(t["brokerOrderId"], t["filledQuantity"], t["tradedPrice"]) for t in trades] == [
        (order_id, "5", "1412.30")
    ]
    (position,) = (await mock.call("GET", "/v1/positions", token=token)).body["result"]
    assert (position["netQuantity"], position["netAveragePrice"], position["product"]) == (
        "5",
        "1412.30",
        "INTRADAY",
    )


async def test_partial_fills_show_before_complete_and_each_is_a_trade(mock: MockClient) -> None:
    await mock.configure(
        faults={"partial_fill": 1.0}, lifecycle={"ack_ms": 30, "fill_ms": 250, "partial_parts": 3}
    )
    token = await mock.v1_session("PF1")
    order_id = (await mock.v1_place(token, {**ORDER_V1, "quantity": "90"})).body["result"][0]["brokerOrderId"]
    seen = await statuses_seen(mock, token, order_id, "COMPLETE")
    assert seen[-2:] == ["PARTIALLY FILLED", "COMPLETE"]
    trades = (await mock.call("GET", "/v1/trades", token=token)).body["result"]
    assert len(trades) >= 2
    assert sum(int(t["filledQuantity"]) for t in trades) == 90
    assert (await mock.inspect())["stats"]["faults"]["partial_fill"] == 1


async def test_ioc_with_partial_fill_cancels_the_rest(mock: MockClient) -> None:
    await mock.configure(
        faults={"partial_fill": 1.0}, lifecycle={"ack_ms": 10, "fill_ms": 10, "partial_parts": 2}
    )
    token = await mock.v1_session("IOC1")
    order_id = (await mock.v1_place(token, {**ORDER_V1, "quantity": "10", "validity": "IOC"})).body["result"][
        0
    ]["brokerOrderId"]
    row = await eventually(lambda: mock.v1_order(token, order_id), lambda r: r["orderStatus"] == "cancelled")
    assert 0 < int(row["filledQuantity"]) < 10
    assert int(row["filledQuantity"]) + int(row["cancelledQuantity"]) == 10


async def test_a_limit_order_rests_until_the_price_reaches_it(mock: MockClient) -> None:
    token = await mock.v1_session("LIM1")
    order = {**ORDER_V1, "orderType": "LIMIT", "price": "1400.00", "marketProtectionPercent": "0"}
    order_id = (await mock.v1_place(token, order)).body["result"][0]["brokerOrderId"]
    await eventually(lambda: mock.v1_order(token, order_id), lambda r: r["orderStatus"] == "OPEN")
    ioc = (await mock.v1_place(token, {**order, "validity": "IOC"})).body["result"][0]["brokerOrderId"]
    await eventually(lambda: mock.v1_order(token, ioc), lambda r: r["orderStatus"] == "cancelled")
    assert (await mock.v1_order(token, order_id))["orderStatus"] == "OPEN"
    await mock.control("POST", "prices", {"NSEEQ:2885": "1399.90"})
    row = await eventually(lambda: mock.v1_order(token, order_id), lambda r: r["orderStatus"] == "COMPLETE")
    assert row["averageTradedPrice"] == "1399.90"  # filled at the market, at or better than the limit


async def test_a_stop_limit_waits_for_its_trigger(mock: MockClient) -> None:
    token = await mock.v1_session("SL1")
    stop = {
        **ORDER_V1,
        "transactionType": "SELL",
        "orderType": "SL",
        "price": "1380.00",
        "slTriggerPrice": "1390.00",
        "marketProtectionPercent": "0",
    }
    order_id = (await mock.v1_place(token, stop)).body["result"][0]["brokerOrderId"]
    await eventually(lambda: mock.v1_order(token, order_id), lambda r: r["orderStatus"] == "TRIGGER_PENDING")
    await mock.control("POST", "prices", {"NSEEQ:2885": "1389.00"})
    row = await eventually(lambda: mock.v1_order(token, order_id), lambda r: r["orderStatus"] == "COMPLETE")
    assert row["averageTradedPrice"] == "1389.00"


async def test_short_funds_get_the_order_rejected_by_rms_after_acceptance(mock: MockClient) -> None:
    token = await mock.v1_session("POOR1", funds="1000.00")
    # DELIVERY blocks the full value: 5 x 1412.30 is more than 1000.
    reply = await mock.v1_place(token, {**ORDER_V1, "product": "DELIVERY"})
    assert reply.body["result"][0]["status"] == "Success"
    order_id = reply.body["result"][0]["brokerOrderId"]
    row = await eventually(lambda: mock.v1_order(token, order_id), lambda r: r["orderStatus"] == "REJECTED")
    assert row["rejectionReason"].startswith("RMS:Margin Exceeds")
    # INTRADAY blocks a fifth: 1 x 1412.30 x 0.2 fits.
    small = (await mock.v1_place(token, {**ORDER_V1, "quantity": "1"})).body["result"][0]["brokerOrderId"]
    await eventually(lambda: mock.v1_order(token, small), lambda r: r["orderStatus"] == "COMPLETE")
    limits = (await mock.call("GET", "/v1/limits", token=token)).body["result"]
    assert (limits["utilizedMargin"], limits["availableMargin"]) == ("282.46", "717.54")


async def test_exchange_reject_fault_rejects_in_the_book_on_both_dialects(mock: MockClient) -> None:
    await mock.configure(faults={"exchange_reject": 1.0})
    token = await mock.v1_session("XR1")
    order_id = (await mock.v1_place(token, ORDER_V1)).body["result"][0]["brokerOrderId"]
    row = await eventually(lambda: mock.v1_order(token, order_id), lambda r: r["orderStatus"] == "REJECTED")
    assert row["rejectionReason"]
    xts = await mock.xts_session("xr-key")
    app_id = (await mock.xts("POST", "orders", xts, json={**ORDER_XTS, "orderUniqueIdentifier": "xr"})).body[
        "result"
    ]["AppOrderID"]
    row = await eventually(lambda: mock.xts_order(xts, app_id), lambda r: r["OrderStatus"] == "Rejected")
    assert row["CancelRejectReason"]
    assert (await mock.inspect())["stats"]["faults"]["exchange_reject"] == 2


async def test_futures_fill_in_lots_and_show_in_positions(mock: MockClient) -> None:
    token = await mock.v1_session("FUT1")
    future = {
        **ORDER_V1,
        "exchange": "NSEFO",
        "instrumentId": "53220",
        "product": "NORMAL",
        "quantity": "60",
        "transactionType": "SELL",
    }
    order_id = (await mock.v1_place(token, future)).body["result"][0]["brokerOrderId"]
    await eventually(lambda: mock.v1_order(token, order_id), lambda r: r["orderStatus"] == "COMPLETE")
    (position,) = (await mock.call("GET", "/v1/positions", token=token)).body["result"]
    assert (position["netQuantity"], position["tradingSymbol"]) == ("-60", "BANKNIFTY26DECFUT")
    limits = (await mock.call("GET", "/v1/limits", token=token)).body["result"]
    assert Decimal(limits["utilizedMargin"]) == Decimal("59480.00") * 60 * Decimal("0.15")
