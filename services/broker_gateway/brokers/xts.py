"""IIFL Blaze, the Symphony XTS Interactive API, as IIFL_API.md describes it.

Replies are `{"type": "success"|"error", "code", "description", "result"}`; errors come with HTTP 400
and a code (`e-session-0007` is a dead session). Numbers travel as JSON numbers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlencode

from services.broker_gateway.brokers.base import (
    ActionAck,
    BookEntry,
    BrokerAdapter,
    BrokerSession,
    Credentials,
    CredentialsRejected,
    Dialect,
    Exchange,
    Funds,
    InstrumentLookup,
    OrderChange,
    OrderSpec,
    OrderType,
    OutcomeUnknown,
    PlaceAck,
    Product,
    Rejected,
    SessionExpired,
    Side,
    Unavailable,
    Validity,
    next_ist_midnight,
    protective_limit,
)
from services.broker_gateway.brokers.http import Reply, Transport
from services.broker_gateway.brokers.wire import (
    decode,
    exchange,
    ist_time,
    json_number,
    normalise_status,
    to_decimal,
    to_int,
    unparseable,
)

ORDER_TYPES = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.SL: "STOPLIMIT",
    OrderType.SL_M: "STOPMARKET",
}
ORDER_TYPES_BACK = {value.lower(): key for key, value in ORDER_TYPES.items()}
SEGMENTS_BACK = {"NSECM": Exchange.NSE, "BSECM": Exchange.BSE, "NSEFO": Exchange.NFO, "BSEFO": Exchange.BFO}
SESSION_DEAD = "e-session-0007"
# XTS's counterpart of IIFL v1's EC003 "something went wrong": on a write the order may exist
# (see placement.py for the decision).
GENERIC_FAILURES = frozenset({"e-orders-0003"})
SOURCE = "WEBAPI"


class XtsAdapter(BrokerAdapter):
    dialect = Dialect.XTS

    def __init__(self, transport: Transport, instruments: InstrumentLookup) -> None:
        self._http = transport
        self._instruments = instruments

    @staticmethod
    def _auth(session: BrokerSession) -> dict[str, str]:
        return {"Authorization": session.token}

    async def open_session(self, credentials: Credentials, *, timeout: float | None = None) -> BrokerSession:
        reply = await exchange(
            self._http,
            "POST",
            "/user/session",
            headers={},
            payload={"appKey": credentials.app_key, "secretKey": credentials.app_secret, "source": SOURCE},
            timeout=timeout,
            write=False,
        )
        data = decode(reply.body)
        if not isinstance(data, dict):
            raise Unavailable(f"unreadable login reply (HTTP {reply.status})", code=f"HTTP_{reply.status}")
        result = data.get("result")
        if (
            reply.status == 200
            and data.get("type") == "success"
            and isinstance(result, dict)
            and result.get("token")
        ):
            opened = datetime.now(UTC)
            return BrokerSession(
                token=str(result["token"]),
                dialect=self.dialect,
                opened_at=opened,
                expires_at=next_ist_midnight(opened),
                user_id=str(result.get("userID", "")),
            )
        code, message = _error(data, reply.status)
        raise CredentialsRejected(f"XTS refused the login: {message}", code=code)

    async def place(
        self, session: BrokerSession, spec: OrderSpec, *, timeout: float | None = None
    ) -> PlaceAck:
        order_type, limit = spec.order_type, spec.price
        if order_type is OrderType.SL_M:
            # Bare stop-market orders are refused under the 2026 rules (the proto's SL_M contract):
            # a stop-limit with a protective limit stands in, as on IIFL v1.
            assert spec.trigger_price is not None and spec.market_protection_percent is not None
            order_type = OrderType.SL
            limit = protective_limit(
                spec.side, spec.trigger_price, spec.market_protection_percent, spec.instrument.tick_size
            )
        payload = {
            "exchangeSegment": spec.instrument.xts_segment,
            "exchangeInstrumentID": spec.instrument.xts_instrument_id,
            "productType": spec.product.name,
            "orderType": ORDER_TYPES[order_type],
            "orderSide": spec.side.name,
            "timeInForce": spec.validity.name,
            "disclosedQuantity": 0,
            "orderQuantity": spec.quantity,
            "limitPrice": json_number(limit) if limit is not None else 0,
            "stopPrice": json_number(spec.trigger_price) if spec.trigger_price is not None else 0,
            "orderUniqueIdentifier": spec.tag,
            "algoID": spec.algo_id,
        }
        reply = await exchange(
            self._http,
            "POST",
            "/orders",
            headers=self._auth(session),
            payload=payload,
            timeout=timeout,
            write=True,
        )
        result = _write_result(reply, write=True)
        order_id = result.get("AppOrderID")
        if order_id in (None, "", 0):
            raise OutcomeUnknown("XTS said success without an AppOrderID", code="NO_ORDER_ID")
        return PlaceAck(broker_order_id=str(order_id), tag=spec.tag)

    async def modify(
        self, session: BrokerSession, current: BookEntry, change: OrderChange, *, timeout: float | None = None
    ) -> ActionAck:
        # XTS wants every modified* field each time: unchanged ones come from the book row.
        order_type = change.order_type or current.order_type or OrderType.LIMIT
        if order_type is OrderType.SL_M:
            order_type = OrderType.SL
        quantity = change.quantity if change.quantity is not None else current.quantity
        price = change.price if change.price is not None else current.price
        trigger = change.trigger_price if change.trigger_price is not None else current.trigger_price
        validity = change.validity or current.validity or Validity.DAY
        product = current.product or Product.MIS
        payload = {
            "appOrderID": _int_id(current.broker_order_id),
            "modifiedProductType": product.name,
            "modifiedOrderType": ORDER_TYPES[order_type],
            "modifiedOrderQuantity": quantity,
            "modifiedDisclosedQuantity": 0,
            "modifiedLimitPrice": json_number(price)
            if price is not None and order_type is not OrderType.MARKET
            else 0,
            "modifiedStopPrice": json_number(trigger)
            if trigger is not None and order_type is OrderType.SL
            else 0,
            "modifiedTimeInForce": validity.name,
            "orderUniqueIdentifier": current.tag,
        }
        reply = await exchange(
            self._http,
            "PUT",
            "/orders",
            headers=self._auth(session),
            payload=payload,
            timeout=timeout,
            write=True,
        )
        result = _write_result(reply, write=True)
        return ActionAck(broker_order_id=current.broker_order_id, message=str(result.get("description", "")))

    async def cancel(
        self, session: BrokerSession, current: BookEntry, *, timeout: float | None = None
    ) -> ActionAck:
        query = urlencode({"appOrderID": current.broker_order_id, "orderUniqueIdentifier": current.tag})
        reply = await exchange(
            self._http, "DELETE", f"/orders?{query}", headers=self._auth(session), timeout=timeout, write=True
        )
        result = _write_result(reply, write=True)
        return ActionAck(broker_order_id=current.broker_order_id, message=str(result.get("description", "")))

    async def order_book(self, session: BrokerSession, *, timeout: float | None = None) -> list[BookEntry]:
        reply = await exchange(
            self._http, "GET", "/orders", headers=self._auth(session), timeout=timeout, write=False
        )
        result = _read_result(reply)
        # Strict: a book that cannot be read whole proves nothing absent.
        if not isinstance(result, list) or not all(
            isinstance(row, dict) and row.get("AppOrderID") for row in result
        ):
            raise Unavailable("unreadable order book", code=f"HTTP_{reply.status}")
        return [self._entry(row) for row in result]

    async def funds(self, session: BrokerSession, *, timeout: float | None = None) -> Funds:
        reply = await exchange(
            self._http, "GET", "/user/balance", headers=self._auth(session), timeout=timeout, write=False
        )
        result = _read_result(reply)
        limits = _balance_limits(result)
        available = _first_decimal(limits, "netMarginAvailable", "cashAvailable", "availableMargin")
        utilised = _first_decimal(limits, "marginUtilized", "MarginUtilized", "utilizedMargin")
        return Funds(available=available, utilised=utilised, raw=result if isinstance(result, dict) else {})

    def _entry(self, row: dict) -> BookEntry:
        segment = str(row.get("ExchangeSegment", ""))
        instrument = self._instruments.by_xts_id(segment, to_int(row.get("ExchangeInstrumentID")))
        raw_status = str(row.get("OrderStatus", ""))
        side = str(row.get("OrderSide", "")).upper()
        validity = str(row.get("TimeInForce", "")).upper()
        product = str(row.get("ProductType", "")).upper()
        quantity = to_int(row.get("OrderQuantity"))
        filled = to_int(row.get("CumulativeQuantity"))
        return BookEntry(
            broker_order_id=str(row.get("AppOrderID", "")),
            exchange_order_id=str(row.get("ExchangeOrderID") or ""),
            tag=str(row.get("OrderUniqueIdentifier") or ""),
            exchange=instrument.exchange if instrument else SEGMENTS_BACK.get(segment),
            symbol=instrument.symbol if instrument else str(row.get("TradingSymbol", "")).removesuffix("-EQ"),
            instrument=instrument,
            side=Side[side] if side in Side.__members__ else None,
            order_type=ORDER_TYPES_BACK.get(str(row.get("OrderType", "")).lower()),
            product=Product[product] if product in Product.__members__ else None,
            validity=Validity[validity] if validity in Validity.__members__ else None,
            quantity=quantity,
            filled_quantity=filled,
            pending_quantity=to_int(row["LeavesQuantity"])
            if "LeavesQuantity" in row
            else max(quantity - filled, 0),
            price=_on_tick(row.get("OrderPrice"), instrument),
            trigger_price=_on_tick(row.get("OrderStopPrice"), instrument),
            average_price=_positive(row.get("OrderAverageTradedPrice")),
            status=normalise_status(raw_status),
            raw_status=raw_status,
            rejection_reason=str(row.get("CancelRejectReason") or ""),
            exchange_time=ist_time(row.get("ExchangeTransactTime") or row.get("LastUpdateDateTime")),
        )


def _error(data: dict, http_status: int) -> tuple[str, str]:
    code = str(data.get("code") or f"HTTP_{http_status}")
    return code, str(data.get("description") or code)


def _checked(reply: Reply, *, write: bool) -> dict:
    data = decode(reply.body)
    if not isinstance(data, dict):
        raise unparseable(write, reply)
    if data.get("type") == "success" and reply.status == 200:
        return data
    code, message = _error(data, reply.status)
    if code == SESSION_DEAD or reply.status == 401:
        raise SessionExpired(f"the XTS session has ended: {message}", code=code)
    if data.get("type") != "error":
        raise unparseable(write, reply)
    if write and code in GENERIC_FAILURES:
        raise OutcomeUnknown(f"XTS: {message}", code=code)
    if write:
        raise Rejected(message, code=code)
    raise Unavailable(f"XTS refused the read: {message}", code=code)


def _write_result(reply: Reply, *, write: bool) -> dict:
    result = _checked(reply, write=write).get("result")
    if not isinstance(result, dict):
        raise unparseable(write, reply)
    return result


def _read_result(reply: Reply) -> object:
    return _checked(reply, write=False).get("result")


def _balance_limits(result: object) -> dict:
    # XTS nests limits as result.BalanceList[0].limitObject.RMSSubLimits; flatter shapes are accepted.
    if isinstance(result, dict):
        balances = result.get("BalanceList")
        if isinstance(balances, list) and balances and isinstance(balances[0], dict):
            limit_object = balances[0].get("limitObject", balances[0])
            sub = limit_object.get("RMSSubLimits", limit_object) if isinstance(limit_object, dict) else {}
            return sub if isinstance(sub, dict) else {}
        return result
    return {}


def _int_id(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _positive(value: object) -> Decimal | None:
    number = to_decimal(value)
    return number if number else None


def _on_tick(value: object, instrument) -> Decimal | None:
    # JSON numbers lose trailing zeros (1421.0); show prices with the instrument's tick decimals.
    number = _positive(value)
    if number is None or instrument is None:
        return number
    return number.quantize(instrument.tick_size)


def _first_decimal(row: dict, *names: str) -> Decimal:
    for name in names:
        number = to_decimal(row.get(name))
        if number is not None:
            return number
    return Decimal(0)
