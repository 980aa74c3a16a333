"""The broker gateway's gRPC services, in process, against the real mock IIFL process and a real
database: account linking, the streaming fan-out, and the never-twice guarantee end to end.

The mock's inspection endpoint is the ground truth: what each account really received.
"""

import asyncio
import random
import time
from decimal import Decimal

import grpc
import pytest
from sqlalchemy import text

from copytrade.broker.v1 import broker_pb2, broker_pb2_grpc
from copytrade.core.tokens import issue_access_token, issue_service_token
from tests.mock_iifl.conftest import mock_server  # noqa: F401 - session fixture
from tests.support.broker import fresh_mock, running_gateway

Code = grpc.StatusCode
Outcome = broker_pb2.PlacementOutcome
NSE, NFO = broker_pb2.EXCHANGE_NSE, broker_pb2.EXCHANGE_NFO
MARKET, LIMIT = broker_pb2.ORDER_TYPE_MARKET, broker_pb2.ORDER_TYPE_LIMIT


@pytest.fixture(scope="module")
async def gateway(base_settings, mock_server):  # noqa: F811
    async with running_gateway(base_settings, mock_server, order_deadline_seconds=8.0) as process:
        yield process


@pytest.fixture
async def mock(mock_server):  # noqa: F811
    async with fresh_mock(mock_server) as client:
        yield client


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def as_service(gateway):
    return auth(issue_service_token(gateway.settings))


@pytest.fixture
def fanout_stub(gateway):
    return broker_pb2_grpc.BrokerGatewayServiceStub(gateway.channel)


@pytest.fixture
def accounts_stub(gateway):
    return broker_pb2_grpc.BrokerAccountServiceStub(gateway.channel)


def new_user_id() -> int:
    return random.randrange(10**12, 10**13)


async def link_xts(gateway, accounts_stub, unique, secret="xsecret"):
    user_id = new_user_id()
    token, _ = issue_access_token(gateway.settings, user_id, "FOLLOWER")
    code = unique("X")
    reply = await accounts_stub.LinkAccount(
        broker_pb2.LinkAccountRequest(dialect="xts", client_code=code, app_key=code, app_secret=secret),
        metadata=auth(token),
    )
    return user_id, token, reply.account


async def link_v1(gateway, accounts_stub, mock, unique, secret="v1secret"):
    user_id = new_user_id()
    token, _ = issue_access_token(gateway.settings, user_id, "FOLLOWER")
    client = unique("V")
    code = (await mock.control("POST", "v1/authcode", {"client_id": client, "app_secret": secret}))["auth_code"]
    reply = await accounts_stub.LinkAccount(
        broker_pb2.LinkAccountRequest(
            dialect="IIFL_CAPITAL_V1", client_code=client, app_key=f"key{client}", app_secret=secret, auth_code=code
        ),
        metadata=auth(token),
    )
    return user_id, token, reply.account


def order(account, tag, *, symbol="RELIANCE", exchange=NSE, quantity=2, order_type=MARKET, price="", user_id=None):
    return broker_pb2.NewOrder(
        account_id=account.id,
        user_id=account.user_id if user_id is None else user_id,
        order_id=1,
        instrument=broker_pb2.Instrument(symbol=symbol, exchange=exchange),
        side=broker_pb2.SIDE_BUY,
        order_type=order_type,
        product=broker_pb2.PRODUCT_MIS,
        quantity=quantity,
        price=price,
        tag=tag,
    )


async def run_fanout(stub, metadata, orders, fanout_id=1, resumed=False):
    messages = [
        message
        async for message in stub.ExecuteFanout(
            broker_pb2.ExecuteFanoutRequest(fanout_id=fanout_id, orders=orders, resumed=resumed), metadata=metadata
        )
    ]
    results = {r.tag: r for m in messages for r in m.results}
    assert messages[-1].HasField("summary") and not any(m.HasField("summary") for m in messages[:-1])
    return results, messages[-1].summary, messages


async def by_tag(mock) -> dict[str, int]:
    inspection = await mock.inspect(by_tag="1")
    assert inspection["totals"]["duplicates"] == 0
    counts: dict[str, int] = {}
    for account in inspection["accounts"]:
        for tag, count in account["orders"].get("by_tag", {}).items():
            counts[tag] = counts.get(tag, 0) + count
    return counts


# Account linking.


