"""The instrument master every service validates against: which contracts exist and what a valid
order in each looks like (lot size, tick size, freeze quantity).

Read from IIFL Capital v1's contract files (`GET /contractfiles/{SEGMENT}.json`, kept in
data/instruments/, one file per segment). This module knows nothing of broker dialects: the broker
gateway builds its dialect naming on top of it (services/broker_gateway/instruments.py), the orders
service validates placements with it, and both therefore accept exactly the same orders.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType

from copytrade.core.settings import PROJECT_ROOT

DEFAULT_DIRECTORY = PROJECT_ROOT / "data" / "instruments"
# Contract file (IIFL v1 segment) → the platform's exchange name.
SEGMENT_EXCHANGES = {"NSEEQ": "NSE", "BSEEQ": "BSE", "NSEFO": "NFO", "BSEFO": "BFO"}
EXCHANGES = tuple(SEGMENT_EXCHANGES.values())


class ContractFileError(ValueError):
    """A contract file that cannot be read; raised at start-up, never per order."""


@dataclass(frozen=True, slots=True)
class Contract:
    """One tradable contract, as the contract file describes it."""

    exchange: str  # the platform's: NSE, BSE, NFO, BFO
    symbol: str  # the platform's: RELIANCE, NIFTY26APRFUT
    trading_symbol: str  # the exchange's: RELIANCE-EQ
    segment: str  # the contract file: NSEEQ, NSEFO, BSEEQ, BSEFO
    instrument_id: str  # the exchange token, the same in both IIFL dialects
    lot_size: int
    tick_size: Decimal
    freeze_quantity: int | None  # None: no freeze limit published


def symbol_key(symbol: str) -> str:
    return symbol.strip().upper()


def platform_symbol(trading_symbol: str) -> str:
    # NSE cash symbols carry their series (RELIANCE-EQ); the platform names them without it.
    return trading_symbol.removesuffix("-EQ")


def on_tick(value: Decimal, tick: Decimal) -> bool:
    return value % tick == 0


def _contract(segment: str, row: Mapping[str, object], source: str) -> Contract:
    try:
        instrument_id = str(row["instrumentId"]).strip()
        trading_symbol = symbol_key(str(row["tradingSymbol"]))
        lot_size = int(str(row.get("lotSize") or "1"))
        tick_size = Decimal(str(row["tickSize"]))
        freeze_text = str(row.get("freezeQuantity") or "").strip()
        freeze = int(Decimal(freeze_text)) if freeze_text else None
    except (KeyError, ValueError, InvalidOperation) as exc:
        raise ContractFileError(f"{source}: bad row {row!r}: {exc}") from None
    if not instrument_id.isdigit() or lot_size < 1 or tick_size <= 0 or (freeze is not None and freeze < 1):
        raise ContractFileError(f"{source}: bad row {row!r}")
    return Contract(
        exchange=SEGMENT_EXCHANGES[segment],
        symbol=platform_symbol(trading_symbol),
        trading_symbol=trading_symbol,
        segment=segment,
        instrument_id=instrument_id,
        lot_size=lot_size,
        tick_size=tick_size,
        freeze_quantity=freeze,
    )


def load_contracts(directory: Path = DEFAULT_DIRECTORY) -> list[Contract]:
    """Every contract in the directory's segment files; a missing segment file is simply absent."""
    contracts: list[Contract] = []
    for segment in SEGMENT_EXCHANGES:
        path = directory / f"{segment}.json"
        if not path.exists():
            continue
        try:
            rows = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ContractFileError(f"{path}: {exc}") from None
        if not isinstance(rows, list):
            raise ContractFileError(f"{path}: expected a JSON array of contracts")
        contracts.extend(_contract(segment, row, str(path)) for row in rows)
    if not contracts:
        raise ContractFileError(f"no contract files ({', '.join(SEGMENT_EXCHANGES)}.json) in {directory}")
    return contracts


class ContractMaster:
    """An immutable lookup by (exchange, symbol), built once at start-up."""

    def __init__(self, contracts: Iterable[Contract]) -> None:
        by_symbol: dict[tuple[str, str], Contract] = {}
        count = 0
        for contract in contracts:
            count += 1
            for name in {contract.symbol, contract.trading_symbol}:
                by_symbol.setdefault((contract.exchange, name), contract)
        self._by_symbol = MappingProxyType(by_symbol)
        self._count = count

    @classmethod
    def load(cls, directory: Path = DEFAULT_DIRECTORY) -> ContractMaster:
        return cls(load_contracts(directory))

    def __len__(self) -> int:
        return self._count

    def resolve(self, exchange: str, symbol: str) -> Contract | None:
        """By the platform's symbol (RELIANCE) or the exchange's (RELIANCE-EQ), case-insensitive."""
        return self._by_symbol.get((exchange.strip().upper(), symbol_key(symbol)))
