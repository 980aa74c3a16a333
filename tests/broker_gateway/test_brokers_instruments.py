"""The instrument master read from data/instruments/, and the reasons validation gives."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from copytrade.broker.v1 import broker_pb2
from services.broker_gateway.brokers import (
    BookEntry,
    Dialect,
    Exchange,
    OrderChange,
    OrderSpec,
    OrderStatus,
    OrderType,
    Side,
)
from services.broker_gateway.brokers.base import protective_limit
from services.broker_gateway.instruments import (
    DEFAULT_DIRECTORY,
    InstrumentFileError,
    InstrumentMaster,
    Invalid,
    OrderRequest,
)

MASTER = InstrumentMaster.load()


def order(**fields) -> OrderRequest:
    values = {"exchange": 1, "symbol": "RELIANCE", "side": 1, "order_type": 2, "product": 2, "quantity": 5,
              "price": "1412.30", "tag": "TAG1", **fields}  # fmt: skip
    return OrderRequest(**values)


def reason(result) -> str:
    assert isinstance(result, Invalid), result
    return result.reason


def test_both_symbol_forms_resolve_to_both_dialects_ids() -> None:
    reliance = MASTER.resolve(Exchange.NSE, "RELIANCE")
    assert reliance is MASTER.resolve(Exchange.NSE, "reliance-eq")
    assert (reliance.v1_exchange, reliance.v1_instrument_id) == ("NSEEQ", "2885")
    assert (reliance.xts_segment, reliance.xts_instrument_id) == ("NSECM", 2885)
    assert (reliance.lot_size, reliance.tick_size, reliance.freeze_quantity) == (1, Decimal("0.10"), 70806)
    bse = MASTER.resolve(Exchange.BSE, "RELIANCE")
    assert (bse.v1_exchange, bse.xts_segment, bse.xts_instrument_id) == ("BSEEQ", "BSECM", 500325)
    future = MASTER.resolve(Exchange.NFO, "NIFTY26DECFUT")
    assert (future.lot_size, future.freeze_quantity, future.xts_segment) == (65, 1755, "NSEFO")
    assert MASTER.by_v1_id("NSEEQ", "2885") is reliance and MASTER.by_xts_id("NSECM", 2885) is reliance
    assert MASTER.resolve(Exchange.NFO, "RELIANCE") is None


def test_every_contract_file_row_is_loaded() -> None:
    rows = sum(
        len(json.loads((DEFAULT_DIRECTORY / f"{seg}.json").read_text()))
        for seg in ("NSEEQ", "NSEFO", "BSEEQ")
    )
    assert len(MASTER) == rows


def test_a_broken_contract_file_stops_the_start(tmp_path) -> None:
    (tmp_path / "NSEEQ.json").write_text(
        json.dumps([{"instrumentId": "1", "tradingSymbol": "X-EQ", "tickSize": "abc"}])
    )
    with pytest.raises(InstrumentFileError, match="NSEEQ.json"):
        InstrumentMaster.load(tmp_path)
    with pytest.raises(InstrumentFileError, match="no contract files"):
        InstrumentMaster.load(tmp_path / "empty")


def test_a_valid_order_becomes_a_spec_with_exact_prices() -> None:
    spec = MASTER.validate(order(price="1412.30"), Dialect.IIFL_CAPITAL_V1, algo_id="ALGO1")
    assert isinstance(spec, OrderSpec)
    assert (spec.price, spec.algo_id, spec.side, spec.order_type) == (
        Decimal("1412.30"),
        "ALGO1",
        Side.BUY,
        OrderType.LIMIT,
    )


@pytest.mark.parametrize(
    ("fields", "code", "expected"),
    [
        ({"symbol": "NOSUCH"}, "INSTRUMENT_NOT_FOUND", "NOSUCH is not traded on NSE"),
        ({"quantity": 0}, "INVALID_ORDER", "quantity: must be at least 1"),
        (
            {"exchange": 3, "symbol": "NIFTY26DECFUT", "product": 3, "quantity": 60, "price": "26000.00"},
            "INVALID_ORDER",
            "not a multiple of the lot size 65",
        ),
        ({"quantity": 70807}, "INVALID_ORDER", "above the exchange's freeze quantity 70806"),
        ({"price": ""}, "INVALID_ORDER", "price: is required for a LIMIT order"),
        (
            {"order_type": 3, "price": "", "trigger_price": "1400.00"},
            "INVALID_ORDER",
            "price: is required for a SL order",
        ),
        ({"price": "1412.35"}, "INVALID_ORDER", "1412.35 is not a multiple of the tick size 0.10"),
        (
            {"order_type": 3, "price": "1420.00", "trigger_price": "1410.05"},
            "INVALID_ORDER",
            "trigger_price: 1410.05 is not a multiple",
        ),
        (
            {"order_type": 1, "price": "1412.30", "market_protection_percent": "2"},
            "INVALID_ORDER",
            "price: must be empty for a MARKET order",
        ),
        (
            {"order_type": 1, "price": ""},
            "INVALID_ORDER",
            "market_protection_percent: is required for a MARKET order",
        ),
        (
            {"order_type": 1, "price": "", "market_protection_percent": "0"},
            "INVALID_ORDER",
            "must be above 0",
        ),
        (
            {"order_type": 4, "price": "", "trigger_price": "1400.00"},
            "INVALID_ORDER",
            "market_protection_percent: is required for a SL_M",
        ),
        (
            {"order_type": 3, "price": "1400.00", "trigger_price": "1410.00"},
            "INVALID_ORDER",
            "must not be above the price of a BUY",
        ),
        ({"price": "12,00"}, "INVALID_ORDER", "is not a decimal number"),
        ({"price": "-1.00"}, "INVALID_ORDER", "price: must be positive"),
        ({"tag": "has space"}, "INVALID_ORDER", "tag: must be 1 to 20 ASCII letters and digits"),
        ({"tag": "NA"}, "INVALID_ORDER", "NA is how IIFL marks untagged orders"),
        ({"side": 0}, "INVALID_ORDER", "side: is required"),
        ({"exchange": 0}, "INVALID_ORDER", "instrument.exchange: is required"),
    ],
)
def test_invalid_orders_get_a_clear_reason(fields, code, expected) -> None:
    result = MASTER.validate(order(**fields), Dialect.IIFL_CAPITAL_V1, algo_id="ALGO1")
    assert isinstance(result, Invalid) and result.code == code
    assert expected in result.reason


def test_market_protection_is_required_by_v1_only_and_a_default_fills_it() -> None:
    market = order(order_type=1, price="")
    assert "required" in reason(MASTER.validate(market, Dialect.IIFL_CAPITAL_V1, algo_id="A"))
    assert isinstance(MASTER.validate(market, Dialect.XTS, algo_id="A"), OrderSpec)
    spec = MASTER.validate(market, Dialect.IIFL_CAPITAL_V1, algo_id="A", default_market_protection=Decimal(2))
    assert spec.market_protection_percent == Decimal(2)


def test_from_proto_reads_a_new_order() -> None:
    message = broker_pb2.NewOrder(
        instrument=broker_pb2.Instrument(symbol="INFY", exchange=broker_pb2.EXCHANGE_NSE),
        side=broker_pb2.SIDE_SELL, order_type=broker_pb2.ORDER_TYPE_LIMIT, product=broker_pb2.PRODUCT_CNC,
        quantity=3, price="1523.40", tag="P1",
    )  # fmt: skip
    spec = MASTER.validate(OrderRequest.from_proto(message), "XTS", algo_id="A")
    assert (spec.instrument.symbol, spec.side, spec.quantity, spec.price) == (
        "INFY",
        Side.SELL,
        3,
        Decimal("1523.40"),
    )


@pytest.mark.parametrize(
    ("side", "trigger", "percent", "tick", "limit"),
    [
        (Side.BUY, "1500.00", "2", "0.10", "1530.00"),
        (Side.SELL, "1500.00", "2", "0.10", "1470.00"),
        (Side.BUY, "100.05", "1", "0.05", "101.05"),  # 101.0505 rounds toward the trigger
        (Side.SELL, "100.05", "1", "0.05", "99.05"),  # 99.0495 rounds toward the trigger
        (Side.BUY, "10.00", "0.1", "0.05", "10.05"),  # less than a tick: one tick away
    ],
)
def test_protective_limit_of_an_sl_m(side, trigger, percent, tick, limit) -> None:
    assert protective_limit(side, Decimal(trigger), Decimal(percent), Decimal(tick)) == Decimal(limit)


def test_a_modification_is_checked_against_the_instrument() -> None:
    future = MASTER.resolve(Exchange.NFO, "NIFTY26DECFUT")
    entry = BookEntry("1", "", "T", Exchange.NFO, future.symbol, future, Side.BUY, OrderType.LIMIT, None, None,
                      65, 0, 65, Decimal("26000.00"), None, None, OrderStatus.OPEN, "OPEN", "", None)  # fmt: skip
    assert "lot size 65" in MASTER.check_change(entry, OrderChange(quantity=100))
    assert "tick size" in MASTER.check_change(entry, OrderChange(price=Decimal("26000.05")))
    assert MASTER.check_change(entry, OrderChange(quantity=130, price=Decimal("26000.10"))) is None