async def test_link_xts_account_stores_credentials_encrypted(gateway, accounts_stub, unique):
    _, token, account = await link_xts(gateway, accounts_stub, unique, secret="very-secret-value")
    assert account.status == "LINKED" and account.dialect == "XTS"
    assert account.app_key_hint.startswith("…") and account.session_expires_at
    mine = await accounts_stub.GetLinkedAccount(broker_pb2.GetLinkedAccountRequest(), metadata=auth(token))
    assert mine.account.id == account.id
    async with gateway.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT * FROM broker_gateway.linked_accounts WHERE id = :id"), {"id": account.id}
            )
        ).mappings().one()
    stored = " ".join(str(value) for value in row.values())
    assert "very-secret-value" not in stored and account.client_code not in row["credentials_encrypted"]
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await accounts_stub.LinkAccount(
            broker_pb2.LinkAccountRequest(dialect="XTS", client_code=unique("Y"), app_key="k", app_secret="s"),
            metadata=auth(token),
        )
    assert again.value.code() == Code.ALREADY_EXISTS


async def test_refused_credentials_store_nothing(gateway, accounts_stub, mock, unique):
    app_key = unique("R")
    await mock.control("POST", "accounts", {"dialect": "xts", "app_key": app_key, "app_secret": "right"})
    token, _ = issue_access_token(gateway.settings, new_user_id(), "FOLLOWER")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await accounts_stub.LinkAccount(
            broker_pb2.LinkAccountRequest(dialect="XTS", client_code=app_key, app_key=app_key, app_secret="wrong"),
            metadata=auth(token),
        )
    assert refused.value.code() == Code.INVALID_ARGUMENT and "refused" in refused.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await accounts_stub.GetLinkedAccount(broker_pb2.GetLinkedAccountRequest(), metadata=auth(token))
    assert missing.value.code() == Code.NOT_FOUND


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"dialect": "ZERODHA"}, "dialect"),
        ({"client_code": "no spaces!"}, "client_code"),
        ({"app_key": ""}, "app_key"),
        ({"app_secret": ""}, "app_secret"),
    ],
)
async def test_link_bad_input_names_the_field(gateway, accounts_stub, fields, field):
    token, _ = issue_access_token(gateway.settings, new_user_id(), "FOLLOWER")
    request = broker_pb2.LinkAccountRequest(dialect="XTS", client_code="C1", app_key="k", app_secret="s")
    for key, value in fields.items():
        setattr(request, key, value)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await accounts_stub.LinkAccount(request, metadata=auth(token))
    assert raised.value.code() == Code.INVALID_ARGUMENT and raised.value.details().startswith(field)


async def test_v1_link_waits_for_the_daily_login_then_relinks(gateway, accounts_stub, mock, unique):
    client, token = unique("W"), None
    user_id = new_user_id()
    token, _ = issue_access_token(gateway.settings, user_id, "MASTER")
    linked = await accounts_stub.LinkAccount(
        broker_pb2.LinkAccountRequest(dialect="IIFL_CAPITAL_V1", client_code=client, app_key="k1", app_secret="s1"),
        metadata=auth(token),
    )
    assert linked.account.status == "NEEDS_RELOGIN" and linked.account.login_url
    with pytest.raises(grpc.aio.AioRpcError) as no_code:
        await accounts_stub.RelinkAccount(broker_pb2.RelinkAccountRequest(), metadata=auth(token))
    assert no_code.value.code() == Code.INVALID_ARGUMENT and "auth_code" in no_code.value.details()
    code = (await mock.control("POST", "v1/authcode", {"client_id": client, "app_secret": "s1"}))["auth_code"]
    relinked = await accounts_stub.RelinkAccount(broker_pb2.RelinkAccountRequest(auth_code=code), metadata=auth(token))
    assert relinked.account.status == "LINKED"
    await accounts_stub.UnlinkAccount(broker_pb2.UnlinkAccountRequest(), metadata=auth(token))
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await accounts_stub.GetLinkedAccount(broker_pb2.GetLinkedAccountRequest(), metadata=auth(token))
    assert gone.value.code() == Code.NOT_FOUND


# The fan-out.


async def test_fanout_places_every_order_once_in_both_dialects(gateway, accounts_stub, fanout_stub, as_service, mock, unique):
    linked = [await link_xts(gateway, accounts_stub, unique) for _ in range(6)]
    linked += [await link_v1(gateway, accounts_stub, mock, unique) for _ in range(6)]
    orders = [order(account, unique("T")) for _, _, account in linked]
    results, summary, _ = await run_fanout(fanout_stub, as_service, orders, fanout_id=77)
    assert {r.outcome for r in results.values()} == {Outcome.PLACEMENT_OUTCOME_PLACED}
    assert all(r.broker_order_id for r in results.values())
    assert (summary.fanout_id, summary.total, summary.placed) == (77, 12, 12)
    assert summary.first_result_latency_ms > 0
    counts = await by_tag(mock)
    assert {o.tag: counts.get(o.tag) for o in orders} == {o.tag: 1 for o in orders}


