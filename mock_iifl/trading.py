"""Placing, modifying and cancelling orders, whichever dialect asked.

The dialects parse their wire format into an `OrderRequest` or `Changes`, call `Broker`, and word
its `Refusal`s their broker's way. Here live the rules both brokers share: the instrument's lot,
tick and freeze quantity, SEBI's no-bare-stop-loss-market rule, the static-IP whitelist,
deduplication by client tag within a session, and the order faults drawn per order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from mock_iifl import faults as fault
from mock_iifl import orderbook as ob
from mock_iifl.accounts import Session
from mock_iifl.clock import ist_date_code
from mock_iifl.instruments import Instrument

if TYPE_CHECKING:
    from mock_iifl.state import MockState

RefusalKind = Literal["invalid", "not_found", "not_modifiable", "ip", "ec003", "rms"]
PRODUCTS = ("DELIVERY", "INTRADAY", "NORMAL", "BNPL")
ORDER_TYPES = ("LIMIT", "MARKET", "SL", "SLM")
# IIFL_API.md: keep client tags to 20 letters and digits. The mock refuses anything else, so a
# client that would be truncated or refused by the real broker finds out here.
TAG_PATTERN = re.compile(r"[A-Za-z0-9]{1,20}")


class Refusal(Exception):
    def __init__(self, kind: RefusalKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(slots=True)
class OrderRequest:
    instrument: Instrument
    side: str
    quantity: int
    order_type: str
    product: str
    validity: str
    price: Decimal
    trigger_price: Decimal
    disclosed_quantity: int
    market_protection: Decimal
    tag: str
    echo: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Changes:
    """New terms for an order; None keeps the current one."""

    quantity: int | None = None
    order_type: str | None = None
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    validity: str | None = None
    disclosed_quantity: int | None = None
    market_protection: Decimal | None = None
    product: str | None = None


def check_terms(
    instrument: Instrument,
    side: str,
    quantity: int,
    order_type: str,
    product: str,
    validity: str,
    price: Decimal,
    trigger_price: Decimal,
    disclosed_quantity: int,
) -> None:
    """Refuse ("invalid") terms the exchange or SEBI's rules would refuse."""
    if side not in ("BUY", "SELL"):
        raise Refusal("invalid", f"transactionType must be BUY or SELL, not {side!r}")
    if order_type == "SLM":
        raise Refusal(
            "invalid", "Stop-loss market orders are not allowed for API orders; send SL with a limit price"
        )
    if order_type not in ORDER_TYPES:
        raise Refusal("invalid", f"orderType {order_type!r} is not one of LIMIT, MARKET, SL")
    if product not in PRODUCTS:
        raise Refusal("invalid", f"product {product!r} is not one of {', '.join(PRODUCTS)}")
    if product in ("DELIVERY", "BNPL") and instrument.is_derivative:
        raise Refusal("invalid", f"product {product} is for cash equity, not {instrument.exchange}")
    if validity not in ("DAY", "IOC"):
        raise Refusal("invalid", f"validity must be DAY or IOC, not {validity!r}")
    if quantity <= 0 or quantity % instrument.lot_size:
        raise Refusal(
            "invalid", f"quantity {quantity} is not a positive multiple of the lot size {instrument.lot_size}"
        )
    if quantity > instrument.freeze_quantity:
        raise Refusal(
            "invalid", f"quantity {quantity} exceeds the freeze quantity {instrument.freeze_quantity}"
        )
    if not 0 <= disclosed_quantity <= quantity:
        raise Refusal("invalid", "disclosedQuantity must be between 0 and the order quantity")
    if order_type in ("LIMIT", "SL"):
        _check_price("price", price, instrument)
    if order_type == "SL":
        _check_price("slTriggerPrice", trigger_price, instrument)
        if (side == "BUY" and trigger_price > price) or (side == "SELL" and trigger_price < price):
            raise Refusal(
                "invalid",
                "slTriggerPrice must not be beyond the limit price (BUY: at or below, SELL: at or above)",
            )


def _check_price(name: str, value: Decimal, instrument: Instrument) -> None:
    if value <= 0:
        raise Refusal("invalid", f"{name} is required and must be positive")
    if value % instrument.tick_size:
        raise Refusal("invalid", f"{name} {value} is not a multiple of the tick size {instrument.tick_size}")


