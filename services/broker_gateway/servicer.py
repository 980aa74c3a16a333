"""BrokerGatewayService: orders into linked IIFL accounts, for the platform's own services.

Only callers with a service (or admin) token may use it: it acts in any user's account. Envoy does
not route it either; this check is the second wall.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import grpc
import structlog

from copytrade.broker.v1 import broker_pb2, broker_pb2_grpc
from copytrade.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from copytrade.core.interceptor import caller
from copytrade.core.settings import Settings
from services.broker_gateway import fanout
from services.broker_gateway.account_servicer import account_message
from services.broker_gateway.accounts import AccountRepository
from services.broker_gateway.brokers import (
    BookEntry,
    NeedsRelogin,
    OrderChange,
    OrderType,
    Placement,
    RateLimited,
    Validity,
)
from services.broker_gateway.brokers.base import BrokerError
from services.broker_gateway.instruments import InstrumentMaster, Invalid, OrderRequest
from services.broker_gateway.sessions import Ready, Refusal, Resolution, SessionManager

log = structlog.get_logger("copytrade.broker_gateway")
Outcome = broker_pb2.PlacementOutcome
ERROR_DOMAIN = "broker.copytrade"
FUNDS_DEADLINE_SECONDS = 2.0  # each account's funds read in BatchGetFunds
MAX_FUNDS_ACCOUNTS = 1_000  # BatchGetFunds' limit, as documented in broker.proto


def _require_service_caller() -> None:
    principal = caller()
    if not (principal.is_service or principal.is_admin):
        raise PermissionDenied("the broker gateway is for the platform's services only")


def _decimal_text(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


# The casts below: protoc's .pyi types an enum field as its enum or the value's name, while the runtime
# takes the number, which the brokers' IntEnums (numbered as broker.proto) give.
def broker_order_message(account_id: int, entry: BookEntry) -> broker_pb2.BrokerOrder:
    return broker_pb2.BrokerOrder(
        account_id=account_id,
        broker_order_id=entry.broker_order_id,
        exchange_order_id=entry.exchange_order_id,
        tag=entry.tag,
        instrument=broker_pb2.Instrument(
            symbol=entry.symbol, exchange=cast(broker_pb2.Exchange, int(entry.exchange or 0))
        ),
        side=cast(broker_pb2.Side, int(entry.side or 0)),
        order_type=cast(broker_pb2.OrderType, int(entry.order_type or 0)),
        product=cast(broker_pb2.Product, int(entry.product or 0)),
        validity=cast(broker_pb2.Validity, int(entry.validity or 0)),
        quantity=entry.quantity,
        filled_quantity=entry.filled_quantity,
        pending_quantity=entry.pending_quantity,
        price=_decimal_text(entry.price),
        trigger_price=_decimal_text(entry.trigger_price),
        average_price=_decimal_text(entry.average_price),
        status=cast(broker_pb2.OrderStatus, int(entry.status)),
        raw_status=entry.raw_status,
        rejection_reason=entry.rejection_reason,
        exchange_time=entry.exchange_time.isoformat() if entry.exchange_time else "",
    )


def _result(order: broker_pb2.NewOrder, **fields: Any) -> broker_pb2.PlacementResult:
    return broker_pb2.PlacementResult(
        tag=order.tag, user_id=order.user_id, account_id=order.account_id, order_id=order.order_id, **fields
    )


def placement_result(order: broker_pb2.NewOrder, placement: Placement) -> broker_pb2.PlacementResult:
    return _result(
        order,
        outcome=int(placement.outcome),
        broker_order_id=placement.broker_order_id,
        error_code=placement.error_code,
        reason=placement.reason,
        latency_ms=placement.latency_ms,
        attempts=placement.attempts,
        found_existing=placement.found_existing,
        retryable=placement.retryable,
    )


async def _logged(place_one: fanout.PlaceOne, order: broker_pb2.NewOrder) -> broker_pb2.PlacementResult:
    """One copy's placement with a DEBUG line naming the copy, its follower and its outcome."""
    result = await place_one(order)
    log.debug(
        "copy_placed",
        order_id=order.order_id,
        follower_id=order.user_id,
        account_id=order.account_id,
        outcome=Outcome.Name(result.outcome),
        error_code=result.error_code,
        attempts=result.attempts,
    )
    return result