async def test_fanout_answers_with_its_headers_before_the_broker_does(gateway, accounts_stub, fanout_stub, as_service, mock, unique):
    # The replicator plans a fan-out's next part once the gateway has taken this one: its headers
    # must not wait for the first result, which waits for the broker.
    _, _, account = await link_xts(gateway, accounts_stub, unique)
    await mock.configure(latency={"kind": "fixed", "ms": 500})
    call = fanout_stub.ExecuteFanout(
        broker_pb2.ExecuteFanoutRequest(fanout_id=78, orders=[order(account, unique("H"))]), metadata=as_service
    )
    started = time.perf_counter()
    await asyncio.wait_for(call.initial_metadata(), timeout=0.4)
    took = time.perf_counter() - started
    messages = [message async for message in call]
    assert took < 0.4 and time.perf_counter() - started >= 0.5
    assert messages[0].results[0].outcome == Outcome.PLACEMENT_OUTCOME_PLACED


async def test_bad_orders_get_a_reason_and_the_stream_goes_on(gateway, accounts_stub, fanout_stub, as_service, mock, unique):
    _, _, account = await link_xts(gateway, accounts_stub, unique)
    _, _, other = await link_xts(gateway, accounts_stub, unique)
    good = order(account, unique("G"))
    cases = {
        "unknown symbol": order(account, unique("B"), symbol="NOSUCHCO"),
        "lot": order(account, unique("B"), symbol="NIFTY26DECFUT", exchange=NFO, quantity=1, order_type=LIMIT, price="26000.00"),
        "tick": order(account, unique("B"), order_type=LIMIT, price="1400.03"),
        "price": order(account, unique("B"), order_type=LIMIT),
        "zero": order(account, unique("B"), quantity=0),
        "unlinked": order(broker_pb2.LinkedAccount(id=9_000_000_000, user_id=1), unique("B")),
        "someone else's": order(other, unique("B"), user_id=account.user_id),
        "tag": order(account, "not-a-tag!"),
    }
    results, summary, _ = await run_fanout(fanout_stub, as_service, [good, *cases.values()])
    assert results[good.tag].outcome == Outcome.PLACEMENT_OUTCOME_PLACED
    for case, bad in cases.items():
        result = results[bad.tag]
        assert result.outcome in (Outcome.PLACEMENT_OUTCOME_FAILED, Outcome.PLACEMENT_OUTCOME_ACCOUNT_NOT_LINKED), case
        assert result.reason, case
    assert results[cases["unlinked"].tag].outcome == Outcome.PLACEMENT_OUTCOME_ACCOUNT_NOT_LINKED
    assert results[cases["someone else's"].tag].outcome == Outcome.PLACEMENT_OUTCOME_ACCOUNT_NOT_LINKED
    assert "lot" in results[cases["lot"].tag].reason and "tick" in results[cases["tick"].tag].reason
    assert summary.total == len(cases) + 1 and summary.placed == 1
    counts = await by_tag(mock)
    assert counts.get(good.tag) == 1 and not any(counts.get(bad.tag) for bad in cases.values())


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"fanout_id": 0}, "fanout_id"),
        ({"orders": []}, "orders"),
        ({"duplicate": True}, "orders[1].tag"),
    ],
)
async def test_malformed_fanout_request_is_invalid_argument(fanout_stub, as_service, request_fields, field):
    first = broker_pb2.NewOrder(account_id=1, user_id=1, tag="A1")
    orders = [first, broker_pb2.NewOrder(account_id=2, user_id=2, tag="A1" if request_fields.get("duplicate") else "A2")]
    request = broker_pb2.ExecuteFanoutRequest(fanout_id=request_fields.get("fanout_id", 5), orders=request_fields.get("orders", orders))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in fanout_stub.ExecuteFanout(request, metadata=as_service):
            pass
    assert raised.value.code() == Code.INVALID_ARGUMENT and raised.value.details().startswith(field)


