"""The mock's shortcuts for hot paths: the arrivals tag index and the clock's formatting memos.

In-process (no server): they must answer exactly what a full scan or a fresh strftime would.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from mock_iifl.accounts import Dialect, Session
from mock_iifl.clock import IST, iifl_time, ist_date_code, xts_time
from mock_iifl.control import Control
from mock_iifl.instruments import InstrumentMaster
from mock_iifl.orderbook import Order
from mock_iifl.state import MockState
from mock_iifl.trading import OrderRequest
from mock_iifl.wire import Request


@pytest.fixture
async def state():
    # Async: placing an order schedules its lifecycle on the running loop.
    state = MockState(InstrumentMaster())
    yield state
    state.reset()  # stops the orders' timers


def _sessions(state: MockState, dialect: Dialect, count: int) -> list[Session]:
    sessions = []
    for i in range(count):
        account = state.register(dialect, f"IDX{dialect[:3]}{i}", f"key{dialect}{i}", "secret")
        if dialect == "xts":
            sessions.append(state.accounts.xts_login(account.app_key, "secret", state.clock.now()))
        else:
            sessions.append(state.accounts._open(account, state.clock.now()))
    return sessions


def _place(state: MockState, session: Session, tag: str) -> Order:
    instrument = state.master.get("NSEEQ", "2885")
    assert instrument is not None
    request = OrderRequest(
        instrument=instrument,
        side="BUY",
        quantity=1,
        order_type="MARKET",
        product="INTRADAY",
        validity="DAY",
        price=Decimal(0),
        trigger_price=Decimal(0),
        disclosed_quantity=0,
        market_protection=Decimal(2),
        tag=tag,
    )
    order, repeated = state.broker.place(session, request, peer="")
    assert not repeated
    return order


def _arrivals(state: MockState, prefix: str) -> dict:
    response = Control(state)._dispatch(Request("GET", "/_mock/arrivals", {}, query={"tag_prefix": prefix}))
    assert response.status == 200
    return json.loads(response.body)


def _scanned(state: MockState, prefix: str) -> list[Order]:
    return [order for order in state.all_orders() if order.tag.startswith(prefix)]


async def test_arrivals_answer_only_the_fan_out_asked_for(state: MockState) -> None:
    v1, xts = _sessions(state, "iifl_v1", 6), _sessions(state, "xts", 6)
    sessions = v1 + xts
    # Two fan-outs whose prefixes differ only in their last character, placed interleaved and out of
    # tag order, plus a tag that is a prefix of both prefixes and an untagged order.
    first = [_place(state, sessions[(7 * i) % 12], f"5AB12{35 - i}") for i in range(0, 20, 2)]
    second = [_place(state, sessions[(5 * i) % 12], f"5AB13{i}") for i in range(1, 20, 2)]
    _place(state, sessions[0], "5AB1")
    _place(state, sessions[1], "")
    state.clock.advance(3)
    first.append(_place(state, sessions[11], "5AB120"))

    answer = _arrivals(state, "5AB12")
    assert sorted(map(id, _scanned(state, "5AB12"))) == sorted(map(id, first))
    assert answer == {
        "orders": len(first),
        "first_received_at": min(o.received_at for o in first).isoformat(),
        "last_received_at": max(o.received_at for o in first).isoformat(),
        "first_created_at": min(o.created_at for o in first).isoformat(),
        "last_created_at": max(o.created_at for o in first).isoformat(),
    }
    assert answer["last_created_at"] == first[-1].created_at.isoformat()
    assert _arrivals(state, "5AB13")["orders"] == len(second)
    assert _arrivals(state, "5AB1")["orders"] == len(first) + len(second) + 1
    assert _arrivals(state, "5AB")["orders"] == len(first) + len(second) + 1
    assert _arrivals(state, "5AB14") == {"orders": 0}
    assert _arrivals(state, "5AB1235X") == {"orders": 0}
    assert _arrivals(state, "5AB1235")["orders"] == 1


async def test_a_reset_empties_the_arrivals_index(state: MockState) -> None:
    (session,) = _sessions(state, "xts", 1)
    _place(state, session, "RST1")
    assert _arrivals(state, "RST")["orders"] == 1
    state.reset()
    assert _arrivals(state, "RST") == {"orders": 0}
    (session,) = _sessions(state, "xts", 1)
    _place(state, session, "RST2")
    assert _arrivals(state, "RST")["orders"] == 1


async def test_formatted_times_follow_the_clock_across_moves(state: MockState) -> None:
    clock = state.clock
    clock.set(datetime(2026, 11, 24, 23, 59, 58, 600_000, tzinfo=IST))
    (session,) = _sessions(state, "iifl_v1", 1)
    before = clock.now()
    assert iifl_time(before) == "24-Nov-2026 23:59:58"
    assert xts_time(before) == "24-11-2026 23:59:58"
    assert _place(state, session, "CLK1").order_id.startswith("261124")

    # The memos are warm for this second and day: moving the clock must not serve them again.
    clock.advance(1)
    assert iifl_time(clock.now()) == "24-Nov-2026 23:59:59"
    clock.advance(1)
    moved = clock.now()
    assert iifl_time(moved) == "25-Nov-2026 00:00:00"
    assert xts_time(moved) == "25-11-2026 00:00:00"
    assert ist_date_code(moved) == "261125"
    assert _place(state, session, "CLK2").order_id.startswith("261125")

    clock.reset()
    today = datetime.now(IST)
    assert ist_date_code(clock.now()) in {f"{today:%y%m%d}", f"{today + timedelta(seconds=1):%y%m%d}"}


def test_formatted_times_match_strftime_in_any_time_zone() -> None:
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    zones = [IST, UTC, timezone(timedelta(hours=-7, minutes=-15))]
    start = datetime(2026, 3, 31, 18, 29, 57, 999_999, tzinfo=UTC)  # IST midnight is 18:30 UTC
    for step in range(8):
        instant = start + timedelta(milliseconds=500 * step)
        for moment in [instant.astimezone(zone) for zone in zones] + [
            instant.astimezone().replace(tzinfo=None)
        ]:
            local = moment.astimezone(IST)
            assert iifl_time(moment) == f"{local:%d}-{months[local.month - 1]}-{local:%Y %H:%M:%S}"
            assert xts_time(moment) == local.strftime("%d-%m-%Y %H:%M:%S")
            assert ist_date_code(moment) == local.strftime("%y%m%d")
