"""IIFL Capital v1 orders: place, modify, cancel, book, history, and the rules an order must meet."""

from __future__ import annotations

import re

from tests.mock_iifl.conftest import ORDER_V1, MockClient, eventually

LIMIT_AWAY = {**ORDER_V1, "orderType": "LIMIT", "price": "1300.00", "marketProtectionPercent": "0"}


async def test_place_answers_per_item_inside_an_ok_envelope(mock: MockClient) -> None:
    token = await mock.v1_session("P1")
    reply = await mock.v1_place(token, {**ORDER_V1, "orderTag": "a1"}, {**ORDER_V1, "quantity": "0"})
    assert reply.status == 200
    assert (reply.body["status"], reply.body["message"]) == ("Ok", "Success")
    good, bad = reply.body["result"]
    assert good["status"] == "Success"
    assert re.fullmatch(r"\d{15}", good["brokerOrderId"])
    assert re.fullmatch(r"\d{2}-[A-Z][a-z]{2}-\d{4} \d{2}:\d{2}:\d{2}", good["requestTime"])
    assert bad["status"] == "EC004" and "brokerOrderId" not in bad
    row = await mock.v1_order(token, good["brokerOrderId"])
    # Numbers travel as strings.
    assert (row["quantity"], row["orderTag"], row["tradingSymbol"], row["exchange"]) == (
        "5",
        "a1",
        "RELIANCE-EQ",
        "NSEEQ",
    )
    summary = (await mock.account("iifl_v1", "P1"))["orders"]
    assert summary["count"] == 1


async def test_empty_books_come_back_as_inner_errors(mock: MockClient) -> None:
    token = await mock.v1_session("EMPTY1")
    for path, code in (
        ("/v1/orders", "EC921"),
        ("/v1/trades", "EC926"),
        ("/v1/positions", "EC920"),
        ("/v1/holdings", "EC922"),
    ):
        reply = await mock.call("GET", path, token=token)
        assert reply.status == 200
        assert reply.body["status"] == "Ok"
        assert reply.body["result"]["status"] == code, path


async def test_modify_changes_only_the_fields_sent_and_cancel_cancels(mock: MockClient) -> None:
    token = await mock.v1_session("M1")
    order_id = (await mock.v1_place(token, LIMIT_AWAY)).body["result"][0]["brokerOrderId"]
    await eventually(lambda: mock.v1_order(token, order_id), lambda row: row["orderStatus"] == "OPEN")
    modified = await mock.call("PUT", f"/v1/orders/{order_id}", token=token, json={"quantity": "8"})
    assert modified.body["result"]["status"] == "Success"
    assert modified.body["result"]["brokerOrderId"] == order_id
    row = await mock.v1_order(token, order_id)
    assert (row["quantity"], row["price"], row["orderType"]) == ("8", "1300.00", "LIMIT")
    # IIFL's own example sends the changes as a one-item array.
    await mock.call("PUT", f"/v1/orders/{order_id}", token=token, json=[{"price": "1301.10"}])
    assert (await mock.v1_order(token, order_id))["price"] == "1301.10"
    off_tick = await mock.call("PUT", f"/v1/orders/{order_id}", token=token, json={"price": "1301.15"})
    assert off_tick.body["result"]["status"] == "EC004"
    cancelled = await mock.call("DELETE", f"/v1/orders/{order_id}", token=token)
    assert cancelled.body["result"]["status"] == "Success"
    row = await eventually(
        lambda: mock.v1_order(token, order_id), lambda row: row["orderStatus"].upper() == "CANCELLED"
    )
    assert (row["cancelledQuantity"], row["pendingQuantity"]) == ("8", "0")
    again = await mock.call("DELETE", f"/v1/orders/{order_id}", token=token)
    assert again.body["result"]["status"] == "EC004"
    unknown = await mock.call("PUT", "/v1/orders/999999999999999", token=token, json={"quantity": "1"})
    assert unknown.body["result"]["status"] == "EC004"
    history = await mock.call("GET", f"/v1/orders/{order_id}", token=token)
    assert [row["orderStatus"] for row in history.body["result"]] == [
        "PUT ORDER REQ RECEIVED",
        "OPEN",
        "OPEN",
        "OPEN",
        "cancelled",
    ]


async def test_sebi_rules_refuse_bare_market_and_slm(mock: MockClient) -> None:
    token = await mock.v1_session("SEBI1")
    no_protection = {**ORDER_V1, "marketProtectionPercent": "0"}
    missing = {key: value for key, value in ORDER_V1.items() if key != "marketProtectionPercent"}
    slm = {**ORDER_V1, "orderType": "SLM", "slTriggerPrice": "1400.00"}
    stop_limit = {**ORDER_V1, "orderType": "SL", "price": "1420.00", "slTriggerPrice": "1415.00"}
    results = (await mock.v1_place(token, no_protection, missing, slm, stop_limit)).body["result"]
    assert [r["status"] for r in results] == ["EC004", "EC004", "EC004", "Success"]
    assert "marketProtectionPercent" in results[0]["message"]
    assert "SL" in results[2]["message"]