async def test_only_platform_services_may_place_orders(gateway, fanout_stub):
    follower, _ = issue_access_token(gateway.settings, 5, "FOLLOWER")
    request = broker_pb2.ExecuteFanoutRequest(fanout_id=1, orders=[broker_pb2.NewOrder(account_id=1, user_id=5, tag="A1")])
    for metadata, code in ((auth(follower), Code.PERMISSION_DENIED), ((), Code.UNAUTHENTICATED)):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in fanout_stub.ExecuteFanout(request, metadata=metadata):
                pass
        assert raised.value.code() == code


# Sessions that lapse.


async def test_lapsed_v1_session_is_reported_and_marks_the_account(gateway, accounts_stub, fanout_stub, as_service, mock, unique):
    _, token, account = await link_v1(gateway, accounts_stub, mock, unique)
    await mock.control("POST", "sessions/expire", {})
    first = order(account, unique("L"))
    results, summary, _ = await run_fanout(fanout_stub, as_service, [first])
    assert results[first.tag].outcome == Outcome.PLACEMENT_OUTCOME_NEEDS_RELOGIN
    assert summary.needs_relogin == 1
    mine = await accounts_stub.GetLinkedAccount(broker_pb2.GetLinkedAccountRequest(), metadata=auth(token))
    assert mine.account.status == "NEEDS_RELOGIN" and mine.account.login_url
    # Later orders are answered at once with the same reason, never dropped in silence.
    second = order(account, unique("L"))
    results, _, _ = await run_fanout(fanout_stub, as_service, [second])
    assert results[second.tag].outcome == Outcome.PLACEMENT_OUTCOME_NEEDS_RELOGIN
    assert results[second.tag].reason
    assert not (await by_tag(mock)).get(first.tag) and not (await by_tag(mock)).get(second.tag)


async def test_lapsed_xts_session_logs_in_again_by_itself(gateway, accounts_stub, fanout_stub, as_service, mock, unique):
    _, _, account = await link_xts(gateway, accounts_stub, unique)
    await mock.control("POST", "sessions/expire", {})
    placed = order(account, unique("S"))
    results, _, _ = await run_fanout(fanout_stub, as_service, [placed])
    assert results[placed.tag].outcome == Outcome.PLACEMENT_OUTCOME_PLACED
    assert (await by_tag(mock))[placed.tag] == 1


# Never twice.


async def test_fanout_under_broker_faults_never_places_twice(gateway, accounts_stub, fanout_stub, as_service, mock, unique):
    linked = [await link_xts(gateway, accounts_stub, unique) for _ in range(20)]
    linked += [await link_v1(gateway, accounts_stub, mock, unique) for _ in range(20)]
    await mock.configure(
        faults={"http_5xx": 0.2, "timeout": 0.1, "drop": 0.1, "placed_before_fault": 0.5, "timeout_hold_seconds": 2.0},
        seed=11,
    )
    orders = [order(account, unique("F")) for _, _, account in linked]
    results, summary, _ = await run_fanout(fanout_stub, as_service, orders)
    counts = await by_tag(mock)
    stats = (await mock.inspect())["stats"]["faults"]
    assert stats["http_5xx"] + stats["timeout"] + stats["drop"] > 0, "no fault was injected"
    for placed in orders:
        result = results[placed.tag]
        assert counts.get(placed.tag, 0) <= 1
        if result.outcome == Outcome.PLACEMENT_OUTCOME_PLACED:
            assert counts.get(placed.tag) == 1, result
        elif result.outcome == Outcome.PLACEMENT_OUTCOME_FAILED:
            # Every send failed and the book proved each one absent: reported, and truly not there.
            assert counts.get(placed.tag, 0) == 0 and result.attempts >= 1, result
        else:
            # Otherwise only an order the deadline left unresolved may be UNKNOWN.
            assert result.outcome == Outcome.PLACEMENT_OUTCOME_UNKNOWN, result
    assert summary.placed + summary.failed + summary.unknown == len(orders)


async def test_resumed_fanout_finds_what_the_broker_already_has(gateway, accounts_stub, fanout_stub, as_service, mock, unique):
    linked = [await link_xts(gateway, accounts_stub, unique) for _ in range(4)]
    orders = [order(account, unique("P")) for _, _, account in linked]
    await run_fanout(fanout_stub, as_service, orders)
    # A new session per account, as after a gateway restart: the broker would not deduplicate.
    await mock.control("POST", "sessions/expire", {})
    results, _, _ = await run_fanout(fanout_stub, as_service, orders, resumed=True)
    assert all(r.outcome == Outcome.PLACEMENT_OUTCOME_PLACED and r.found_existing for r in results.values())
    counts = await by_tag(mock)
    assert all(counts[o.tag] == 1 for o in orders)