class BrokerGatewayServicer(broker_pb2_grpc.BrokerGatewayServiceServicer):
    def __init__(
        self,
        settings: Settings,
        sessions: SessionManager,
        instruments: InstrumentMaster,
        accounts: AccountRepository,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._instruments = instruments
        self._accounts = accounts
        self._protection = Decimal(settings.default_market_protection_percent)

    # Placing.

    async def ExecuteFanout(
        self, request: broker_pb2.ExecuteFanoutRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[broker_pb2.ExecuteFanoutResponse]:
        _require_service_caller()
        fanout.check_request(request)
        # Headers at once, not with the first result ~50 ms later: the replicator plans a fan-out's
        # next part once it knows this one arrived (services/replicator/pipeline/replication.py).
        await context.send_initial_metadata(())
        # This RPC's context, which every placement task copies: their lines name the master order.
        structlog.contextvars.bind_contextvars(master_order_id=request.fanout_id)
        resolved = await self._sessions.resolve(order.account_id for order in request.orders)
        place_one = functools.partial(self._place_one, resolved, request.resumed)
        if log.is_enabled_for(logging.DEBUG):  # decided once per fan-out: a copy pays nothing at INFO
            place_one = functools.partial(_logged, place_one)
        async for message in fanout.stream_fanout(request, place_one):
            yield message

    async def PlaceOrder(self, request: broker_pb2.PlaceOrderRequest, context: grpc.aio.ServicerContext):
        _require_service_caller()
        order = request.order
        if not fanout.TAG.fullmatch(order.tag):
            raise InvalidArgument("must be 1 to 20 letters and digits", field="order.tag")
        resolved = await self._sessions.resolve([order.account_id])
        target = resolved[order.account_id]
        if isinstance(target, Ready):
            checked = self._check(order, target)
            if isinstance(checked, Invalid):
                raise InvalidArgument(checked.reason, field=f"order.{checked.field or 'instrument'}")
        return broker_pb2.PlaceOrderResponse(result=await self._place_one(resolved, False, order))

    async def _place_one(
        self, resolved: dict[int, Resolution], resumed: bool, order: broker_pb2.NewOrder
    ) -> broker_pb2.PlacementResult:
        """One order's final result; never raises, so one order cannot end a fan-out."""
        started = time.monotonic()
        target = resolved.get(order.account_id) or Refusal("ACCOUNT_NOT_LINKED", "no linked broker account")
        if isinstance(target, Ready) and target.user_id != order.user_id:
            # An order must never land in somebody else's account, whatever the caller got wrong.
            target = Refusal("ACCOUNT_NOT_LINKED", f"account {order.account_id} is not linked to user {order.user_id}")
        if isinstance(target, Refusal):
            return _result(order, outcome=Outcome.Value(f"PLACEMENT_OUTCOME_{target.code}"), error_code=target.code, reason=target.reason)
        if not fanout.TAG.fullmatch(order.tag):
            return fanout.invalid_order(order, "tag must be 1 to 20 letters and digits")
        checked = self._check(order, target)
        if isinstance(checked, Invalid):
            result = fanout.invalid_order(order, checked.reason)
            result.error_code = checked.code
            return result
        placement = await target.client.place(checked, look_first=resumed)
        result = placement_result(order, placement)
        if not result.latency_ms:
            result.latency_ms = round((time.monotonic() - started) * 1000)
        return result

    def _check(self, order: broker_pb2.NewOrder, target: Ready):
        return self._instruments.validate(
            OrderRequest.from_proto(order),
            target.dialect,
            algo_id=self._settings.broker_algo_id,
            default_market_protection=self._protection,
        )

    # Changing and reading.

    async def ModifyOrder(self, request: broker_pb2.ModifyOrderRequest, context: grpc.aio.ServicerContext):
        _require_service_caller()
        client = await self._client(request.account_id)
        change = OrderChange(
            quantity=request.quantity or None,
            price=_parse_price("price", request.price),
            trigger_price=_parse_price("trigger_price", request.trigger_price),
            order_type=OrderType(request.order_type) if request.order_type else None,
            validity=Validity(request.validity) if request.validity else None,
        )
        if change.empty:
            raise InvalidArgument("name at least one thing to change", field="quantity")
        result = await client.modify(change, **_order_ref(request), problem=self._instruments.check_change)
        return broker_pb2.ModifyOrderResponse(result=_action_result(result))

    async def CancelOrder(self, request: broker_pb2.CancelOrderRequest, context: grpc.aio.ServicerContext):
        _require_service_caller()
        client = await self._client(request.account_id)
        result = await client.cancel(**_order_ref(request))
        return broker_pb2.CancelOrderResponse(result=_action_result(result))

    async def GetOrder(self, request: broker_pb2.GetOrderRequest, context: grpc.aio.ServicerContext):
        _require_service_caller()
        client = await self._client(request.account_id)
        entry = await _read(client.get_order(**_order_ref(request)))
        if entry is None:
            return broker_pb2.GetOrderResponse(found=False)
        return broker_pb2.GetOrderResponse(found=True, order=broker_order_message(request.account_id, entry))

    async def ListOrders(self, request: broker_pb2.ListOrdersRequest, context: grpc.aio.ServicerContext):
        _require_service_caller()
        client = await self._client(request.account_id)
        entries = await _read(client.list_orders(list(request.tags) or None))
        return broker_pb2.ListOrdersResponse(
            orders=[broker_order_message(request.account_id, entry) for entry in entries],
            read_at=datetime.now(UTC).isoformat(),
        )

    async def BatchGetLinkedAccounts(
        self, request: broker_pb2.BatchGetLinkedAccountsRequest, context: grpc.aio.ServicerContext
    ):
        _require_service_caller()
        if not request.user_ids:
            raise InvalidArgument("at least one user id is required", field="user_ids")
        if len(request.user_ids) > fanout.MAX_ORDERS_PER_FANOUT:
            raise InvalidArgument(f"at most {fanout.MAX_ORDERS_PER_FANOUT} user ids", field="user_ids")
        rows = await self._accounts.by_users(request.user_ids)
        return broker_pb2.BatchGetLinkedAccountsResponse(
            accounts=[account_message(row, self._settings) for row in rows]
        )

    async def BatchGetFunds(self, request: broker_pb2.BatchGetFundsRequest, context: grpc.aio.ServicerContext):
        _require_service_caller()
        if not request.account_ids:
            raise InvalidArgument("at least one account id is required", field="account_ids")
        if len(request.account_ids) > MAX_FUNDS_ACCOUNTS:
            raise InvalidArgument(f"at most {MAX_FUNDS_ACCOUNTS} account ids", field="account_ids")
        resolved = await self._sessions.resolve(request.account_ids)
        funds = await asyncio.gather(
            *(self._funds_of(account_id, target) for account_id, target in resolved.items())
        )
        return broker_pb2.BatchGetFundsResponse(funds=funds)

    async def _funds_of(self, account_id: int, target: Resolution) -> broker_pb2.AccountFunds:
        """One account's funds, or why they could not be read; never raises."""
        if isinstance(target, Refusal):
            return broker_pb2.AccountFunds(
                account_id=account_id, found=False, error_code=target.code, reason=target.reason
            )
        try:
            # The read's own deadline, and a hard bound over it for a session being opened again.
            async with asyncio.timeout(FUNDS_DEADLINE_SECONDS + 0.5):
                funds = await target.client.funds(deadline=time.monotonic() + FUNDS_DEADLINE_SECONDS)
        except TimeoutError:
            return broker_pb2.AccountFunds(
                account_id=account_id, found=False, error_code="BROKER_TIMEOUT", reason="the broker did not answer in time"
            )
        except NeedsRelogin as exc:
            return broker_pb2.AccountFunds(
                account_id=account_id, found=False, error_code="NEEDS_RELOGIN", reason=str(exc)
            )
        except BrokerError as exc:
            return broker_pb2.AccountFunds(account_id=account_id, found=False, error_code=exc.code, reason=str(exc))
        except Exception as exc:  # noqa: BLE001 - one account's failure must not fail the batch
            return broker_pb2.AccountFunds(
                account_id=account_id, found=False, error_code="BROKER_UNAVAILABLE", reason=repr(exc)
            )
        return broker_pb2.AccountFunds(account_id=account_id, found=True, available=format(funds.available, "f"))

    async def _client(self, account_id: int):
        if account_id <= 0:
            raise InvalidArgument("is required", field="account_id")
        target = (await self._sessions.resolve([account_id]))[account_id]
        if isinstance(target, Refusal):
            raise FailedPrecondition(target.reason, reason=target.code, domain=ERROR_DOMAIN)
        return target.client


def _order_ref(request) -> dict[str, str]:
    which = request.WhichOneof("order_ref")
    if which is None or not getattr(request, which):
        raise InvalidArgument("name the order by broker_order_id or tag", field="order_ref")
    return {which: getattr(request, which)}


def _parse_price(field: str, text: str) -> Decimal | None:
    if not text:
        return None
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise InvalidArgument(f"must be a decimal number, not {text!r}", field=field) from None
    if not value.is_finite() or value <= 0:
        raise InvalidArgument("must be a positive number", field=field)
    return value


def _action_result(result) -> broker_pb2.ActionResult:
    return broker_pb2.ActionResult(
        outcome=cast(broker_pb2.ActionOutcome, int(result.outcome)),  # a number, as in broker_order_message
        broker_order_id=result.broker_order_id,
        error_code=result.error_code,
        reason=result.reason,
        latency_ms=result.latency_ms,
    )


async def _read(call):
    """A broker read, its failures turned into the RPC errors the proto documents."""
    try:
        return await call
    except NeedsRelogin as exc:
        raise FailedPrecondition(exc.reason, reason="NEEDS_RELOGIN", domain=ERROR_DOMAIN) from None
    except RateLimited as exc:
        raise ResourceExhausted(exc.reason) from None
    except BrokerError as exc:
        raise Unavailable(f"the broker could not be read ({exc.code}): {exc.reason}") from None
