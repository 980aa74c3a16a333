"""One account's orders, trades and positions, in dialect-neutral form.

Statuses are the mock's own; each dialect renders them in its broker's words (iifl_v1.py, xts.py).
Products are kept in v1's names (DELIVERY, INTRADAY, NORMAL, BNPL); XTS maps CNC, MIS, NRML onto them.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from mock_iifl.instruments import Instrument

RECEIVED = "RECEIVED"  # accepted for routing, not yet at the exchange
OPEN = "OPEN"
TRIGGER_PENDING = "TRIGGER_PENDING"  # a stop order waiting for its trigger price
PARTIAL = "PARTIALLY_FILLED"
COMPLETE = "COMPLETE"
REJECTED = "REJECTED"
CANCELLED = "CANCELLED"
TERMINAL = frozenset({COMPLETE, REJECTED, CANCELLED})
WORKING = frozenset({OPEN, PARTIAL})

ZERO = Decimal(0)
PAISE = Decimal("0.01")
# Share of an order's value blocked as margin, by product. Selling delivery stock blocks nothing.
MARGIN_RATE = {"DELIVERY": Decimal(1), "BNPL": Decimal("0.25"), "INTRADAY": Decimal("0.2")}
MARGIN_RATE_NORMAL = {True: Decimal("0.15"), False: Decimal(1)}  # keyed by is_derivative


@dataclass(eq=False, slots=True)
class Snapshot:
    """The order as it was after one change: the rows of an order-history call."""

    at: datetime
    status: str
    quantity: int
    filled: int
    cancelled: int
    average_price: Decimal
    price: Decimal
    trigger_price: Decimal
    order_type: str
    rejection_reason: str
    modified: bool


@dataclass(eq=False, slots=True)
class Order:
    seq: int
    order_id: str  # v1 brokerOrderId, or the XTS AppOrderID in decimal
    session_token: str
    instrument: Instrument
    side: str  # BUY, SELL
    quantity: int
    order_type: str  # LIMIT, MARKET, SL (stop-limit); SLM never gets this far
    product: str
    validity: str  # DAY, IOC
    price: Decimal
    trigger_price: Decimal
    disclosed_quantity: int
    market_protection: Decimal
    tag: str
    created_at: datetime
    updated_at: datetime
    # When the request carrying it arrived, before the broker's latency (created_at is after it).
    received_at: datetime
    # What the client sent that the mock only echoes (algoId, apiOrderSource, orderComplexity).
    echo: dict[str, Any] = field(default_factory=dict)
    status: str = RECEIVED
    filled: int = 0
    traded_value: Decimal = ZERO
    cancelled: int = 0
    exchange_order_id: str = ""
    exchange_time: datetime | None = None
    rejection_reason: str = ""
    modified: bool = False
    cancel_requested: bool = False
    # Decided when placed: a rejection the exchange will send, and the sizes of the fills to come.
    planned_reject: str = ""
    tranches: list[int] = field(default_factory=list)
    blocked_margin: Decimal = ZERO
    history: list[Snapshot] = field(default_factory=list)
    # The pending lifecycle step (an asyncio TimerHandle), and a pending cancel.
    timer: Any = None
    cancel_timer: Any = None

    @property
    def average_price(self) -> Decimal:
        return (self.traded_value / self.filled).quantize(PAISE) if self.filled else ZERO

    @property
    def remaining(self) -> int:
        return self.quantity - self.filled - self.cancelled

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def record(self, now: datetime) -> None:
        self.updated_at = now
        self.history.append(
            Snapshot(
                now,
                self.status,
                self.quantity,
                self.filled,
                self.cancelled,
                self.average_price,
                self.price,
                self.trigger_price,
                self.order_type,
                self.rejection_reason,
                self.modified,
            )
        )

    def stop_timers(self) -> None:
        for handle in (self.timer, self.cancel_timer):
            if handle is not None:
                handle.cancel()
        self.timer = self.cancel_timer = None


@dataclass(eq=False, slots=True)
class Trade:
    trade_id: str
    order: Order
    quantity: int
    price: Decimal
    at: datetime


@dataclass(slots=True)
class Position:
    instrument: Instrument
    product: str
    buy_quantity: int = 0
    sell_quantity: int = 0
    buy_value: Decimal = ZERO
    sell_value: Decimal = ZERO

    @property
    def net_quantity(self) -> int:
        return self.buy_quantity - self.sell_quantity

    @property
    def buy_average(self) -> Decimal:
        return (self.buy_value / self.buy_quantity).quantize(PAISE) if self.buy_quantity else ZERO

    @property
    def sell_average(self) -> Decimal:
        return (self.sell_value / self.sell_quantity).quantize(PAISE) if self.sell_quantity else ZERO

    @property
    def net_average(self) -> Decimal:
        if self.net_quantity > 0:
            return self.buy_average
        if self.net_quantity < 0:
            return self.sell_average
        return ZERO

    @property
    def realized_pnl(self) -> Decimal:
        closed = min(self.buy_quantity, self.sell_quantity)
        if not closed:
            return ZERO
        return ((self.sell_average - self.buy_average) * closed).quantize(PAISE)


@dataclass(eq=False)
class OrderBook:
    orders: list[Order] = field(default_factory=list)
    by_id: dict[str, Order] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)
    # Ground truth for "nothing doubled": how many orders each tag really made, across sessions.
    tag_counts: dict[str, int] = field(default_factory=dict)
    untagged: int = 0
    # Requests as received: order items placed (including refused and deduplicated), etc.
    place_items: int = 0
    dedupe_hits: int = 0
    refused: int = 0
    modifies: int = 0
    cancels: int = 0
    utilized_margin: Decimal = ZERO

    def add(self, order: Order) -> None:
        self.orders.append(order)
        self.by_id[order.order_id] = order
        if order.tag:
            self.tag_counts[order.tag] = self.tag_counts.get(order.tag, 0) + 1
        else:
            self.untagged += 1

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.tag_counts.values() if count > 1)

    def by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for order in self.orders:
            counts[order.status] = counts.get(order.status, 0) + 1
        return counts

    def positions(self) -> list[Position]:
        positions: dict[tuple[str, str], Position] = {}
        for trade in self.trades:
            order = trade.order
            key = (order.instrument.key, order.product)
            position = positions.get(key)
            if position is None:
                position = positions[key] = Position(order.instrument, order.product)
            value = trade.price * trade.quantity
            if order.side == "BUY":
                position.buy_quantity += trade.quantity
                position.buy_value += value
            else:
                position.sell_quantity += trade.quantity
                position.sell_value += value
        return list(positions.values())


class TagIndex:
    """Every tagged order of every account, sorted by tag: the orders whose tag starts with a
    prefix are one run of it, found by bisection, whatever the number of orders.

    Two parallel lists rather than (tag, order) pairs: orders do not compare, and equal tags are
    legal (across sessions). Inserting moves only the entries after the new tag; a fan-out's tags
    share a prefix that grows with its master order, so new tags land near the end.
    """

    def __init__(self) -> None:
        self._tags: list[str] = []
        self._orders: list[Order] = []

    def add(self, order: Order) -> None:
        at = bisect_right(self._tags, order.tag)
        self._tags.insert(at, order.tag)
        self._orders.insert(at, order)

    def starting_with(self, prefix: str) -> Iterator[Order]:
        tags = self._tags
        at = bisect_left(tags, prefix)
        while at < len(tags) and tags[at].startswith(prefix):
            yield self._orders[at]
            at += 1


def margin_rate(order: Order) -> Decimal:
    if order.product == "DELIVERY" and order.side == "SELL":
        return ZERO
    if order.product == "NORMAL":
        return MARGIN_RATE_NORMAL[order.instrument.is_derivative]
    return MARGIN_RATE.get(order.product, Decimal(1))
