"""GetReplicationReport and GetOrderStats's replication figures, over follower orders projected by
the read model's own apply(), with known outcomes and latencies."""

import random
from decimal import Decimal

import grpc
import pytest

from copytrade.events.v1 import events_pb2
from copytrade.orders.v1 import orders_pb2
from services.orders import projection
from services.orders.reports import latency_text, percent_text
from tests.orders.test_place_order import field_error, request
from tests.orders.test_projection import DETAILS, follower_update
from tests.orders.test_reading import new_user_token

Code = grpc.StatusCode
ZERO = events_pb2.FollowerOrderDetails(**{**{f.name: v for f, v in DETAILS.ListFields()}, "quantity": 0})

# (status, broker order id, reason code, latency ms): one follower each, in follower id order.
COPIES = [
    ("OPEN", "B1", "", 80),
    ("SUBMITTED", "B2", "", 101),  # the broker's answer is in, confirmation not yet: placed
    ("EXECUTED", "B3", "", 125),
    ("REJECTED", "", "BROKER_REJECTED", 90),
    ("FAILED", "", "NEEDS_RELOGIN", 141),
    ("SKIPPED", "", "SIZED_TO_ZERO", 0),  # 0 on the wire: no latency
    ("PENDING", "", "", 0),
]


async def apply(process, change) -> None:
    async with process.sessions() as session, session.begin():
        assert await projection.apply(session, change)


@pytest.fixture
async def copied(orders_stub, orders_process, new_user):
    """A master order with the COPIES above, as the replicator's updates project them."""
    _, master = new_user()
    order_id = (await orders_stub.PlaceOrder(request(order_type="LIMIT"), metadata=master)).order.id
    followers = sorted(random.randrange(10**12, 2**62) for _ in COPIES)
    sources = [random.randrange(10**12, 2**62) for _ in COPIES]
    for follower, source, (status, broker_id, code, latency) in zip(followers, sources, COPIES, strict=True):
        change = follower_update(
            order_id, follower, source, 1, status, details=ZERO if status == "SKIPPED" else DETAILS,
            broker_order_id=broker_id, status_reason_code=code, status_reason=code.lower(),
            replication_latency_ms=latency,
        )  # fmt: skip
        await apply(orders_process, change)
    return {"master": master, "order_id": order_id, "followers": followers, "sources": sources}


def report(stub, auth, order_id: int, **fields):
    return stub.GetReplicationReport(
        orders_pb2.GetReplicationReportRequest(order_id=order_id, **fields), metadata=auth
    )


async def test_report_counts_outcomes_and_latencies(orders_stub, orders_process, copied):
    got = await report(orders_stub, copied["master"], copied["order_id"])
    summary = got.summary
    assert (summary.master_order_id, summary.followers_targeted) == (copied["order_id"], 7)
    counts = (summary.placed, summary.rejected, summary.failed, summary.skipped, summary.pending)
    assert counts == (3, 1, 1, 1, 1)
    # The last latency waits for the pending copy; the first is the fastest broker answer.
    assert (summary.first_follower_latency_ms, summary.last_follower_latency_ms, summary.complete) == (
        "80.0", "", False,
    )  # fmt: skip
    assert [f.follower_id for f in got.followers] == copied["followers"] and got.next_page_token == ""
    outcomes = [(f.outcome, f.status, f.reason_code, f.latency_ms, f.quantity) for f in got.followers]
    assert outcomes == [
        ("PLACED", "OPEN", "", "80.0", 4),
        ("PLACED", "SUBMITTED", "", "101.0", 4),
        ("PLACED", "EXECUTED", "", "125.0", 4),
        ("REJECTED", "REJECTED", "BROKER_REJECTED", "90.0", 4),
        ("FAILED", "FAILED", "NEEDS_RELOGIN", "141.0", 4),
        ("SKIPPED", "SKIPPED", "SIZED_TO_ZERO", "", 0),
        ("PENDING", "PENDING", "", "", 4),
    ]
    assert (got.followers[0].broker_order_id, got.followers[3].reason) == ("B1", "broker_rejected")

    stats = await orders_stub.GetOrderStats(orders_pb2.GetOrderStatsRequest(), metadata=copied["master"])
    assert (stats.total_orders, stats.replicated_orders) == (1, 7)
    # 3 placed of 5 decided attempts (skipped and pending are not counted).
    assert stats.replication_success_percent == "60.00"
    # Latencies 80, 90, 101, 125, 141: p50 is the middle one, p95 = 125 + 0.8 * (141 - 125).
    assert (stats.replication_latency_p50_ms, stats.replication_latency_p95_ms) == ("101.0", "137.8")

    # The pending copy fails at 150 ms: the report is complete.
    last = follower_update(copied["order_id"], copied["followers"][6], copied["sources"][6], 2, "FAILED",
                           status_reason_code="BROKER_ERROR", replication_latency_ms=150)  # fmt: skip
    await apply(orders_process, last)
    summary = (await report(orders_stub, copied["master"], copied["order_id"])).summary
    assert (summary.failed, summary.pending, summary.complete) == (2, 0, True)
    assert (summary.first_follower_latency_ms, summary.last_follower_latency_ms) == ("80.0", "150.0")
    stats = await orders_stub.GetOrderStats(orders_pb2.GetOrderStatsRequest(), metadata=copied["master"])
    # 3 of 6; latencies 80, 90, 101, 125, 141, 150: p50 = 101 + 0.5 * 24, p95 = 141 + 0.75 * 9.
    assert (stats.replication_success_percent, stats.replication_latency_p50_ms) == ("50.00", "113.0")
    assert stats.replication_latency_p95_ms == "147.75"
    # The window is over the master's orders: none created after 2999, so no copies either.
    later = await orders_stub.GetOrderStats(
        orders_pb2.GetOrderStatsRequest(since="2999-01-01T00:00:00Z"), metadata=copied["master"]
    )
    assert (later.total_orders, later.replicated_orders, later.replication_latency_p50_ms) == (0, 0, "")


