"""Turning a PlaceOrderRequest into a valid order, or an INVALID_ARGUMENT naming the field.

Checks run in the order a person would fix them (what, where, how, how much, at what price), and the
first failure is the answer. The instrument rules come from the shared instrument master, so an order
accepted here is one the broker gateway will accept too.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from decimal import Decimal

from copytrade.core.errors import InvalidArgument
from copytrade.instruments import EXCHANGES, Contract, ContractMaster, on_tick
from copytrade.orders.v1 import orders_pb2

SIDES = ("BUY", "SELL")
ORDER_TYPES = ("MARKET", "LIMIT", "SL", "SL-M")
ORDER_TYPE_ALIASES = {"SLM": "SL-M", "SL_M": "SL-M"}
PRODUCTS = ("CNC", "MIS", "NRML")
VALIDITIES = ("DAY", "IOC")
CASH_EXCHANGES = ("NSE", "BSE")
# CNC is delivery of shares and NRML carries derivatives overnight; brokers refuse the other pairings.
PRODUCTS_BY_EXCHANGE = {
    "NSE": ("CNC", "MIS"),
    "BSE": ("CNC", "MIS"),
    "NFO": ("MIS", "NRML"),
    "BFO": ("MIS", "NRML"),
}
MAX_IDEMPOTENCY_KEY = 64
# Far above any listed price, far below what NUMERIC(18, 4) holds: a typo, not a trade.
MAX_PRICE = Decimal(10) ** 9
# How much of a wrong value an error message repeats back.
ECHO = 24


@dataclass(frozen=True, slots=True)
class NewOrder:
    """A validated order, in the platform's names, ready to store."""

    symbol: str
    exchange: str
    side: str
    order_type: str
    product: str
    validity: str
    quantity: int
    price: Decimal | None
    trigger_price: Decimal | None
    idempotency_key: str | None

    def fingerprint(self) -> str:
        """What makes two requests "the same order" for idempotency: every field but the key."""
        text = "|".join(
            str(value)
            for value in (
                self.symbol, self.exchange, self.side, self.order_type, self.product, self.validity,
                self.quantity, _canonical(self.price), _canonical(self.trigger_price),
            )
        )  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()


def _canonical(value: Decimal | None) -> str:
    # 2450.5 and 2450.50 are the same price.
    return "" if value is None else format(value.normalize(), "f")


def choice(value: str, allowed: tuple[str, ...], field: str, *, aliases: dict[str, str] | None = None) -> str:
    normalised = value.strip().upper()
    normalised = (aliases or {}).get(normalised, normalised)
    if not normalised:
        raise InvalidArgument(f"is required (one of {', '.join(allowed)})", field=field)
    if normalised not in allowed:
        raise InvalidArgument(f"{value.strip()[:ECHO]!r} is not one of {', '.join(allowed)}", field=field)
    return normalised


def money(value: float, field: str) -> Decimal | None:
    """A request price: None when 0 (proto3's absent), else the exact decimal the client sent."""
    if math.isnan(value) or math.isinf(value):
        raise InvalidArgument("must be a finite number", field=field)
    if value < 0:
        raise InvalidArgument("must be positive", field=field)
    if value == 0:
        return None
    # repr is the shortest text that reads back as the same double: 2450.5 for the JSON 2450.50.
    exact = Decimal(repr(value))
    if exact >= MAX_PRICE:
        raise InvalidArgument(f"must be below {MAX_PRICE:,.0f} rupees", field=field)
    return exact


def idempotency_key(from_body: str, from_header: str | None) -> str | None:
    body = from_body.strip()
    header = (from_header or "").strip()
    if body and header and body != header:
        raise InvalidArgument(
            "differs from the Idempotency-Key header; send one, or both equal", field="idempotency_key"
        )
    key = body or header
    if not key:
        return None
    if len(key) > MAX_IDEMPOTENCY_KEY or not all(" " < ch <= "~" for ch in key):
        raise InvalidArgument(
            f"must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters without spaces",
            field="idempotency_key",
        )
    return key


