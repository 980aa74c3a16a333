"""IIFL Blaze, Symphony XTS Interactive, under /interactive (IIFL_API.md, "XTS (IIFL Blaze) in detail").

Envelope: `{"type": "success"|"error", "code": ..., "description": ..., "result": ...}`; errors come
with HTTP 400. `Authorization: <token>`, without "Bearer"; a bad or dead token is HTTP 400
`e-session-0007` "Invalid Token". AppOrderID is an integer; orderUniqueIdentifier is echoed back.
Prices are JSON numbers (written from exact decimals: parse them as Decimal), quantities integers;
position figures are strings, as XTS sends them.

Codes: e-session-0007 is XTS's own; the rest are the mock's choice where none is published:

    e-user-0005     login failed: unknown appKey (auto-provision off) or wrong secretKey
    e-request-0001  malformed request: body not JSON, a required field missing
    e-orders-0005   order refused: invalid terms, unknown order, order no longer modifiable
    e-orders-0003   generic failure, try again later (fault ec003; nothing changed)
    e-rms-0001      RMS refused the order: insufficient funds (fault rms_reject)
    e-orders-0500   IP address not authorized for trading (static-IP whitelist)

An account whose funds fall short, or an exchange_reject fault, is accepted and then shows
`Rejected` with its CancelRejectReason in the order book, as XTS reports RMS rejections.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from mock_iifl import orderbook as ob
from mock_iifl.accounts import Account, LoginError
from mock_iifl.clock import xts_time
from mock_iifl.dialects.common import BadRequest, Call, Dialect, Route, as_decimal, as_int, money
from mock_iifl.instruments import V1_TO_XTS, XTS_SEGMENT_NUMBERS, XTS_SEGMENTS, Instrument
from mock_iifl.trading import Changes, OrderRequest, Refusal
from mock_iifl.wire import Request, Response, json_response

PREFIX = "/interactive/"
REFUSAL_CODES = {
    "invalid": "e-orders-0005",
    "not_found": "e-orders-0005",
    "not_modifiable": "e-orders-0005",
    "ip": "e-orders-0500",
    "ec003": "e-orders-0003",
    "rms": "e-rms-0001",
}
PRODUCTS = {"CNC": "DELIVERY", "MIS": "INTRADAY", "NRML": "NORMAL"}
PRODUCT_NAMES = {product: name for name, product in PRODUCTS.items()}
ORDER_TYPES = {"LIMIT": "LIMIT", "MARKET": "MARKET", "STOPLIMIT": "SL", "STOPMARKET": "SLM"}
BOOK_ORDER_TYPES = {"LIMIT": "Limit", "MARKET": "Market", "SL": "StopLimit"}
STATUS = {
    ob.RECEIVED: "PendingNew",
    ob.OPEN: "New",
    ob.TRIGGER_PENDING: "New",
    ob.PARTIAL: "PartiallyFilled",
    ob.COMPLETE: "Filled",
    ob.REJECTED: "Rejected",
    ob.CANCELLED: "Cancelled",
}
PLACE_FIELDS = (
    "exchangeSegment",
    "exchangeInstrumentID",
    "productType",
    "orderType",
    "orderSide",
    "timeInForce",
    "orderQuantity",
    "orderUniqueIdentifier",
)
MODIFY_FIELDS = (
    "appOrderID",
    "modifiedProductType",
    "modifiedOrderType",
    "modifiedOrderQuantity",
    "modifiedDisclosedQuantity",
    "modifiedLimitPrice",
    "modifiedStopPrice",
    "modifiedTimeInForce",
    "orderUniqueIdentifier",
)


def success(code: str, description: str, result: Any) -> Response:
    return json_response({"type": "success", "code": code, "description": description, "result": result})


def error(code: str, description: str, status: int = 400) -> Response:
    return json_response({"type": "error", "code": code, "description": description, "result": {}}, status)


def xts_symbol(instrument: Instrument) -> str:
    # XTS names cash stocks without the series (SBIN, not SBIN-EQ); derivatives by contract.
    return instrument.name if not instrument.is_derivative else instrument.trading_symbol


def number(value: Decimal) -> float:
    # A price has at most 2 decimals and far fewer than 15 digits, so the float prints exactly.
    return float(value)


class Xts(Dialect):
    name = "xts"
    # No IIFL figure is published for XTS. The mock holds order writes together to the 10/s per
    # client that exchanges allow unregistered algos, and reads to v1's 3/s: conservative both.
    limits: ClassVar[dict[str, tuple[str, int]]] = {
        "session": ("session", 3),
        "place": ("order_writes", 10),
        "modify": ("order_writes", 10),
        "cancel": ("order_writes", 10),
        "orders": ("orders", 3),
        "trades": ("trades", 3),
        "positions": ("positions", 3),
    }

    def __init__(self, state) -> None:
        super().__init__(state)
        self._routes = {
            ("POST", "user/session"): Route("session", self.login, auth=False),
            ("DELETE", "user/session"): Route("session", self.logout),
            ("POST", "orders"): Route("place", self.place),
            ("PUT", "orders"): Route("modify", self.modify),
            ("DELETE", "orders"): Route("cancel", self.cancel),
            ("GET", "orders"): Route("orders", self.order_book),
            ("GET", "orders/trades"): Route("trades", self.trade_book),
            ("GET", "portfolio/positions"): Route("positions", self.positions),
        }

    def route(self, method: str, path: str) -> tuple[Route, tuple[str, ...]] | None:
        route = self._routes.get((method, path[len(PREFIX) :].strip("/")))
        return (route, ()) if route else None

    def token(self, request: Request) -> str:
        return request.header("authorization")

    def unauthorized(self) -> Response:
        return error("e-session-0007", "Invalid Token")

    def not_found(self, request: Request) -> Response:
        return error("e-request-0404", f"No endpoint {request.method} {request.path}", 404)

    def bad_request(self, message: str) -> Response:
        return error("e-request-0001", message)

    def anonymous_key(self, request: Request, route: Route, params: tuple[str, ...]) -> str | None:
        try:
            body = Call(request, None, (), self.state.clock.now()).json()
        except BadRequest:
            return None
        app_key = body.get("appKey") if isinstance(body, dict) else None
        return f"login:xts:{app_key}" if isinstance(app_key, str) and app_key else None

    # Session.

    def login(self, call: Call) -> Response:
        body = self._object(call)
        app_key, secret_key = body.get("appKey"), body.get("secretKey")
        if not isinstance(app_key, str) or not app_key or not isinstance(secret_key, str) or not secret_key:
            raise BadRequest("appKey and secretKey are required")
        if not body.get("source"):
            raise BadRequest("source is required (WEBAPI)")
        state = self.state
        try:
            if state.config.auto_provision and app_key not in state.accounts.xts_by_app_key:
                # The app key doubles as the userID of an account nobody registered.
                state.register("xts", app_key, app_key, secret_key, auto=True)
            session = state.accounts.xts_login(app_key, secret_key, call.now)
        except (LoginError, ValueError) as exc:
            state.stats.events["login_failures"] += 1
            return error("e-user-0005", str(exc))
        state.stats.events["sessions_created"] += 1
        user_id = session.account.client_id
        return success(
            "s-user-0001",
            "Login successful",
            {
                "token": session.token,
                "userID": user_id,
                "clientCodes": [user_id],
                "isInvestorClient": True,
                "appVersion": "mock",
            },
        )

    def logout(self, call: Call) -> Response:
        call.live_session.alive = False
        return success("s-user-0002", "Logged out successfully", {})

    # Orders.

    def place(self, call: Call) -> Response:
        body = self._object(call)
        try:
            request = self.state.broker.parsed(call.live_session, self._order_request, body)
            order, _ = self.state.broker.place(call.live_session, request, call.request.peer, call.received_at)
        except Refusal as refusal:
            return error(REFUSAL_CODES[refusal.kind], refusal.message)
        return success("s-orders-0001", "Request sent", self._write_result(call.account, order))

    def modify(self, call: Call) -> Response:
        body = self._object(call)
        missing = [name for name in MODIFY_FIELDS if body.get(name) is None]
        if missing:
            raise BadRequest(f"every field of a modify is required; missing {', '.join(missing)}")
        try:
            order_type = ORDER_TYPES.get(str(body["modifiedOrderType"]))
            product = PRODUCTS.get(str(body["modifiedProductType"]))
            if order_type is None or product is None:
                raise Refusal("invalid", "modifiedOrderType or modifiedProductType is not an XTS value")
            changes = Changes(
                quantity=as_int(body["modifiedOrderQuantity"], "modifiedOrderQuantity"),
                order_type=order_type,
                price=as_decimal(body["modifiedLimitPrice"], "modifiedLimitPrice"),
                trigger_price=as_decimal(body["modifiedStopPrice"], "modifiedStopPrice"),
                validity=str(body["modifiedTimeInForce"]),
                disclosed_quantity=as_int(body["modifiedDisclosedQuantity"], "modifiedDisclosedQuantity"),
                product=product,
            )
            order_id = str(as_int(body["appOrderID"], "appOrderID"))
            order = self.state.broker.modify(call.live_session, order_id, changes, call.request.peer)
        except Refusal as refusal:
            return error(REFUSAL_CODES[refusal.kind], refusal.message)
        return success("s-orders-0002", "Request sent", self._write_result(call.account, order))

    def cancel(self, call: Call) -> Response:
        raw_id = call.request.query.get("appOrderID")
        if not raw_id:
            raise BadRequest("appOrderID is required")
        try:
            order_id = str(as_int(raw_id, "appOrderID"))
            order = self.state.broker.cancel(call.live_session, order_id, call.request.peer)
        except Refusal as refusal:
            return error(REFUSAL_CODES[refusal.kind], refusal.message)
        return success("s-orders-0003", "Request sent", self._write_result(call.account, order))

    # Reads.

    def order_book(self, call: Call) -> Response:
        account = call.account
        wanted = call.request.query.get("appOrderID")
        if wanted:
            order = account.book.by_id.get(wanted)
            if order is None:
                return error("e-orders-0005", f"Order {wanted} not found")
            rows = [self._row(account, order, snapshot) for snapshot in order.history]
            return success("s-orders-0001", "Success order history", rows)
        rows = [self._row(account, order, order.history[-1]) for order in reversed(account.book.orders)]
        return success("s-orders-0001", "Success order book", rows)

    def trade_book(self, call: Call) -> Response:
        account = call.account
        rows = [self._trade_row(account, trade) for trade in reversed(account.book.trades)]
        return success("s-trades-0001", "Success trade book", rows)

    def positions(self, call: Call) -> Response:
        account = call.account
        rows = [self._position_row(account, position) for position in account.book.positions()]
        return success("s-portfolio-0005", "Get Net Position successfully!", {"positionList": rows})

    # Wire format.

    def _object(self, call: Call) -> dict:
        body = call.json()
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return body

    def _order_request(self, body: dict) -> OrderRequest:
        missing = [name for name in PLACE_FIELDS if body.get(name) in (None, "")]
        if missing:
            raise Refusal("invalid", f"required: {', '.join(missing)}")
        segment = body["exchangeSegment"]
        if isinstance(segment, int) and not isinstance(segment, bool):
            segment = XTS_SEGMENT_NUMBERS.get(segment, str(segment))
        exchange = XTS_SEGMENTS.get(str(segment))
        instrument_id = str(as_int(body["exchangeInstrumentID"], "exchangeInstrumentID"))
        instrument = self.state.master.get(exchange, instrument_id) if exchange else None
        if instrument is None:
            raise Refusal("invalid", f"Invalid exchangeInstrumentID {instrument_id} for segment {segment}")
        order_type = ORDER_TYPES.get(str(body["orderType"]))
        if order_type is None:
            raise Refusal(
                "invalid", f"orderType {body['orderType']!r} is not one of {', '.join(ORDER_TYPES)}"
            )
        product = PRODUCTS.get(str(body["productType"]))
        if product is None:
            raise Refusal(
                "invalid", f"productType {body['productType']!r} is not one of {', '.join(PRODUCTS)}"
            )
        return OrderRequest(
            instrument=instrument,
            side=str(body["orderSide"]),
            quantity=as_int(body["orderQuantity"], "orderQuantity"),
            order_type=order_type,
            product=product,
            validity=str(body["timeInForce"]),
            price=as_decimal(body.get("limitPrice") or 0, "limitPrice"),
            trigger_price=as_decimal(body.get("stopPrice") or 0, "stopPrice"),
            disclosed_quantity=as_int(body.get("disclosedQuantity") or 0, "disclosedQuantity"),
            market_protection=Decimal(0),
            tag=str(body["orderUniqueIdentifier"]),
        )

    def _write_result(self, account: Account, order: ob.Order) -> dict:
        return {
            "AppOrderID": int(order.order_id),
            "OrderUniqueIdentifier": order.tag,
            "ClientID": account.client_id,
        }

    def _row(self, account: Account, order: ob.Order, snap: ob.Snapshot) -> dict:
        instrument = order.instrument
        status = STATUS[snap.status]
        if order.cancel_requested and snap is order.history[-1] and not order.terminal:
            status = "PendingCancel"
        elif snap.modified and snap.status == ob.OPEN:
            status = "Replaced"
        at_exchange = order.exchange_time is not None and snap.at >= order.exchange_time
        leaves = 0 if snap.status in ob.TERMINAL else snap.quantity - snap.filled - snap.cancelled
        return {
            "LoginID": account.client_id,
            "ClientID": account.client_id,
            "AppOrderID": int(order.order_id),
            "OrderReferenceID": "",
            "GeneratedBy": "TWSAPI",
            "ExchangeOrderID": order.exchange_order_id if at_exchange else "",
            "OrderCategoryType": "NORMAL",
            "ExchangeSegment": V1_TO_XTS[instrument.exchange],
            "ExchangeInstrumentID": int(instrument.instrument_id),
            "TradingSymbol": xts_symbol(instrument),
            "OrderSide": order.side,
            "OrderType": BOOK_ORDER_TYPES[snap.order_type],
            "ProductType": PRODUCT_NAMES[order.product],
            "TimeInForce": order.validity,
            "OrderPrice": number(snap.price),
            "OrderQuantity": snap.quantity,
            "OrderStopPrice": number(snap.trigger_price),
            "OrderStatus": status,
            "OrderAverageTradedPrice": money(snap.average_price) if snap.filled else "",
            "LeavesQuantity": leaves,
            "CumulativeQuantity": snap.filled,
            "OrderDisclosedQuantity": order.disclosed_quantity,
            "OrderGeneratedDateTime": xts_time(order.created_at),
            "ExchangeTransactTime": xts_time(snap.at) if at_exchange else "",
            "LastUpdateDateTime": xts_time(snap.at),
            "CancelRejectReason": snap.rejection_reason,
            "OrderUniqueIdentifier": order.tag,
            "OrderLegStatus": "SingleOrderLeg",
            "IsSpread": False,
            "MessageCode": 9004,
            "MessageVersion": 4,
            "TokenID": 0,
            "ApplicationType": 0,
            "SequenceNumber": order.seq,
        }

    def _trade_row(self, account: Account, trade: ob.Trade) -> dict:
        order = trade.order
        row = self._row(account, order, order.history[-1])
        row.update(
            {
                "LastTradedPrice": number(trade.price),
                "LastTradedQuantity": trade.quantity,
                "LastExecutionTransactTime": xts_time(trade.at),
                "ExecutionID": trade.trade_id,
                "ExecutionReportIndex": int(trade.trade_id),
                "MessageCode": 9005,
            }
        )
        return row

    def _position_row(self, account: Account, position: ob.Position) -> dict:
        instrument = position.instrument
        ltp = self.state.master.price(instrument)
        unrealized = (
            (ltp - position.net_average) * position.net_quantity if position.net_quantity else Decimal(0)
        )
        return {
            "AccountID": account.client_id,
            "TradingSymbol": xts_symbol(instrument),
            "ExchangeSegment": V1_TO_XTS[instrument.exchange],
            "ExchangeInstrumentId": instrument.instrument_id,
            "ProductType": PRODUCT_NAMES[position.product],
            "Marketlot": str(instrument.lot_size),
            "Multiplier": "1",
            "BuyAveragePrice": money(position.buy_average),
            "SellAveragePrice": money(position.sell_average),
            "OpenBuyQuantity": str(position.buy_quantity),
            "OpenSellQuantity": str(position.sell_quantity),
            "Quantity": str(position.net_quantity),
            "BuyAmount": money(position.buy_value),
            "SellAmount": money(position.sell_value),
            "NetAmount": money(position.sell_value - position.buy_value),
            "UnrealizedMTM": money(unrealized),
            "RealizedMTM": money(position.realized_pnl),
            "MTM": money(unrealized + position.realized_pnl),
            "BEP": money(position.net_average),
            "SumOfTradedQuantityAndPriceBuy": money(position.buy_value),
            "SumOfTradedQuantityAndPriceSell": money(position.sell_value),
            "MessageCode": 9002,
        }
