"""How many units a follower's copy of a master order carries, by the follower's copy strategy.

Pure and Decimal-only: quantities are whole units, prices and capital are rupees as Decimal.

Decisions:
- PERCENTAGE divides `percentage`% of the follower's capital by the order's price: the limit price
  for LIMIT and SL, the trigger price for SL-M, and for MARKET the master's price when the order
  carries one, else the instrument's reference price (the instrument master's last known price). With
  no price at all the copy is SKIPPED (NO_PRICE) rather than sized on a guess.
- Every result is rounded DOWN to a whole number of lots, then capped by the follower's
  `max_quantity` (itself rounded down to lots, so the cap never produces an off-lot order).
- Above the exchange's freeze quantity the order is CAPPED to it: the follower still copies the
  trade, at the largest size one order may carry, instead of losing it or being split into slices
  the master never placed.
- A BUY whose value (units x price) exceeds the follower's capital is SKIPPED with
  INSUFFICIENT_FUNDS; a SELL is not checked (it closes a position the broker already funds).
- Zero units after all of this is SKIPPED with SIZED_TO_ZERO.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

FIXED_RATIO = "FIXED_RATIO"
PERCENTAGE = "PERCENTAGE"
FIXED_QUANTITY = "FIXED_QUANTITY"
STRATEGIES = (FIXED_RATIO, PERCENTAGE, FIXED_QUANTITY)

SIZED_TO_ZERO = "SIZED_TO_ZERO"
INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
NO_PRICE = "NO_PRICE"
UNKNOWN_STRATEGY = "UNKNOWN_STRATEGY"


@dataclass(frozen=True)
class Strategy:
    """A follower's copy settings (one subscription)."""

    kind: str
    ratio: Decimal = Decimal(1)
    percentage: Decimal = Decimal(0)
    fixed_quantity: int = 0
    max_quantity: int = 0  # 0: no cap


@dataclass(frozen=True)
class MasterOrder:
    """What of the master's order sizing needs."""

    side: str  # BUY or SELL
    order_type: str  # MARKET, LIMIT, SL, SL-M
    quantity: int
    price: Decimal | None  # limit price; None for MARKET and SL-M
    trigger_price: Decimal | None


@dataclass(frozen=True)
class Contract:
    """What of the instrument sizing needs."""

    lot_size: int
    freeze_quantity: int | None
    reference_price: Decimal | None


@dataclass(frozen=True)
class Sized:
    """Units to place (> 0), or a skip with its reason code and words."""

    quantity: int
    skip_code: str = ""
    skip_reason: str = ""

    @property
    def skipped(self) -> bool:
        return bool(self.skip_code)


def order_price(order: MasterOrder, contract: Contract) -> Decimal | None:
    """The price a copy is valued at (see the module's decisions)."""
    if order.price is not None:
        return order.price
    if order.order_type == "SL-M" and order.trigger_price is not None:
        return order.trigger_price
    return contract.reference_price


def _whole_lots(units: Decimal, lot_size: int) -> int:
    lots = (units / lot_size).to_integral_value(rounding=ROUND_FLOOR)
    return max(int(lots), 0) * lot_size


def size(order: MasterOrder, strategy: Strategy, contract: Contract, capital: Decimal) -> Sized:
    price = order_price(order, contract)
    if strategy.kind == FIXED_RATIO:
        units = Decimal(order.quantity) * strategy.ratio
    elif strategy.kind == FIXED_QUANTITY:
        units = Decimal(strategy.fixed_quantity)
    elif strategy.kind == PERCENTAGE:
        if price is None or price <= 0:
            return Sized(0, NO_PRICE, "no price to size a percentage of capital by")
        units = capital * strategy.percentage / 100 / price
    else:
        return Sized(0, UNKNOWN_STRATEGY, f"unknown copy strategy {strategy.kind!r}")

    quantity = _whole_lots(units, contract.lot_size)
    if strategy.max_quantity > 0:
        quantity = min(quantity, _whole_lots(Decimal(strategy.max_quantity), contract.lot_size))
    if contract.freeze_quantity:
        quantity = min(quantity, _whole_lots(Decimal(contract.freeze_quantity), contract.lot_size))
    if quantity <= 0:
        return Sized(0, SIZED_TO_ZERO, f"sized to less than one lot of {contract.lot_size}")
    if order.side == "BUY" and price is not None and quantity * price > capital:
        return Sized(
            0, INSUFFICIENT_FUNDS, f"needs ₹{quantity * price} for {quantity} units, capital is ₹{capital}"
        )
    return Sized(quantity)
