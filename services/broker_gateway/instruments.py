"""The instrument master: which contracts exist, how each dialect names them, and what a valid
order in them looks like (lot size, tick size, freeze quantity), read from IIFL's contract files.

The files are IIFL Capital v1's `GET /contractfiles/{SEGMENT}.json` format (data/instruments/, one
file per segment), loaded by the shared copytrade.instruments that the orders service validates
with too. XTS numbers instruments by the exchange's own token, which is the v1
instrumentId (RELIANCE is 2885 in both), in segments NSECM/NSEFO/BSECM/BSEFO.

Validation never raises: a bad order gets an Invalid with a reason that becomes that order's
result, so one bad order never ends a fan-out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType

from copytrade.instruments import DEFAULT_DIRECTORY, Contract, ContractFileError, load_contracts, symbol_key
from services.broker_gateway.brokers.base import (
    BookEntry,
    Dialect,
    Exchange,
    Instrument,
    OrderChange,
    OrderSpec,
    OrderType,
    Product,
    Side,
    Validity,
    on_tick,
)

# v1 segment file → (platform exchange, XTS segment).
SEGMENTS = {
    "NSEEQ": (Exchange.NSE, "NSECM"),
    "BSEEQ": (Exchange.BSE, "BSECM"),
    "NSEFO": (Exchange.NFO, "NSEFO"),
    "BSEFO": (Exchange.BFO, "BSEFO"),
}
TAG = re.compile(r"^[A-Za-z0-9]{1,20}$")
# Market protection is a percentage of the price; beyond this it protects nothing.
MAX_MARKET_PROTECTION = Decimal(100)


# A contract file that cannot be read; raised at start-up, never per order.
InstrumentFileError = ContractFileError


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why an order cannot be sent. `code` is INSTRUMENT_NOT_FOUND or INVALID_ORDER."""

    code: str
    reason: str
    field: str = ""


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order as it arrives, before validation: enums as proto numbers or members, prices as
    the decimal strings of the API (empty when absent)."""

    exchange: int
    symbol: str
    side: int
    order_type: int
    product: int
    quantity: int
    tag: str
    validity: int = 0
    price: str = ""
    trigger_price: str = ""
    market_protection_percent: str = ""

    @classmethod
    def from_proto(cls, order) -> OrderRequest:
        """From a copytrade.broker.v1.NewOrder."""
        return cls(
            exchange=order.instrument.exchange,
            symbol=order.instrument.symbol,
            side=order.side,
            order_type=order.order_type,
            product=order.product,
            validity=order.validity,
            quantity=order.quantity,
            price=order.price,
            trigger_price=order.trigger_price,
            tag=order.tag,
            market_protection_percent=order.market_protection_percent,
        )


def _instrument(contract: Contract) -> Instrument:
    exchange, xts_segment = SEGMENTS[contract.segment]
    return Instrument(
        exchange=exchange,
        symbol=contract.symbol,
        trading_symbol=contract.trading_symbol,
        v1_exchange=contract.segment,
        v1_instrument_id=contract.instrument_id,
        xts_segment=xts_segment,
        xts_instrument_id=int(contract.instrument_id),
        lot_size=contract.lot_size,
        tick_size=contract.tick_size,
        freeze_quantity=contract.freeze_quantity,
    )


class InstrumentMaster:
    """An immutable lookup over the contract files, built once at start-up."""

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        by_symbol: dict[tuple[Exchange, str], Instrument] = {}
        by_v1: dict[tuple[str, str], Instrument] = {}
        by_xts: dict[tuple[str, int], Instrument] = {}
        for instrument in instruments:
            for name in {instrument.symbol, instrument.trading_symbol}:
                by_symbol.setdefault((instrument.exchange, name), instrument)
            by_v1[(instrument.v1_exchange, instrument.v1_instrument_id)] = instrument
            by_xts[(instrument.xts_segment, instrument.xts_instrument_id)] = instrument
        self._by_symbol = MappingProxyType(by_symbol)
        self._by_v1 = MappingProxyType(by_v1)
        self._by_xts = MappingProxyType(by_xts)

    @classmethod
    def load(cls, directory: Path = DEFAULT_DIRECTORY) -> InstrumentMaster:
        return cls(_instrument(contract) for contract in load_contracts(directory))

    def __len__(self) -> int:
        return len(self._by_v1)

    def resolve(self, exchange: Exchange | int, symbol: str) -> Instrument | None:
        """By the platform's symbol (RELIANCE) or the exchange's (RELIANCE-EQ), case-insensitive."""
        try:
            key = (Exchange(exchange), symbol_key(symbol))
        except ValueError:
            return None
        return self._by_symbol.get(key)

    def by_v1_id(self, v1_exchange: str, instrument_id: str) -> Instrument | None:
        return self._by_v1.get((v1_exchange.upper(), str(instrument_id)))

    def by_xts_id(self, segment: str, instrument_id: int) -> Instrument | None:
        return self._by_xts.get((segment.upper(), instrument_id))

    def validate(
        self,
        order: OrderRequest,
        dialect: Dialect | str,
        *,
        algo_id: str,
        default_market_protection: Decimal | None = None,
    ) -> OrderSpec | Invalid:
        """The order ready to send, or the first reason it cannot be."""
        return _Validation(self, order, Dialect(dialect), algo_id, default_market_protection).run()

    def check_change(self, current: BookEntry, change: OrderChange) -> str | None:
        """Why a modification of `current` is invalid, or None. Used by AccountClient.modify."""
        instrument = current.instrument
        if change.quantity is not None:
            if change.quantity <= 0:
                return "quantity: must be at least 1"
            if instrument and change.quantity % instrument.lot_size:
                return f"quantity: {change.quantity} is not a multiple of the lot size {instrument.lot_size}"
            if instrument and instrument.freeze_quantity and change.quantity > instrument.freeze_quantity:
                return (
                    f"quantity: {change.quantity} is above the freeze quantity {instrument.freeze_quantity}"
                )
        for name, value in (("price", change.price), ("trigger_price", change.trigger_price)):
            if value is None:
                continue
            if value <= 0:
                return f"{name}: must be positive"
            if instrument and not on_tick(value, instrument.tick_size):
                return f"{name}: {value} is not a multiple of the tick size {instrument.tick_size}"
        return None


def _enum(kind, value):
    try:
        return kind(value)
    except ValueError:
        return None


def _price(text: str) -> Decimal | None | str:
    """Decimal, None when empty, or the text back when it is not a number."""
    if not text:
        return None
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return text
    return value if value.is_finite() else text


class _Validation:
    def __init__(
        self,
        master: InstrumentMaster,
        order: OrderRequest,
        dialect: Dialect,
        algo_id: str,
        default_protection,
    ) -> None:
        self.master = master
        self.order = order
        self.dialect = dialect
        self.algo_id = algo_id
        self.default_protection = default_protection

    def run(self) -> OrderSpec | Invalid:
        order = self.order
        if not TAG.fullmatch(order.tag or ""):
            return Invalid("INVALID_ORDER", "tag: must be 1 to 20 ASCII letters and digits", "tag")
        if order.tag.upper() == "NA":
            # IIFL v1 shows untagged orders with the tag "NA": such an order could never be found.
            return Invalid(
                "INVALID_ORDER", "tag: NA is how IIFL marks untagged orders; use another tag", "tag"
            )
        exchange = _enum(Exchange, order.exchange)
        if exchange is None:
            return Invalid("INVALID_ORDER", "instrument.exchange: is required", "instrument.exchange")
        if not order.symbol.strip():
            return Invalid("INVALID_ORDER", "instrument.symbol: is required", "instrument.symbol")
        instrument = self.master.resolve(exchange, order.symbol)
        if instrument is None:
            return Invalid(
                "INSTRUMENT_NOT_FOUND",
                f"instrument: {order.symbol.strip().upper()} is not traded on {exchange.name}",
                "instrument.symbol",
            )
        side = _enum(Side, order.side)
        order_type = _enum(OrderType, order.order_type)
        product = _enum(Product, order.product)
        validity = _enum(Validity, order.validity or Validity.DAY)
        for name, value in (
            ("side", side),
            ("order_type", order_type),
            ("product", product),
            ("validity", validity),
        ):
            if value is None:
                return Invalid("INVALID_ORDER", f"{name}: is required", name)
        quantity_problem = self._quantity(instrument)
        if quantity_problem:
            return quantity_problem
        prices = self._prices(instrument, side, order_type)
        if isinstance(prices, Invalid):
            return prices
        price, trigger = prices
        protection = self._protection(order_type)
        if isinstance(protection, Invalid):
            return protection
        return OrderSpec(
            instrument=instrument,
            side=side,
            order_type=order_type,
            product=product,
            validity=validity,
            quantity=int(order.quantity),
            price=price,
            trigger_price=trigger,
            tag=order.tag,
            market_protection_percent=protection,
            algo_id=self.algo_id,
        )

    def _quantity(self, instrument: Instrument) -> Invalid | None:
        quantity = self.order.quantity
        if quantity <= 0:
            return Invalid("INVALID_ORDER", "quantity: must be at least 1", "quantity")
        if quantity % instrument.lot_size:
            return Invalid(
                "INVALID_ORDER",
                f"quantity: {quantity} is not a multiple of the lot size {instrument.lot_size} of {instrument.symbol}",
                "quantity",
            )
        if instrument.freeze_quantity is not None and quantity > instrument.freeze_quantity:
            return Invalid(
                "INVALID_ORDER",
                f"quantity: {quantity} is above the exchange's freeze quantity {instrument.freeze_quantity} "
                f"for {instrument.symbol}; split the order",
                "quantity",
            )
        return None

    def _prices(
        self, instrument: Instrument, side: Side, order_type: OrderType
    ) -> Invalid | tuple[Decimal | None, Decimal | None]:
        price = self._price_field("price", self.order.price, instrument)
        if isinstance(price, Invalid):
            return price
        trigger = self._price_field("trigger_price", self.order.trigger_price, instrument)
        if isinstance(trigger, Invalid):
            return trigger
        needs_price = order_type in (OrderType.LIMIT, OrderType.SL)
        needs_trigger = order_type in (OrderType.SL, OrderType.SL_M)
        kind = order_type.name
        if needs_price and price is None:
            return Invalid("INVALID_ORDER", f"price: is required for a {kind} order", "price")
        if not needs_price and price is not None:
            return Invalid("INVALID_ORDER", f"price: must be empty for a {kind} order", "price")
        if needs_trigger and trigger is None:
            return Invalid("INVALID_ORDER", f"trigger_price: is required for a {kind} order", "trigger_price")
        if not needs_trigger and trigger is not None:
            return Invalid(
                "INVALID_ORDER", f"trigger_price: must be empty for a {kind} order", "trigger_price"
            )
        if order_type is OrderType.SL and price is not None and trigger is not None:
            # A buy stop triggers on the way up and buys at most at its limit; a sell stop mirrors it.
            if side is Side.BUY and trigger > price:
                return Invalid(
                    "INVALID_ORDER",
                    "trigger_price: must not be above the price of a BUY stop-loss order",
                    "trigger_price",
                )
            if side is Side.SELL and trigger < price:
                return Invalid(
                    "INVALID_ORDER",
                    "trigger_price: must not be below the price of a SELL stop-loss order",
                    "trigger_price",
                )
        return price, trigger

    @staticmethod
    def _price_field(name: str, text: str, instrument: Instrument) -> Invalid | Decimal | None:
        value = _price(text)
        if isinstance(value, str):
            return Invalid("INVALID_ORDER", f"{name}: {value!r} is not a decimal number", name)
        if value is not None and value <= 0:
            return Invalid("INVALID_ORDER", f"{name}: must be positive", name)
        if value is not None and not on_tick(value, instrument.tick_size):
            return Invalid(
                "INVALID_ORDER",
                f"{name}: {value} is not a multiple of the tick size {instrument.tick_size} of {instrument.symbol}",
                name,
            )
        return value

    def _protection(self, order_type: OrderType) -> Decimal | None | Invalid:
        # MARKET needs it on IIFL v1 (2026 rules); SL-M always, since it becomes an SL order whose
        # limit is derived from it, on both dialects.
        required = order_type is OrderType.SL_M or (
            order_type is OrderType.MARKET and self.dialect is Dialect.IIFL_CAPITAL_V1
        )
        if order_type not in (OrderType.MARKET, OrderType.SL_M):
            return None
        value = _price(self.order.market_protection_percent)
        if value is None:
            value = self.default_protection
        if isinstance(value, str):
            return Invalid(
                "INVALID_ORDER",
                f"market_protection_percent: {value!r} is not a decimal number",
                "market_protection_percent",
            )
        if value is None:
            if required:
                return Invalid(
                    "INVALID_ORDER",
                    f"market_protection_percent: is required for a {order_type.name} order (SEBI rules since 2026-04-01)",
                    "market_protection_percent",
                )
            return None
        if not 0 < value < MAX_MARKET_PROTECTION:
            return Invalid(
                "INVALID_ORDER",
                "market_protection_percent: must be above 0 and below 100",
                "market_protection_percent",
            )
        return value