async def test_500_concurrent_orders_draw_no_429(gateway, accounts_stub, fanout_stub, as_service, mock, unique):
    linked = await asyncio.gather(*(link_xts(gateway, accounts_stub, unique) for _ in range(500)))
    await mock.configure(latency={"kind": "uniform", "min_ms": 50, "max_ms": 150}, rate_limits={"enabled": True})
    orders = [order(account, unique("C")) for _, _, account in linked]
    _, summary, messages = await run_fanout(fanout_stub, as_service, orders)
    assert summary.placed == 500
    # Results that land together travel together.
    assert len(messages) < 500
    assert (await mock.inspect())["stats"]["rate_limited"]["total"] == 0


# Reading and changing one order.


async def test_get_modify_cancel_an_open_order(gateway, accounts_stub, fanout_stub, as_service, mock, unique):
    _, _, account = await link_xts(gateway, accounts_stub, unique)
    resting = order(account, unique("O"), order_type=LIMIT, price="1000.00")
    placed = await fanout_stub.PlaceOrder(broker_pb2.PlaceOrderRequest(order=resting), metadata=as_service)
    assert placed.result.outcome == Outcome.PLACEMENT_OUTCOME_PLACED
    found = await fanout_stub.GetOrder(broker_pb2.GetOrderRequest(account_id=account.id, tag=resting.tag), metadata=as_service)
    assert found.found and found.order.broker_order_id == placed.result.broker_order_id
    modified = await fanout_stub.ModifyOrder(
        broker_pb2.ModifyOrderRequest(account_id=account.id, tag=resting.tag, price="1001.00"), metadata=as_service
    )
    assert modified.result.outcome == broker_pb2.ACTION_OUTCOME_ACCEPTED, modified.result
    cancelled = await fanout_stub.CancelOrder(
        broker_pb2.CancelOrderRequest(account_id=account.id, tag=resting.tag), metadata=as_service
    )
    assert cancelled.result.outcome == broker_pb2.ACTION_OUTCOME_ACCEPTED, cancelled.result
    book = await fanout_stub.ListOrders(broker_pb2.ListOrdersRequest(account_id=account.id), metadata=as_service)
    assert [o.tag for o in book.orders] == [resting.tag]
    absent = await fanout_stub.GetOrder(broker_pb2.GetOrderRequest(account_id=account.id, tag="NOSUCHTAG"), metadata=as_service)
    assert not absent.found


async def test_reads_of_an_account_needing_relogin_fail_with_the_reason(gateway, accounts_stub, fanout_stub, as_service, mock, unique):
    _, _, account = await link_v1(gateway, accounts_stub, mock, unique)
    await mock.control("POST", "sessions/expire", {})
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await fanout_stub.ListOrders(broker_pb2.ListOrdersRequest(account_id=account.id), metadata=as_service)
    assert raised.value.code() == Code.FAILED_PRECONDITION
    assert b"NEEDS_RELOGIN" in dict(raised.value.trailing_metadata())["grpc-status-details-bin"]


async def test_batch_get_funds_reads_each_broker_and_says_why_not(gateway, accounts_stub, fanout_stub, as_service, mock, unique):
    _, _, account = await link_v1(gateway, accounts_stub, mock, unique)
    await mock.control("PATCH", f"accounts/iifl_v1/{account.client_code}", {"funds": "25000.50"})
    unlinked = 987_654_321
    reply = await fanout_stub.BatchGetFunds(
        broker_pb2.BatchGetFundsRequest(account_ids=[account.id, unlinked]), metadata=as_service
    )
    funds = {f.account_id: f for f in reply.funds}
    assert funds[account.id].found and Decimal(funds[account.id].available) == Decimal("25000.50")
    assert not funds[unlinked].found and not funds[unlinked].available
    assert funds[unlinked].error_code == "ACCOUNT_NOT_LINKED" and funds[unlinked].reason


async def test_batch_get_funds_is_for_platform_services_only(gateway, accounts_stub, fanout_stub, mock, unique):
    _, token, account = await link_v1(gateway, accounts_stub, mock, unique)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await fanout_stub.BatchGetFunds(broker_pb2.BatchGetFundsRequest(account_ids=[account.id]), metadata=auth(token))
    assert raised.value.code() == Code.PERMISSION_DENIED
