"""IIFL Capital Markets API v1 (the primary dialect), as IIFL_API.md describes it.

Replies are an envelope `{"status": "Ok", "result": ...}` that says Ok even when the order inside
failed: success is the inner `status == "Success"` with a `brokerOrderId`. Numbers travel as strings.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal

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
from services.broker_gateway.brokers.http import Transport
from services.broker_gateway.brokers.wire import (
    decimal_text,
    decode,
    exchange,
    ist_time,
    normalise_status,
    to_decimal,
    to_int,
    unparseable,
)

PRODUCTS = {Product.CNC: "DELIVERY", Product.MIS: "INTRADAY", Product.NRML: "NORMAL"}
PRODUCTS_BACK = {value: key for key, value in PRODUCTS.items()}
ORDER_TYPES_BACK = {
    "MARKET": OrderType.MARKET,
    "LIMIT": OrderType.LIMIT,
    "SL": OrderType.SL,
    "SLM": OrderType.SL_M,
}
EXCHANGES_BACK = {"NSEEQ": Exchange.NSE, "BSEEQ": Exchange.BSE, "NSEFO": Exchange.NFO, "BSEFO": Exchange.BFO}
# "Something went wrong, please try after some time": IIFL's generic failure. Whether the order
# got through is not said, so on a write it is an unknown outcome: look the tag up before anything
# else (decided; see placement.py).
GENERIC_FAILURE = "EC003"
# The inner errors IIFL answers for an empty book instead of an empty list. Only these count as
# "no orders": mistaking any other error for an empty book would prove an order absent that is not.
EMPTY_BOOK_CODES = frozenset({"EC920", "EC921", "EC922", "EC926"})
UNTAGGED = "NA"


def checksum(credentials: Credentials) -> str:
    text = credentials.client_code + credentials.auth_code + credentials.app_secret
    return hashlib.sha256(text.encode()).hexdigest()


class IiflV1Adapter(BrokerAdapter):
    dialect = Dialect.IIFL_CAPITAL_V1

    def __init__(self, transport: Transport, instruments: InstrumentLookup) -> None:
        self._http = transport
        self._instruments = instruments

    @staticmethod
    def _auth(session: BrokerSession) -> dict[str, str]:
        return {"Authorization": f"Bearer {session.token}"}

    async def open_session(self, credentials: Credentials, *, timeout: float | None = None) -> BrokerSession:
        if not credentials.auth_code:
            raise CredentialsRejected(
                "IIFL Capital needs the auth code of today's login", code="AUTH_CODE_REQUIRED"
            )
        reply = await exchange(
            self._http,
            "POST",
            "/getusersession",
            headers={},
            payload={"checkSum": checksum(credentials)},
            timeout=timeout,
            write=False,
        )
        data = decode(reply.body)
        # Not a JSON object (nothing, or JSON of another shape): nothing to read a session or a reason from.
        if not isinstance(data, dict) or reply.status not in (200, 400, 401, 403):
            raise Unavailable(f"unreadable login reply (HTTP {reply.status})", code=f"HTTP_{reply.status}")
        token = data.get("userSession")
        if reply.status == 200 and isinstance(token, str) and token and _ok(data):
            opened = datetime.now(UTC)
            return BrokerSession(
                token=token, dialect=self.dialect, opened_at=opened, expires_at=next_ist_midnight(opened)
            )
        code, message = _error(data, reply.status)
        raise CredentialsRejected(f"IIFL refused the login: {message}", code=code)

    def _order_fields(self, spec: OrderSpec) -> dict[str, str]:
        order_type = spec.order_type
        price = spec.price
        if order_type is OrderType.SL_M:
            # A bare SLM is refused since 2026-04-01: send SL with a protective limit instead.
            assert spec.trigger_price is not None and spec.market_protection_percent is not None
            order_type = OrderType.SL
            price = protective_limit(
                spec.side, spec.trigger_price, spec.market_protection_percent, spec.instrument.tick_size
            )
        fields = {
            "instrumentId": spec.instrument.v1_instrument_id,
            "exchange": spec.instrument.v1_exchange,
            "transactionType": spec.side.name,
            "quantity": str(spec.quantity),
            "orderComplexity": "REGULAR",
            "product": PRODUCTS[spec.product],
            "orderType": order_type.name,
            "validity": spec.validity.name,
            "algoId": spec.algo_id,
            "orderTag": spec.tag,
        }
        if price is not None:
            fields["price"] = decimal_text(price)
        if spec.trigger_price is not None:
            fields["slTriggerPrice"] = decimal_text(spec.trigger_price)
        if order_type is OrderType.MARKET:
            assert spec.market_protection_percent is not None
            fields["marketProtectionPercent"] = decimal_text(spec.market_protection_percent)
        return fields

    async def place(
        self, session: BrokerSession, spec: OrderSpec, *, timeout: float | None = None
    ) -> PlaceAck:
        reply = await exchange(
            self._http,
            "POST",
            "/orders",
            headers=self._auth(session),
            payload=[self._order_fields(spec)],
            timeout=timeout,
            write=True,
        )
        item = _write_result(reply, write=True, many=True)
        order_id = item.get("brokerOrderId")
        if not isinstance(order_id, str | int) or not str(order_id):
            raise OutcomeUnknown("IIFL said Success without a brokerOrderId", code="NO_ORDER_ID")
        return PlaceAck(broker_order_id=str(order_id), tag=spec.tag)

    async def modify(
        self, session: BrokerSession, current: BookEntry, change: OrderChange, *, timeout: float | None = None
    ) -> ActionAck:
        # v1 takes only the changed fields.
        fields: dict[str, str] = {}
        if change.quantity is not None:
            fields["quantity"] = str(change.quantity)
        if change.price is not None:
            fields["price"] = decimal_text(change.price)
        if change.trigger_price is not None:
            fields["slTriggerPrice"] = decimal_text(change.trigger_price)
        if change.order_type is not None:
            fields["orderType"] = "SL" if change.order_type is OrderType.SL_M else change.order_type.name
        if change.validity is not None:
            fields["validity"] = change.validity.name
        reply = await exchange(
            self._http,
            "PUT",
            f"/orders/{current.broker_order_id}",
            headers=self._auth(session),
            payload=fields,
            timeout=timeout,
            write=True,
        )
        item = _write_result(reply, write=True, many=False)
        return ActionAck(broker_order_id=current.broker_order_id, message=str(item.get("message", "")))

    async def cancel(
        self, session: BrokerSession, current: BookEntry, *, timeout: float | None = None
    ) -> ActionAck:
        reply = await exchange(
            self._http,
            "DELETE",
            f"/orders/{current.broker_order_id}",
            headers=self._auth(session),
            timeout=timeout,
            write=True,
        )
        item = _write_result(reply, write=True, many=False)
        return ActionAck(broker_order_id=current.broker_order_id, message=str(item.get("message", "")))

    async def order_book(self, session: BrokerSession, *, timeout: float | None = None) -> list[BookEntry]:
        reply = await exchange(
            self._http, "GET", "/orders", headers=self._auth(session), timeout=timeout, write=False
        )
        data = _read_envelope(reply)
        result = data.get("result")
        if not _ok(data):
            code, message = _error(data, reply.status)
            if code in EMPTY_BOOK_CODES:
                return []
            raise Unavailable(f"IIFL could not read the order book: {message}", code=code)
        if isinstance(result, dict):
            # An Ok envelope whose result is one inner error: "no orders" is the only one that
            # says the book is empty; any other means it was not read.
            code = str(result.get("status", ""))
            if code in EMPTY_BOOK_CODES:
                return []
            if not result.get("brokerOrderId"):
                raise Unavailable(
                    f"IIFL could not read the order book: {result.get('message') or code}", code=code
                )
            result = [result]
        # Strict: a book that cannot be read whole proves nothing absent.
        if not isinstance(result, list) or not all(
            isinstance(row, dict) and row.get("brokerOrderId") for row in result
        ):
            raise Unavailable("unreadable order book", code=f"HTTP_{reply.status}")
        return [self._entry(row) for row in result]

    async def funds(self, session: BrokerSession, *, timeout: float | None = None) -> Funds:
        reply = await exchange(
            self._http, "GET", "/limits", headers=self._auth(session), timeout=timeout, write=False
        )
        data = _read_envelope(reply)
        if not _ok(data):
            code, message = _error(data, reply.status)
            raise Unavailable(f"IIFL could not read the limits: {message}", code=code)
        result = data.get("result")
        if isinstance(result, list):
            result = result[0] if result else {}
        if not isinstance(result, dict):
            raise Unavailable("unreadable limits", code=f"HTTP_{reply.status}")
        available = _first_decimal(
            result, "availableMargin", "availableBalance", "netAvailableMargin", "availableCash"
        )
        utilised = _first_decimal(result, "utilizedMargin", "usedMargin", "marginUsed", "utilisedMargin")
        return Funds(available=available, utilised=utilised, raw=result)

    def _entry(self, row: dict) -> BookEntry:
        v1_exchange = str(row.get("exchange", ""))
        instrument = self._instruments.by_v1_id(v1_exchange, str(row.get("instrumentId", "")))
        trading_symbol = str(row.get("tradingSymbol", ""))
        raw_status = str(row.get("orderStatus", ""))
        side = str(row.get("transactionType", "")).upper()
        validity = str(row.get("validity", "")).upper()
        return BookEntry(
            broker_order_id=str(row.get("brokerOrderId", "")),
            exchange_order_id=str(row.get("exchangeOrderId") or ""),
            # IIFL shows an untagged order's tag as "NA" (validation refuses that tag).
            tag="" if str(row.get("orderTag") or "NA") == UNTAGGED else str(row["orderTag"]),
            exchange=instrument.exchange if instrument else EXCHANGES_BACK.get(v1_exchange),
            symbol=instrument.symbol if instrument else trading_symbol.removesuffix("-EQ"),
            instrument=instrument,
            side=Side[side] if side in Side.__members__ else None,
            order_type=ORDER_TYPES_BACK.get(str(row.get("orderType", "")).upper()),
            product=PRODUCTS_BACK.get(str(row.get("product", "")).upper()),
            validity=Validity[validity] if validity in Validity.__members__ else None,
            quantity=to_int(row.get("quantity")),
            filled_quantity=to_int(row.get("filledQuantity")),
            pending_quantity=to_int(row.get("pendingQuantity")),
            price=_positive(row.get("price")),
            trigger_price=_positive(row.get("slTriggerPrice")),
            average_price=_positive(row.get("averageTradedPrice")),
            status=normalise_status(raw_status),
            raw_status=raw_status,
            rejection_reason=str(row.get("rejectionReason") or ""),
            exchange_time=ist_time(row.get("exchangeTimestamp")),
        )


def _ok(data: dict) -> bool:
    return str(data.get("status", "")).lower() == "ok"


def _error(data: dict, http_status: int) -> tuple[str, str]:
    code = str(data.get("status") or data.get("code") or f"HTTP_{http_status}")
    message = str(data.get("message") or data.get("description") or code)
    return code, message


def _read_envelope(reply) -> dict:
    if reply.status == 401:
        raise SessionExpired("the IIFL session has ended (HTTP 401); log in again", code="SESSION_EXPIRED")
    data = decode(reply.body)
    if not isinstance(data, dict):
        raise unparseable(False, reply)
    return data


def _write_result(reply, *, write: bool, many: bool) -> dict:
    """The one result item of a place (many: the array form), modify or cancel, or the error it is."""
    if reply.status == 401:
        raise SessionExpired("the IIFL session has ended (HTTP 401); log in again", code="SESSION_EXPIRED")
    data = decode(reply.body)
    if not isinstance(data, dict):
        raise unparseable(write, reply)
    if not _ok(data):
        code, message = _error(data, reply.status)
        _raise_for_code(code, message)
    result = data.get("result")
    if many:
        if not isinstance(result, list) or len(result) != 1 or not isinstance(result[0], dict):
            raise unparseable(write, reply)
        result = result[0]
    if not isinstance(result, dict):
        raise unparseable(write, reply)
    status = str(result.get("status", ""))
    if status.lower() != "success":
        _raise_for_code(status or f"HTTP_{reply.status}", str(result.get("message") or status))
    return result


def _raise_for_code(code: str, message: str) -> None:
    if code == GENERIC_FAILURE:
        raise OutcomeUnknown(f"IIFL: {message}", code=code)
    raise Rejected(message, code=code)


def _positive(value: object) -> Decimal | None:
    number = to_decimal(value)
    return number if number else None


def _first_decimal(row: dict, *names: str) -> Decimal:
    for name in names:
        number = to_decimal(row.get(name))
        if number is not None:
            return number
    return Decimal(0)
