"""Broker answers the mock does not give, fed to the adapters as canned HTTP replies: the proof of
absence must never come from a reply that is not a whole, readable order book, and a write whose
reply cannot be read is an order that may exist."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.broker_gateway.brokers import (
    BrokerSession,
    Dialect,
    OutcomeUnknown,
    Rejected,
    SessionExpired,
    Unavailable,
    make_adapter,
)
from services.broker_gateway.brokers.http import Reply, Transport
from tests.broker_gateway.test_brokers_support import MASTER, spec


class Canned(Transport):
    """Answers every request with one fixed reply; records what was asked."""

    base_url = "http://canned"

    def __init__(self, status: int, body: object) -> None:
        self.reply = Reply(status, body if isinstance(body, bytes) else json.dumps(body).encode())
        self.requests: list[tuple[str, str, bytes | None]] = []

    async def request(self, method, path, *, headers, body=None, timeout=None) -> Reply:
        self.requests.append((method, path, body))
        return self.reply

    async def warm(self, connections: int) -> int:
        return 0

    async def close(self) -> None:
        return None


def session(dialect: Dialect) -> BrokerSession:
    now = datetime.now(UTC)
    return BrokerSession(token="tok", dialect=dialect, opened_at=now, expires_at=now)


V1, XTS = Dialect.IIFL_CAPITAL_V1, Dialect.XTS


@pytest.mark.parametrize(
    ("dialect", "status", "body"),
    [
        (V1, 200, {"status": "Ok", "result": {"status": "EC003", "message": "Something went wrong"}}),
        (V1, 200, {"status": "Ok", "result": None}),
        (V1, 200, {"status": "Ok", "result": [{"orderTag": "X", "orderStatus": "OPEN"}]}),
        (V1, 200, {"status": "EC003", "message": "Something went wrong"}),
        (V1, 200, b"<html>maintenance</html>"),
        (XTS, 200, {"type": "success", "result": None}),
        (XTS, 200, {"type": "success", "result": [{"OrderUniqueIdentifier": "X"}]}),
        (XTS, 400, {"type": "error", "code": "e-orders-0003", "description": "try later"}),
        (XTS, 502, b"<html>bad gateway</html>"),
    ],
)
async def test_a_book_that_is_not_read_whole_proves_nothing(dialect, status, body) -> None:
    adapter = make_adapter(dialect, Canned(status, body), MASTER)
    with pytest.raises(Unavailable):
        await adapter.find_by_tag(session(dialect), "X")


@pytest.mark.parametrize(
    ("dialect", "body"),
    [
        (V1, {"status": "Ok", "result": {"status": "EC921", "message": "No orders found"}}),
        (V1, {"status": "EC921", "message": "No orders found"}),
        (XTS, {"type": "success", "result": []}),
    ],
)
async def test_an_empty_book_is_an_empty_list(dialect, body) -> None:
    adapter = make_adapter(dialect, Canned(200, body), MASTER)
    assert await adapter.order_book(session(dialect)) == []


@pytest.mark.parametrize(
    ("dialect", "status", "body", "error", "code"),
    [
        (V1, 502, b"<html>502</html>", OutcomeUnknown, "HTTP_502"),
        (V1, 200, b"not json", OutcomeUnknown, "HTTP_200"),
        (
            V1,
            200,
            {"status": "Ok", "result": [{"status": "Success", "message": "Success"}]},
            OutcomeUnknown,
            "NO_ORDER_ID",
        ),
        (
            V1,
            200,
            {"status": "Ok", "result": [{"status": "EC003", "message": "try later"}]},
            OutcomeUnknown,
            "EC003",
        ),
        (
            V1,
            200,
            {"status": "Ok", "result": [{"status": "EC500", "message": "IP not authorized"}]},
            Rejected,
            "EC500",
        ),
        (V1, 401, {"status": "Unauthorized"}, SessionExpired, "SESSION_EXPIRED"),
        (
            XTS,
            400,
            {"type": "error", "code": "e-orders-0003", "description": "try later"},
            OutcomeUnknown,
            "e-orders-0003",
        ),
        (
            XTS,
            400,
            {"type": "error", "code": "e-session-0007", "description": "Invalid Token"},
            SessionExpired,
            "e-session-0007",
        ),
        (
            XTS,
            400,
            {"type": "error", "code": "e-rms-0001", "description": "Insufficient funds"},
            Rejected,
            "e-rms-0001",
        ),
        (
            XTS,
            200,
            {"type": "success", "result": {"OrderUniqueIdentifier": "X"}},
            OutcomeUnknown,
            "NO_ORDER_ID",
        ),
    ],
)
async def test_write_replies_are_classified(dialect, status, body, error, code) -> None:
    adapter = make_adapter(dialect, Canned(status, body), MASTER)
    with pytest.raises(error) as raised:
        await adapter.place(session(dialect), spec(dialect, "X"))
    assert raised.value.code == code


async def test_wire_bodies_carry_strings_for_v1_and_exact_numbers_for_xts() -> None:
    v1 = Canned(200, {"status": "Ok", "result": [{"status": "Success", "brokerOrderId": "261124000000001"}]})
    await make_adapter(V1, v1, MASTER).place(session(V1), spec(V1, "W1", price="1300.10"))
    (item,) = json.loads(v1.requests[0][2])
    assert (item["quantity"], item["price"], item["orderTag"], item["algoId"]) == (
        "5",
        "1300.10",
        "W1",
        "COPYTRADE01",
    )
    xts = Canned(200, {"type": "success", "result": {"AppOrderID": 7, "OrderUniqueIdentifier": "W1"}})
    ack = await make_adapter(XTS, xts, MASTER).place(session(XTS), spec(XTS, "W1", price="1300.10"))
    assert ack.broker_order_id == "7"
    assert b'"limitPrice":1300.1' in xts.requests[0][2] and b'"orderQuantity":5' in xts.requests[0][2]
