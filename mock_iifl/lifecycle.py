"""The exchange side: orders move on timers, fill at the reference price, and block margin.

    accepted (RECEIVED) --ack_ms--> OPEN, or TRIGGER_PENDING for a stop order, or REJECTED
    OPEN --fill_ms--> PARTIALLY_FILLED --fill_ms--> ... COMPLETE   while the price allows it
    any working state --cancel, after ack_ms--> CANCELLED

A MARKET order always fills; a LIMIT order fills when the reference price is at or better than its
limit and otherwise rests until the price moves (POST /_mock/prices) or it is modified; a stop order
waits for the price to cross its trigger and then behaves as a LIMIT. IOC cancels whatever cannot
fill at once. Every step is a synchronous callback on the event loop, so no step races another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from itertools import count

from mock_iifl import orderbook as ob
from mock_iifl.accounts import Account
from mock_iifl.clock import Clock
from mock_iifl.config import Lifecycle as LifecycleConfig
from mock_iifl.instruments import InstrumentMaster


class Ids:
    """Broker-wide sequences: order numbers, exchange order numbers, trade numbers."""

    def __init__(self) -> None:
        self._orders = count(1)
        self._exchange = count(1)
        self._trades = count(1)

    def order_seq(self) -> int:
        return next(self._orders)

    def exchange_order_id(self) -> str:
        # NSE order numbers are 16 digits.
        return f"1100000{next(self._exchange):09d}"

    def trade_id(self) -> str:
        return f"{50_000_000 + next(self._trades)}"


def marketable(order: ob.Order, price: Decimal) -> bool:
    if order.order_type == "MARKET":
        return True
    return price <= order.price if order.side == "BUY" else price >= order.price


def triggered(order: ob.Order, price: Decimal) -> bool:
    return price >= order.trigger_price if order.side == "BUY" else price <= order.trigger_price


class Lifecycle:
    def __init__(
        self, clock: Clock, master: InstrumentMaster, ids: Ids, settings: Callable[[], LifecycleConfig]
    ) -> None:
        self.clock = clock
        self.master = master
        self.ids = ids
        self._settings = settings

    def accept(self, account: Account, order: ob.Order) -> None:
        order.record(order.created_at)
        order.timer = self._after(self._settings().ack_ms, self._ack, account, order)

    def evaluate(self, account: Account, order: ob.Order) -> None:
        """Schedule what the reference price now allows: a trigger, a fill, or an IOC's end."""
        if order.timer is not None or order.terminal or order.status == ob.RECEIVED:
            return
        price = self.master.price(order.instrument)
        if order.status == ob.TRIGGER_PENDING:
            if not triggered(order, price):
                return
            order.status = ob.OPEN
            order.record(self.clock.now())
        if marketable(order, price):
            order.timer = self._after(self._settings().fill_ms, self._fill, account, order)
        elif order.validity == "IOC":
            self._cancel_rest(account, order)

    def modified(self, account: Account, order: ob.Order) -> None:
        """After the caller changed an order's terms: re-block margin and start matching afresh."""
        if order.timer is not None and order.status != ob.RECEIVED:
            order.timer.cancel()
            order.timer = None
        order.modified = True
        if order.status in ob.WORKING and order.order_type == "SL" and not order.filled:
            order.status = ob.TRIGGER_PENDING
        elif order.status == ob.TRIGGER_PENDING and order.order_type != "SL":
            order.status = ob.OPEN
        if order.status != ob.RECEIVED:
            self._release(account, order, order.blocked_margin)
            self._block(account, order, check=False)
        order.record(self.clock.now())
        self.evaluate(account, order)

    def cancel(self, account: Account, order: ob.Order) -> None:
        """The client asked; the exchange confirms after ack_ms, and a fill may get there first."""
        order.cancel_requested = True
        delay = self._settings().ack_ms
        if delay == 0:
            self._land_cancel(account, order)
        else:
            order.cancel_timer = self._after(delay, self._land_cancel, account, order)

    def _after(
        self, ms: float, step: Callable[[Account, ob.Order], None], account: Account, order: ob.Order
    ) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(ms / 1000, step, account, order)

    def _ack(self, account: Account, order: ob.Order) -> None:
        order.timer = None
        if order.status != ob.RECEIVED:
            return
        order.exchange_order_id = self.ids.exchange_order_id()
        order.exchange_time = self.clock.now()
        reason = order.planned_reject or self._block(account, order, check=True)
        if reason:
            order.status = ob.REJECTED
            order.rejection_reason = reason
            order.cancelled = order.remaining
            self._release(account, order, order.blocked_margin)
            order.record(self.clock.now())
            return
        order.status = ob.TRIGGER_PENDING if order.order_type == "SL" else ob.OPEN
        order.record(self.clock.now())
        self.evaluate(account, order)

    def _fill(self, account: Account, order: ob.Order) -> None:
        order.timer = None
        if order.status not in ob.WORKING:
            return
        price = self.master.price(order.instrument)
        if not marketable(order, price):
            if order.validity == "IOC":
                self._cancel_rest(account, order)
            return
        quantity = min(order.tranches.pop(0) if order.tranches else order.remaining, order.remaining)
        now = self.clock.now()
        account.book.trades.append(ob.Trade(self.ids.trade_id(), order, quantity, price, now))
        order.filled += quantity
        order.traded_value += price * quantity
        order.status = ob.COMPLETE if order.remaining == 0 else ob.PARTIAL
        order.record(now)
        if order.status == ob.PARTIAL:
            if order.validity == "IOC":
                self._cancel_rest(account, order)
            else:
                order.timer = self._after(self._settings().fill_ms, self._fill, account, order)

    def _land_cancel(self, account: Account, order: ob.Order) -> None:
        order.cancel_timer = None
        if not order.terminal:
            self._cancel_rest(account, order)

    def _cancel_rest(self, account: Account, order: ob.Order) -> None:
        if order.timer is not None:
            order.timer.cancel()
            order.timer = None
        unfilled = order.remaining
        order.cancelled += unfilled
        order.status = ob.CANCELLED
        if order.quantity:
            self._release(
                account, order, (order.blocked_margin * unfilled / order.quantity).quantize(ob.PAISE)
            )
        order.record(self.clock.now())

    def _block(self, account: Account, order: ob.Order, check: bool) -> str:
        """Block margin for the order; with check, refuse (return the RMS reason) if funds fall short."""
        price = order.price if order.order_type != "MARKET" else self.master.price(order.instrument)
        required = (price * order.quantity * ob.margin_rate(order)).quantize(ob.PAISE)
        available = account.funds - account.book.utilized_margin
        if check and required > available:
            return f"RMS:Margin Exceeds, Required:{required}, Available:{available}"
        account.book.utilized_margin += required
        order.blocked_margin = required
        return ""

    def _release(self, account: Account, order: ob.Order, amount: Decimal) -> None:
        account.book.utilized_margin -= amount
        order.blocked_margin -= amount
