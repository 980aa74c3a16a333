"""The instrument master the mock trades against: data/instruments/ (format in its README.md).

Each `<SEGMENT>.json` is served as it is at /v1/contractfiles/<SEGMENT>.json, and read here for the
lot size, tick size and freeze quantity every order is checked against. reference_prices.json gives
the price orders fill at; the control API may move it during a run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "data" / "instruments"
PRICES_FILE = "reference_prices.json"
# XTS names the same segments differently and also by number; its instrument ids are the same.
XTS_SEGMENTS = {"NSECM": "NSEEQ", "NSEFO": "NSEFO", "BSECM": "BSEEQ"}
XTS_SEGMENT_NUMBERS = {1: "NSECM", 2: "NSEFO", 11: "BSECM"}
V1_TO_XTS = {segment: xts for xts, segment in XTS_SEGMENTS.items()}


class InstrumentDataError(ValueError):
    """The instrument master is missing a field or contradicts itself; the mock does not start."""


@dataclass(frozen=True, slots=True)
class Instrument:
    exchange: str  # the v1 segment: NSEEQ, NSEFO, BSEEQ
    instrument_id: str
    trading_symbol: str
    name: str
    instrument_type: str
    lot_size: int
    tick_size: Decimal
    freeze_quantity: int

    @property
    def key(self) -> str:
        return f"{self.exchange}:{self.instrument_id}"

    @property
    def is_derivative(self) -> bool:
        return self.exchange.endswith("FO")


class InstrumentMaster:
    def __init__(self, folder: Path = DEFAULT_DIR) -> None:
        self.folder = folder
        self.instruments: dict[str, Instrument] = {}
        # The contract files as served: loaded once, sent as bytes.
        self.contract_files: dict[str, bytes] = {}
        self.initial_prices: dict[str, Decimal] = {}
        for path in sorted(folder.glob("*.json")):
            if path.name == PRICES_FILE:
                continue
            self._load_segment(path)
        self._load_prices(folder / PRICES_FILE)
        self.prices = dict(self.initial_prices)

    def get(self, exchange: str, instrument_id: str) -> Instrument | None:
        return self.instruments.get(f"{exchange}:{instrument_id}")

    def price(self, instrument: Instrument) -> Decimal:
        return self.prices[instrument.key]

    def reset_prices(self) -> None:
        self.prices = dict(self.initial_prices)

    def _load_segment(self, path: Path) -> None:
        segment = path.stem
        raw = path.read_bytes()
        rows: list[dict[str, Any]] = json.loads(raw)
        for row in rows:
            try:
                instrument = Instrument(
                    exchange=row["exchange"],
                    instrument_id=row["instrumentId"],
                    trading_symbol=row["tradingSymbol"],
                    name=row["formattedInstrumentName"],
                    instrument_type=row["instrumentType"],
                    lot_size=int(row["lotSize"]),
                    tick_size=Decimal(row["tickSize"]),
                    freeze_quantity=int(row["freezeQuantity"]),
                )
            except (KeyError, ValueError, ArithmeticError) as exc:
                raise InstrumentDataError(f"{path.name}: bad record {row!r}: {exc!r}") from exc
            if instrument.exchange != segment:
                raise InstrumentDataError(f"{path.name}: {instrument.key} belongs to another segment")
            if instrument.freeze_quantity % instrument.lot_size:
                raise InstrumentDataError(f"{path.name}: {instrument.key} freeze quantity is not whole lots")
            self.instruments[instrument.key] = instrument
        self.contract_files[segment] = raw

    def _load_prices(self, path: Path) -> None:
        by_segment: dict[str, dict[str, str]] = json.loads(path.read_text())
        for segment, prices in by_segment.items():
            for instrument_id, text in prices.items():
                instrument = self.get(segment, instrument_id)
                if instrument is None:
                    raise InstrumentDataError(f"{path.name}: {segment}:{instrument_id} is not in the master")
                price = Decimal(text)
                if price <= 0 or price % instrument.tick_size:
                    raise InstrumentDataError(f"{path.name}: {instrument.key} price {text} is off its tick")
                self.initial_prices[instrument.key] = price
        missing = set(self.instruments) - set(self.initial_prices)
        if missing:
            raise InstrumentDataError(f"{path.name}: no reference price for {sorted(missing)}")