async def test_report_pages_and_filters_by_outcome(orders_stub, copied):
    master, order_id = copied["master"], copied["order_id"]
    seen, token = [], ""
    for expected in (3, 3, 1):
        page = await report(orders_stub, master, order_id, page_size=3, page_token=token)
        assert len(page.followers) == expected and page.summary.followers_targeted == 7
        seen += [f.follower_id for f in page.followers]
        token = page.next_page_token
    assert seen == copied["followers"] and token == ""

    placed = await report(orders_stub, master, order_id, outcome="placed", page_size=2)
    assert [f.follower_id for f in placed.followers] == copied["followers"][:2] and placed.next_page_token
    rest = await report(orders_stub, master, order_id, outcome="PLACED", page_token=placed.next_page_token)
    assert [f.follower_id for f in rest.followers] == copied["followers"][2:3] and rest.next_page_token == ""
    # A token is tied to its filter.
    code, _, named = await field_error(
        report(orders_stub, master, order_id, outcome="FAILED", page_token=placed.next_page_token)
    )
    assert (code, named) == (Code.INVALID_ARGUMENT, "page_token")


@pytest.mark.parametrize(
    ("fields", "field"), [({"outcome": "LOST"}, "outcome"), ({"page_size": -1}, "page_size")]
)
async def test_bad_report_requests_name_the_field(orders_stub, copied, fields, field):
    code, _, named = await field_error(report(orders_stub, copied["master"], copied["order_id"], **fields))
    assert (code, named) == (Code.INVALID_ARGUMENT, field)


async def test_report_is_for_the_orders_master_only(orders_stub, orders_process, copied, new_user):
    _, stranger = new_user()
    code, _, _ = await field_error(report(orders_stub, stranger, copied["order_id"]))
    assert code == Code.NOT_FOUND
    missing = copied["order_id"] + 10**9
    assert (await field_error(report(orders_stub, copied["master"], missing)))[0] == Code.NOT_FOUND
    # A follower asking about their own copy: it is not a master's order.
    follower = new_user_token(orders_process, copied["followers"][0])
    mine = await orders_stub.ListMyOrders(orders_pb2.ListMyOrdersRequest(), metadata=follower)
    code, _, named = await field_error(report(orders_stub, follower, mine.orders[0].id))
    assert (code, named) == (Code.FAILED_PRECONDITION, "order_id")


def test_figures_are_exact_decimals():
    assert [percent_text(*pair) for pair in ((2, 3), (1, 8), (1, 800), (5, 5), (0, 4), (0, 0))] == [
        "66.67", "12.50", "0.13", "100.00", "0.00", "",
    ]  # fmt: skip
    assert [latency_text(v) for v in (Decimal(95), Decimal("95.30"), Decimal("147.75"), None)] == [
        "95.0", "95.3", "147.75", "",
    ]  # fmt: skip
