"""OrderService: placing orders and reading them back.

Who may place: only MASTER traders. A follower's orders are the ones copied into their account from
the masters they follow; the platform has no path that would send a follower's own order to their
broker, so accepting one would leave it PENDING forever. A FOLLOWER (or any other role) placing is
PERMISSION_DENIED (HTTP 403).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from datetime import datetime

import grpc
import structlog

from copytrade.core import tracing
from copytrade.core.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from copytrade.core.interceptor import caller, metadata_value
from copytrade.instruments import ContractMaster, platform_symbol
from copytrade.orders.v1 import orders_pb2, orders_pb2_grpc
from services.orders import reports, validation
from services.orders.models import Order
from services.orders.store import OrderStore, Placed, decimal_text, rfc3339
from services.orders.watch import OrderWatch

log = structlog.get_logger("copytrade.orders")

STATUSES = (
    "PENDING", "SUBMITTED", "OPEN", "PARTIALLY_FILLED", "EXECUTED", "REJECTED", "CANCELLED", "FAILED", "SKIPPED",
)  # fmt: skip
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 50, 500
DEFAULT_FOLLOWER_PAGE_SIZE, MAX_FOLLOWER_PAGE_SIZE = 100, 1000


def order_message(order: Order) -> orders_pb2.Order:
    return orders_pb2.Order(
        id=order.id,
        user_id=order.user_id,
        master_order_id=order.master_order_id or 0,
        master_user_id=order.master_user_id or 0,
        is_master_order=order.is_master_order,
        symbol=order.symbol,
        exchange=order.exchange,
        side=order.side,
        order_type=order.order_type,
        product=order.product,
        validity=order.validity,
        quantity=order.quantity,
        price=decimal_text(order.price),
        trigger_price=decimal_text(order.trigger_price),
        status=order.status,
        status_reason_code=order.status_reason_code,
        status_reason=order.status_reason,
        broker_order_id=order.broker_order_id,
        order_tag=order.order_tag,
        filled_quantity=order.filled_quantity,
        average_price=decimal_text(order.average_price),
        replication_latency_ms=""
        if order.replication_latency_ms is None
        else str(order.replication_latency_ms),
        created_at=rfc3339(order.created_at),
        updated_at=rfc3339(order.updated_at),
    )


class OrderServicer(orders_pb2_grpc.OrderServiceServicer):
    def __init__(
        self,
        store: OrderStore,
        instruments: ContractMaster,
        on_commit: Callable[[Placed, str | None], None],
        watch: OrderWatch | None = None,
    ) -> None:
        self._store = store
        self._instruments = instruments
        # Hands a new order to the outbox publisher, which sends it at once (services/orders/outbox.py).
        self._on_commit = on_commit
        self._watch = watch

    async def WatchOrders(self, request: orders_pb2.WatchOrdersRequest, context: grpc.aio.ServicerContext):
        if self._watch is None:
            raise NotImplementedError
        async for event in self._watch.stream(caller(), request, context):
            yield event

    async def PlaceOrder(self, request: orders_pb2.PlaceOrderRequest, context: grpc.aio.ServicerContext):
        principal = caller()
        if not principal.is_master:
            raise PermissionDenied(
                "only MASTER traders place orders; a follower's orders are copied from masters"
            )
        new = validation.new_order(request, self._instruments, metadata_value(context, "idempotency-key"))
        traceparent = tracing.current_traceparent()
        placed = await self._store.place(principal.user_id, new, replicate=True, traceparent=traceparent)
        # Every later line of this request is about this order (and its master order: itself).
        structlog.contextvars.bind_contextvars(order_id=placed.order.id, master_order_id=placed.order.id)
        log.info("order_accepted", symbol=placed.order.symbol, side=placed.order.side, replay=placed.replay)
        if not placed.replay:
            self._on_commit(placed, traceparent)
        return orders_pb2.PlaceOrderResponse(
            order=order_message(placed.order), idempotent_replay=placed.replay
        )

    async def ListMyOrders(self, request: orders_pb2.ListMyOrdersRequest, context: grpc.aio.ServicerContext):
        principal = caller()
        size = _page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, "page_size")
        status = validation.choice(request.status, STATUSES, "status") if request.status.strip() else None
        symbol = platform_symbol(request.symbol.strip().upper()) or None
        filters = _filters_digest(status, symbol)
        before = _decode_token(request.page_token, "page_token", filters, 1)
        rows = await self._store.mine(
            principal.user_id,
            limit=size + 1,
            before_id=before[0] if before else None,
            status=status,
            symbol=symbol,
        )
        page, more = rows[:size], len(rows) > size
        token = _encode_token((page[-1].id,), filters) if more else ""
        return orders_pb2.ListMyOrdersResponse(orders=[order_message(o) for o in page], next_page_token=token)

    async def GetOrder(self, request: orders_pb2.GetOrderRequest, context: grpc.aio.ServicerContext):
        principal = caller()
        if request.order_id <= 0:
            raise InvalidArgument("is required", field="order_id")
        # Someone else's order answers exactly like a missing one, so ids reveal nothing.
        order = await self._store.owned(principal.user_id, request.order_id)
        if order is None:
            raise NotFound(f"order {request.order_id} not found")
        response = orders_pb2.GetOrderResponse(order=order_message(order))
        if not order.is_master_order:
            return response
        size = _page_size(
            request.follower_page_size,
            DEFAULT_FOLLOWER_PAGE_SIZE,
            MAX_FOLLOWER_PAGE_SIZE,
            "follower_page_size",
        )
        scope = _filters_digest(order.id)
        after = _decode_pair(request.follower_page_token, "follower_page_token", scope)
        followers = await self._store.followers_of(order.id, limit=size + 1, after=after)
        page = followers[:size]
        response.follower_orders.extend(order_message(o) for o in page)
        if len(followers) > size:
            response.follower_orders_next_page_token = _encode_token((page[-1].user_id, page[-1].id), scope)
        return response

    async def GetOrderStats(
        self, request: orders_pb2.GetOrderStatsRequest, context: grpc.aio.ServicerContext
    ):
        principal = caller()
        since = _moment(request.since, "since")
        until = _moment(request.until, "until")
        stats = await reports.order_stats(self._store.sessions, principal.user_id, since=since, until=until)
        return orders_pb2.GetOrderStatsResponse(
            total_orders=sum(stats.by_status.values()),
            orders_by_status=stats.by_status,
            replicated_orders=stats.replicated,
            replication_success_percent=stats.success_percent,
            replication_latency_p50_ms=stats.latency_p50_ms,
            replication_latency_p95_ms=stats.latency_p95_ms,
        )

    async def GetReplicationReport(
        self, request: orders_pb2.GetReplicationReportRequest, context: grpc.aio.ServicerContext
    ):
        principal = caller()
        if request.order_id <= 0:
            raise InvalidArgument("is required", field="order_id")
        size = _page_size(request.page_size, DEFAULT_FOLLOWER_PAGE_SIZE, MAX_FOLLOWER_PAGE_SIZE, "page_size")
        outcome = (
            validation.choice(request.outcome, reports.OUTCOMES, "outcome")
            if request.outcome.strip()
            else None
        )
        scope = _filters_digest(request.order_id, outcome)
        after = _decode_pair(request.page_token, "page_token", scope)
        # Someone else's order answers exactly like a missing one, as in GetOrder.
        order = await self._store.owned(principal.user_id, request.order_id)
        if order is None:
            raise NotFound(f"order {request.order_id} not found")
        if not order.is_master_order:
            raise FailedPrecondition("is a follower order; only a master's order has a replication report",
                                     field="order_id")  # fmt: skip
        async with self._store.sessions() as session:
            summary = await reports.summary(session, order.id)
            rows = await reports.followers(session, order.id, limit=size + 1, after=after, outcome=outcome)
        page = rows[:size]
        token = (
            _encode_token((page[-1].follower_id, page[-1].follower_order_id), scope)
            if len(rows) > size
            else ""
        )
        return orders_pb2.GetReplicationReportResponse(summary=summary, followers=page, next_page_token=token)


def _page_size(value: int, default: int, maximum: int, field: str) -> int:
    if value < 0:
        raise InvalidArgument("must not be negative", field=field)
    return min(value or default, maximum)


def _moment(text: str, field: str) -> datetime | None:
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArgument(f"{text.strip()!r} is not an RFC 3339 time", field=field) from None
    if moment.tzinfo is None:
        raise InvalidArgument("needs a time zone (`Z` for UTC)", field=field)
    return moment


def _filters_digest(*values: object) -> str:
    # Ties a page token to the filters it was issued for, so a changed filter cannot skip or repeat.
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]


def _encode_token(position: tuple[int, ...], filters: str) -> str:
    raw = json.dumps({"p": list(position), "f": filters}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, field: str, filters: str, length: int) -> tuple[int, ...] | None:
    if not token:
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        position = tuple(int(value) for value in body["p"])
        issued_for = body["f"]
        if len(position) != length or not all(0 < value < 2**63 for value in position):
            raise ValueError(position)
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise InvalidArgument("is not a token this service issued", field=field) from None
    if issued_for != filters:
        raise InvalidArgument("was issued for other filters; keep them the same on every page", field=field)
    return position


def _decode_pair(token: str, field: str, filters: str) -> tuple[int, int] | None:
    """A token of two positions (the pages of followers)."""
    position = _decode_token(token, field, filters, 2)
    if position is None:
        return None
    first, second = position
    return first, second