def new_order(
    request: orders_pb2.PlaceOrderRequest, instruments: ContractMaster, header_key: str | None
) -> NewOrder:
    key = idempotency_key(request.idempotency_key, header_key)
    exchange = choice(request.exchange or "NSE", EXCHANGES, "exchange")
    if not request.symbol.strip():
        raise InvalidArgument("is required", field="symbol")
    contract = instruments.resolve(exchange, request.symbol)
    if contract is None:
        raise InvalidArgument(
            f"{request.symbol.strip().upper()[:ECHO]} is not traded on {exchange}", field="symbol"
        )
    side = choice(request.side, SIDES, "side")
    order_type = choice(request.order_type, ORDER_TYPES, "order_type", aliases=ORDER_TYPE_ALIASES)
    product = _product(request.product, exchange)
    validity = choice(request.validity or "DAY", VALIDITIES, "validity")
    _check_quantity(request.quantity, contract)
    price, trigger = _prices(request, contract, side, order_type)
    return NewOrder(
        symbol=contract.symbol,
        exchange=exchange,
        side=side,
        order_type=order_type,
        product=product,
        validity=validity,
        quantity=request.quantity,
        price=price,
        trigger_price=trigger,
        idempotency_key=key,
    )


def _product(value: str, exchange: str) -> str:
    if not value.strip():
        return "CNC" if exchange in CASH_EXCHANGES else "NRML"
    product = choice(value, PRODUCTS, "product")
    if product not in PRODUCTS_BY_EXCHANGE[exchange]:
        raise InvalidArgument(
            f"{product} is not available on {exchange} (use {' or '.join(PRODUCTS_BY_EXCHANGE[exchange])})",
            field="product",
        )
    return product


def _check_quantity(quantity: int, contract: Contract) -> None:
    if quantity <= 0:
        raise InvalidArgument("must be at least 1", field="quantity")
    if quantity % contract.lot_size:
        raise InvalidArgument(
            f"{quantity} is not a multiple of the lot size {contract.lot_size} of {contract.symbol}",
            field="quantity",
        )
    if contract.freeze_quantity is not None and quantity > contract.freeze_quantity:
        raise InvalidArgument(
            f"{quantity} is above the exchange's freeze quantity {contract.freeze_quantity} for {contract.symbol}; "
            "split the order",
            field="quantity",
        )


def _prices(
    request: orders_pb2.PlaceOrderRequest, contract: Contract, side: str, order_type: str
) -> tuple[Decimal | None, Decimal | None]:
    price = money(request.price, "price")
    trigger = money(request.trigger_price, "trigger_price")
    for field, value in (("price", price), ("trigger_price", trigger)):
        if value is not None and not on_tick(value, contract.tick_size):
            raise InvalidArgument(
                f"{value} is not a multiple of the tick size {contract.tick_size} of {contract.symbol}",
                field=field,
            )
    if order_type in ("LIMIT", "SL") and price is None:
        raise InvalidArgument(f"is required for a {order_type} order", field="price")
    if order_type in ("SL", "SL-M") and trigger is None:
        raise InvalidArgument(f"is required for a {order_type} order", field="trigger_price")
    if order_type in ("MARKET", "LIMIT") and trigger is not None:
        raise InvalidArgument(f"must be empty for a {order_type} order", field="trigger_price")
    if order_type == "SL" and price is not None and trigger is not None:
        # A buy stop triggers on the way up and buys at most at its limit; a sell stop mirrors it.
        if side == "BUY" and trigger > price:
            raise InvalidArgument(
                "must not be above the price of a BUY stop-loss order", field="trigger_price"
            )
        if side == "SELL" and trigger < price:
            raise InvalidArgument(
                "must not be below the price of a SELL stop-loss order", field="trigger_price"
            )
    return price, trigger
