"""Both dialects against the real mock process: sessions, place/modify/cancel, the order book, and
what each order carries on the wire (tag, algo id, SL-M as a protected SL, market protection)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

import pytest

from services.broker_gateway.brokers import (
    CredentialsRejected,
    Dialect,
    OrderChange,
    OrderStatus,
    OrderType,
    PlacementOutcome,
    Rejected,
)
from services.broker_gateway.brokers.outcomes import ActionOutcome
from tests.broker_gateway.test_brokers_support import (
    ALGO_ID,
    DIALECTS,
    MASTER,
    Brokers,
    spec,
)
from tests.mock_iifl.conftest import eventually

# The mock IIFL process and the `brokers` helper, shared by every broker-package test module.
pytest_plugins = ("tests.broker_gateway.test_brokers_support",)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_session_opens_with_good_credentials_and_not_with_bad(
    brokers: Brokers, dialect: Dialect
) -> None:
    account = await brokers.account(dialect)
    session = await brokers.login(account)
    assert session.dialect is dialect and session.token and session.expires_at > session.opened_at
    assert "token" not in repr(session) and account.credentials.app_secret not in repr(account.credentials)
    wrong = replace(await brokers.credentials(account), app_secret="not-the-secret")
    with pytest.raises(CredentialsRejected) as refused:
        await brokers.adapters[dialect].open_session(wrong)
    assert refused.value.code == {"IIFL_CAPITAL_V1": "EC801", "XTS": "e-user-0005"}[dialect.value]
    assert (await brokers.summary(account))["sessions_created"] == 1


async def test_v1_session_needs_the_days_auth_code(brokers: Brokers) -> None:
    account = await brokers.account(Dialect.IIFL_CAPITAL_V1)
    with pytest.raises(CredentialsRejected) as refused:
        await brokers.adapters[Dialect.IIFL_CAPITAL_V1].open_session(account.credentials)
    assert refused.value.code == "AUTH_CODE_REQUIRED"
    used = await brokers.credentials(account)
    await brokers.adapters[Dialect.IIFL_CAPITAL_V1].open_session(used)
    with pytest.raises(CredentialsRejected):  # an auth code works once
        await brokers.adapters[Dialect.IIFL_CAPITAL_V1].open_session(used)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_place_modify_cancel_and_the_book(brokers: Brokers, dialect: Dialect) -> None:
    account, client = await brokers.ready(dialect)
    assert await client.list_orders() == []  # v1 answers an empty book with EC921: an empty list
    placed = await client.place(spec(dialect, "ORD1"))
    assert (placed.outcome, placed.attempts, placed.found_existing) == (PlacementOutcome.PLACED, 1, False)
    entry = await eventually(
        lambda: client.get_order(tag="ORD1"), lambda e: e and e.status is OrderStatus.OPEN
    )
    assert entry.broker_order_id == placed.broker_order_id
    assert (entry.symbol, entry.quantity, entry.price, entry.order_type) == (
        "RELIANCE",
        5,
        Decimal("1300.00"),
        OrderType.LIMIT,
    )

    modified = await client.modify(OrderChange(quantity=10, price=Decimal("1301.50")), tag="ORD1")
    assert modified.outcome is ActionOutcome.ACCEPTED, modified
    entry = await client.get_order(broker_order_id=placed.broker_order_id)
    assert (entry.quantity, entry.price) == (10, Decimal("1301.50"))

    off_tick = await client.modify(
        OrderChange(price=Decimal("1301.55")), tag="ORD1", problem=MASTER.check_change
    )
    assert (off_tick.outcome, off_tick.error_code) == (ActionOutcome.FAILED, "INVALID_ORDER")

    cancelled = await client.cancel(broker_order_id=placed.broker_order_id)
    assert cancelled.outcome is ActionOutcome.ACCEPTED, cancelled
    entry = await eventually(
        lambda: client.get_order(tag="ORD1"), lambda e: e.status is OrderStatus.CANCELLED
    )
    again = await client.cancel(tag="ORD1")
    assert (again.outcome, again.error_code) == (ActionOutcome.REJECTED, "ORDER_CLOSED")
    missing = await client.cancel(tag="NOSUCH")
    assert (missing.outcome, missing.error_code) == (ActionOutcome.REJECTED, "ORDER_NOT_FOUND")
    assert await client.get_order(tag="NOSUCH") is None
    summary = await brokers.summary(account)
    assert (summary["orders"]["count"], summary["requests"]["modify"], summary["requests"]["cancel"]) == (
        1,
        1,
        1,
    )


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_sl_m_goes_as_sl_with_a_protective_limit(brokers: Brokers, dialect: Dialect) -> None:
    account, client = await brokers.ready(dialect)
    # Trigger above the market: the buy stop waits, and its limit is 2% above the trigger, on tick.
    order = spec(
        dialect, "STOP1", order_type=4, price="", trigger_price="1500.00", market_protection_percent="2"
    )
    placed = await client.place(order)
    assert placed.outcome is PlacementOutcome.PLACED, placed
    entry = await client.get_order(tag="STOP1")
    assert (entry.order_type, entry.trigger_price, entry.price) == (
        OrderType.SL,
        Decimal("1500.00"),
        Decimal("1530.00"),
    )
    assert entry.status in (OrderStatus.TRIGGER_PENDING, OrderStatus.OPEN, OrderStatus.PENDING)
    assert (await brokers.summary(account))["requests"]["refused"] == 0


async def test_v1_orders_carry_algo_id_tag_and_market_protection(brokers: Brokers, mock) -> None:
    _, client = await brokers.ready(Dialect.IIFL_CAPITAL_V1)
    order = spec(Dialect.IIFL_CAPITAL_V1, "MKT1", order_type=1, price="", market_protection_percent="2.5")
    assert (await client.place(order)).outcome is PlacementOutcome.PLACED
    row = (await mock.v1_book(client.session.token))[0]
    assert (row["algoId"], row["orderTag"], row["marketProtectionPercent"]) == (ALGO_ID, "MKT1", "2.50")
    assert row["quantity"] == "5"  # numbers travel as strings


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_broker_refusals_are_rejections_with_the_brokers_reason(
    brokers: Brokers, dialect: Dialect
) -> None:
    _, client = await brokers.ready(dialect)
    # Valid for the platform, refused by the broker: a product for cash equity on a future.
    future = spec(
        dialect, "FUT1", exchange=3, symbol="NIFTY26DECFUT", quantity=65, product=1, price="26000.00"
    )
    placed = await client.place(future)
    assert placed.outcome is PlacementOutcome.REJECTED
    assert placed.error_code == {"IIFL_CAPITAL_V1": "EC004", "XTS": "e-orders-0005"}[dialect.value]
    assert "DELIVERY" in placed.reason or "cash" in placed.reason
    with pytest.raises(Rejected):
        await brokers.adapters[dialect].place(client.session, future)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_book_statuses_are_normalised(brokers: Brokers, mock, dialect: Dialect) -> None:
    await mock.configure(faults={"exchange_reject": 1.0})
    _, client = await brokers.ready(dialect)
    await client.place(spec(dialect, "REJ1", price="1412.30"))
    entry = await eventually(lambda: client.get_order(tag="REJ1"), lambda e: e.status is OrderStatus.REJECTED)
    assert entry.raw_status.lower() == "rejected" and "operating range" in entry.rejection_reason
    await mock.configure(faults={})
    await client.place(spec(dialect, "FILL1", price="1412.30"))
    entry = await eventually(lambda: client.get_order(tag="FILL1"), lambda e: e.status is OrderStatus.FILLED)
    assert (entry.filled_quantity, entry.pending_quantity, entry.average_price) == (5, 0, Decimal("1412.30"))
    assert entry.exchange_time is not None and entry.exchange_time.tzinfo is not None


async def test_v1_funds_are_read_exactly(brokers: Brokers) -> None:
    _, client = await brokers.ready(Dialect.IIFL_CAPITAL_V1)
    funds = await client.funds()
    assert funds.available == Decimal("10000000.00") and funds.utilised == Decimal("0.00")


async def test_many_orders_in_flight_through_one_client(brokers: Brokers) -> None:
    account, client = await brokers.ready(Dialect.XTS)
    results = await asyncio.gather(*(client.place(spec(Dialect.XTS, f"MANY{i}")) for i in range(8)))
    assert {r.outcome for r in results} == {PlacementOutcome.PLACED}
    assert len({r.broker_order_id for r in results}) == 8
    assert (await brokers.summary(account))["orders"]["count"] == 8