class Broker:
    def __init__(self, state: MockState) -> None:
        self.state = state

    def parsed(self, session: Session, parse: Callable[[Any], OrderRequest], item: Any) -> OrderRequest:
        """The dialect's parse of one order item; one it cannot parse still counts as received."""
        try:
            return parse(item)
        except Refusal:
            session.account.book.place_items += 1
            session.account.book.refused += 1
            raise

    def place(
        self, session: Session, request: OrderRequest, peer: str, received_at: datetime | None = None
    ) -> tuple[ob.Order, bool]:
        """The order made (or, for a repeated tag, the one made before, with True)."""
        state = self.state
        account = session.account
        book = account.book
        book.place_items += 1
        existing = session.tags.get(request.tag) if request.tag and state.config.dedupe else None
        if existing is not None:
            book.dedupe_hits += 1
            state.stats.events["dedupe_hits"] += 1
            return existing, True
        try:
            self._check_ip(session, peer)
            if request.tag and not TAG_PATTERN.fullmatch(request.tag):
                raise Refusal("invalid", "orderTag must be 1 to 20 letters or digits")
            check_terms(
                request.instrument,
                request.side,
                request.quantity,
                request.order_type,
                request.product,
                request.validity,
                request.price,
                request.trigger_price,
                request.disclosed_quantity,
            )
            self._order_faults(session)
        except Refusal:
            book.refused += 1
            raise
        faults = state.faults_for(account)
        now = state.clock.now()
        seq = state.ids.order_seq()
        order = ob.Order(
            seq=seq,
            order_id=self._order_id(session, seq, now),
            session_token=session.token,
            instrument=request.instrument,
            side=request.side,
            quantity=request.quantity,
            order_type=request.order_type,
            product=request.product,
            validity=request.validity,
            price=request.price if request.order_type != "MARKET" else ob.ZERO,
            trigger_price=request.trigger_price if request.order_type == "SL" else ob.ZERO,
            disclosed_quantity=request.disclosed_quantity,
            market_protection=request.market_protection,
            tag=request.tag,
            created_at=now,
            updated_at=now,
            received_at=received_at or now,
            echo=request.echo,
        )
        if fault.chance(faults.exchange_reject, state.rng):
            state.stats.faults["exchange_reject"] += 1
            order.planned_reject = "Order rejected by exchange: RED:Price outside the operating range"
        elif fault.chance(faults.partial_fill, state.rng):
            order.tranches = fault.fill_tranches(
                request.quantity, request.instrument.lot_size, state.config.lifecycle.partial_parts, state.rng
            )
            if order.tranches:
                state.stats.faults["partial_fill"] += 1
        book.add(order)
        if request.tag:
            session.tags[request.tag] = order
            state.tags.add(order)
        state.stats.events["orders_created"] += 1
        state.lifecycle.accept(account, order)
        return order, False

    def modify(self, session: Session, order_id: str, changes: Changes, peer: str) -> ob.Order:
        account = session.account
        account.book.modifies += 1
        order = self._own_order(session, order_id)
        self._check_ip(session, peer)
        if order.terminal or order.cancel_requested:
            raise Refusal(
                "not_modifiable", f"Order {order_id} is {order.status.lower()} and cannot be modified"
            )
        self._order_faults(session, writes_only=True)
        quantity = order.quantity if changes.quantity is None else changes.quantity
        order_type = changes.order_type or order.order_type
        price = order.price if changes.price is None else changes.price
        trigger = order.trigger_price if changes.trigger_price is None else changes.trigger_price
        validity = changes.validity or order.validity
        product = changes.product or order.product
        disclosed = (
            order.disclosed_quantity if changes.disclosed_quantity is None else changes.disclosed_quantity
        )
        check_terms(
            order.instrument,
            order.side,
            quantity,
            order_type,
            product,
            validity,
            price,
            trigger,
            min(disclosed, quantity),
        )
        if quantity <= order.filled:
            raise Refusal("invalid", f"quantity {quantity} must exceed the filled quantity {order.filled}")
        if quantity != order.quantity:
            # A new size voids a planned split; the rest fills at once.
            order.tranches = []
        order.quantity, order.order_type, order.validity, order.product = (
            quantity,
            order_type,
            validity,
            product,
        )
        order.price = price if order_type != "MARKET" else ob.ZERO
        order.trigger_price = trigger if order_type == "SL" else ob.ZERO
        order.disclosed_quantity = min(disclosed, quantity)
        if changes.market_protection is not None:
            order.market_protection = changes.market_protection
        self.state.lifecycle.modified(account, order)
        return order

    def cancel(self, session: Session, order_id: str, peer: str) -> ob.Order:
        account = session.account
        account.book.cancels += 1
        order = self._own_order(session, order_id)
        self._check_ip(session, peer)
        if order.terminal or order.cancel_requested:
            raise Refusal(
                "not_modifiable", f"Order {order_id} is {order.status.lower()} and cannot be cancelled"
            )
        self._order_faults(session, writes_only=True)
        self.state.lifecycle.cancel(account, order)
        return order

    def _own_order(self, session: Session, order_id: str) -> ob.Order:
        order = session.account.book.by_id.get(order_id)
        if order is None:
            raise Refusal("not_found", f"Order {order_id} not found")
        return order

    def _check_ip(self, session: Session, peer: str) -> None:
        allowed = session.account.allowed_ips
        if self.state.config.enforce_ip_whitelist and allowed and peer not in allowed:
            self.state.stats.events["ip_refusals"] += 1
            raise Refusal("ip", "IP address not authorized for trading")

    def _order_faults(self, session: Session, writes_only: bool = False) -> None:
        state = self.state
        faults = state.faults_for(session.account)
        if fault.chance(faults.ec003, state.rng):
            state.stats.faults["ec003"] += 1
            raise Refusal("ec003", "Something went wrong, please try after some time")
        if not writes_only and fault.chance(faults.rms_reject, state.rng):
            state.stats.faults["rms_reject"] += 1
            raise Refusal("rms", "RMS: Insufficient funds to place the order")

    def _order_id(self, session: Session, seq: int, now: datetime) -> str:
        if session.account.dialect == "xts":
            return str(10_000_000 + seq)
        # v1: YYMMDD (IST) of its creation and a sequence, 15 digits.
        return f"{ist_date_code(now)}{seq:09d}"