async def test_lot_tick_freeze_and_instrument_are_checked(mock: MockClient) -> None:
    token = await mock.v1_session("RULES1")
    future = {**ORDER_V1, "exchange": "NSEFO", "instrumentId": "53201", "product": "NORMAL", "quantity": "65"}
    cases = {
        "one lot of NIFTY": (future, "Success"),
        "half a lot": ({**future, "quantity": "30"}, "EC004"),
        "over the freeze quantity": ({**future, "quantity": str(65 * 28)}, "EC004"),
        "off the 0.10 tick": ({**future, "orderType": "LIMIT", "price": "26150.05"}, "EC004"),
        "unknown instrument": ({**ORDER_V1, "instrumentId": "1"}, "EC004"),
        "delivery of a future": ({**future, "product": "DELIVERY"}, "EC004"),
        "lower-case side": ({**ORDER_V1, "transactionType": "buy"}, "EC004"),
        "tag with a dash": ({**ORDER_V1, "orderTag": "a-b"}, "EC004"),
        "tag of 21 characters": ({**ORDER_V1, "orderTag": "x" * 21}, "EC004"),
        "AMO": ({**ORDER_V1, "orderComplexity": "AMO"}, "EC004"),
    }
    results = (await mock.v1_place(token, *(order for order, _ in cases.values()))).body["result"]
    assert {name: r["status"] for name, r in zip(cases, results)} == {
        name: want for name, (_, want) in cases.items()
    }
    assert (await mock.account("iifl_v1", "RULES1"))["requests"] == {
        "place_items": 10,
        "dedupe_hits": 0,
        "refused": 9,
        "modify": 0,
        "cancel": 0,
    }


async def test_malformed_bodies_are_400(mock: MockClient) -> None:
    token = await mock.v1_session("BAD1")
    assert (await mock.call("POST", "/v1/orders", token=token, json=ORDER_V1)).status == 400  # not an array
    assert (await mock.call("POST", "/v1/orders", token=token, json=[])).status == 400
    raw = await mock.http.post(
        mock.server.url + "/v1/orders", data=b"{not json", headers={"Authorization": f"Bearer {token}"}
    )
    assert raw.status == 400
    raw.release()
    assert (await mock.call("GET", "/v1/nothing", token=token)).status == 404


async def test_a_repeated_tag_in_one_session_returns_the_first_order(mock: MockClient) -> None:
    token = await mock.v1_session("DUP1")
    order = {**ORDER_V1, "orderTag": "tag1"}
    first = (await mock.v1_place(token, order)).body["result"][0]["brokerOrderId"]
    second = (await mock.v1_place(token, order)).body["result"][0]["brokerOrderId"]
    assert first == second
    assert len(await mock.v1_book(token)) == 1
    account = await mock.account("iifl_v1", "DUP1")
    assert account["orders"]["by_tag"] == {"tag1": 1}
    assert (account["orders"]["duplicates"], account["requests"]["dedupe_hits"]) == (0, 1)
    # A new session does not know the tag: the order is placed again, and the inspection says so.
    token2 = await mock.v1_session("DUP1")
    third = (await mock.v1_place(token2, order)).body["result"][0]["brokerOrderId"]
    assert third != first
    account = await mock.account("iifl_v1", "DUP1")
    assert account["orders"]["by_tag"] == {"tag1": 2}
    assert account["orders"]["duplicates"] == 1
    assert (await mock.inspect())["totals"]["duplicates"] == 1


async def test_dedupe_can_be_switched_off(mock: MockClient) -> None:
    await mock.configure(dedupe=False)
    token = await mock.v1_session("NODEDUP")
    order = {**ORDER_V1, "orderTag": "same"}
    ids = {(await mock.v1_place(token, order)).body["result"][0]["brokerOrderId"] for _ in range(3)}
    assert len(ids) == 3
    assert (await mock.account("iifl_v1", "NODEDUP"))["orders"]["duplicates"] == 2


async def test_static_ip_whitelist_refuses_writes_from_elsewhere(mock: MockClient) -> None:
    await mock.configure(enforce_ip_whitelist=True)
    away = await mock.v1_session("IP1", allowed_ips=["10.1.2.3"])
    home = await mock.v1_session("IP2", allowed_ips=["127.0.0.1"])
    refused = (await mock.v1_place(away, ORDER_V1)).body["result"][0]
    assert refused == {**refused, "status": "EC500", "message": "IP address not authorized for trading"}
    assert (await mock.v1_place(home, ORDER_V1)).body["result"][0]["status"] == "Success"
    assert (await mock.call("GET", "/v1/orders", token=away)).status == 200  # reads are not restricted
    await mock.control("PATCH", "accounts/iifl_v1/IP1", {"allowed_ips": ["127.0.0.1"]})
    assert (await mock.v1_place(away, ORDER_V1)).body["result"][0]["status"] == "Success"


async def test_contract_files_are_served_without_a_session(mock: MockClient) -> None:
    reply = await mock.call("GET", "/v1/contractfiles/NSEEQ.json")
    rows = {row["instrumentId"]: row for row in reply.body}
    assert rows["2885"]["tradingSymbol"] == "RELIANCE-EQ"
    assert rows["1594"]["lotSize"] == "1"
    futures = (await mock.call("GET", "/v1/contractfiles/NSEFO.json")).body
    assert {row["underlyingInstrumentSymbol"]: row["lotSize"] for row in futures} == {
        "NIFTY": "65",
        "BANKNIFTY": "30",
    }
    assert (await mock.call("GET", "/v1/contractfiles/MCXCOMM.json")).status == 404
