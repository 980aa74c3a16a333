"""data/instruments: the contract files and reference prices load, and agree with each other."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from mock_iifl.instruments import DEFAULT_DIR, InstrumentDataError, InstrumentMaster

FIELDS = {
    "exchange",
    "instrumentId",
    "tradingSymbol",
    "formattedInstrumentName",
    "underlyingInstrumentSymbol",
    "underlyingInstrumentName",
    "instrumentType",
    "series",
    "lotSize",
    "tickSize",
    "freezeQuantity",
    "expiry",
    "strikePrice",
    "optionType",
}


def test_the_shipped_master_loads_with_a_price_for_every_instrument() -> None:
    master = InstrumentMaster()
    assert set(master.contract_files) == {"NSEEQ", "NSEFO", "BSEEQ"}
    reliance = master.get("NSEEQ", "2885")
    assert reliance is not None
    assert (reliance.trading_symbol, reliance.lot_size) == ("RELIANCE-EQ", 1)
    for symbol, token in {"INFY": "1594", "TCS": "11536", "HDFCBANK": "1333", "SBIN": "3045"}.items():
        assert master.get("NSEEQ", token).trading_symbol == f"{symbol}-EQ"
    assert len([i for i in master.instruments.values() if i.exchange == "NSEEQ"]) >= 36
    for instrument in master.instruments.values():
        price = master.price(instrument)
        assert price % instrument.tick_size == 0, instrument.key
        assert instrument.freeze_quantity % instrument.lot_size == 0, instrument.key


def test_every_record_has_the_contract_file_fields_as_strings() -> None:
    for path in DEFAULT_DIR.glob("[A-Z]*.json"):
        if path.name == "reference_prices.json":
            continue
        for row in json.loads(path.read_text()):
            assert set(row) == FIELDS, (path.name, row)
            assert all(isinstance(value, str) for value in row.values())
            assert Decimal(row["tickSize"]) > 0


def test_index_futures_are_in_lots_with_a_tenth_tick() -> None:
    master = InstrumentMaster()
    futures = [i for i in master.instruments.values() if i.exchange == "NSEFO"]
    assert {(i.trading_symbol[:5], i.lot_size, i.tick_size) for i in futures} >= {
        ("NIFTY", 65, Decimal("0.10")),
        ("BANKN", 30, Decimal("0.10")),
    }


def test_a_price_off_its_tick_stops_the_load(tmp_path: Path) -> None:
    folder = tmp_path / "instruments"
    shutil.copytree(DEFAULT_DIR, folder)
    prices = json.loads((folder / "reference_prices.json").read_text())
    prices["NSEEQ"]["2885"] = "1412.33"
    (folder / "reference_prices.json").write_text(json.dumps(prices))
    with pytest.raises(InstrumentDataError, match="2885"):
        InstrumentMaster(folder)
