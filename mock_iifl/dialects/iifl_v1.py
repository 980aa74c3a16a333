"""IIFL Capital "Markets API" v1, under /v1 (IIFL_API.md, "IIFL Capital v1 in detail").

Envelope: `{"status": "Ok", "message": "Success", "result": ...}` with HTTP 200, also when an order
inside failed; a failure is an inner `{"status": "<code>", "message": ...}` (per item for a place).
Numbers travel as strings. A dead or missing session gets HTTP 401.

Codes the mock answers with. EC003, EC004, EC500, EC920 and EC926 are IIFL's own (IIFL_API.md); the
others are the mock's choice where IIFL publishes none:

    EC003  generic failure, "please try after some time" (fault ec003; nothing changed)
    EC004  invalid input, unknown order, order no longer modifiable (the message says which)
    EC101  RMS refused the order: insufficient funds (fault rms_reject)
    EC500  IP address not authorized for trading (static-IP whitelist)
    EC801  login failed: checkSum unknown, or auth code already used or replaced (HTTP 200)
    EC920  no positions        EC921  no orders        EC922  no holdings        EC926  no trades
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from mock_iifl import orderbook as ob
from mock_iifl.accounts import Account, LoginError
from mock_iifl.clock import iifl_time
from mock_iifl.dialects.common import BadRequest, Call, Dialect, Route, as_decimal, as_int, money
from mock_iifl.trading import Changes, OrderRequest, Refusal
from mock_iifl.wire import Request, Response, json_response

PREFIX = "/v1/"
REFUSAL_CODES = {
    "invalid": "EC004",
    "not_found": "EC004",
    "not_modifiable": "EC004",
    "ip": "EC500",
    "ec003": "EC003",
    "rms": "EC101",
}
LOGIN_FAILED = "EC801"
EMPTY = {
    "orders": ("EC921", "No orders found"),
    "trades": ("EC926", "No trades found"),
    "positions": ("EC920", "No positions found"),
    "holdings": ("EC922", "No holdings found"),
}
# Orders as the v1 book words their state; casing varies as on the real API (match it loosely).
STATUS = {
    ob.RECEIVED: "PUT ORDER REQ RECEIVED",
    ob.OPEN: "OPEN",
    ob.TRIGGER_PENDING: "TRIGGER_PENDING",
    ob.PARTIAL: "PARTIALLY FILLED",
    ob.COMPLETE: "COMPLETE",
    ob.REJECTED: "REJECTED",
    ob.CANCELLED: "cancelled",
}
REQUIRED = (
    "instrumentId",
    "exchange",
    "transactionType",
    "quantity",
    "orderComplexity",
    "product",
    "orderType",
    "validity",
)


def ok(result: Any) -> Response:
    return json_response({"status": "Ok", "message": "Success", "result": result})


def inner_error(code: str, message: str) -> Response:
    return ok({"status": code, "message": message})


class IiflV1(Dialect):
    name = "iifl_v1"
    limits: ClassVar[dict[str, tuple[str, int]]] = {
        "session": ("session", 3),
        "place": ("place", 10),
        "modify": ("modify", 10),
        "cancel": ("cancel", 10),
        "orders": ("orders", 3),
        "order": ("order", 10),
        "trades": ("trades", 3),
        "positions": ("positions", 3),
        "holdings": ("holdings", 3),
        "limits": ("limits", 10),
        "contracts": ("contracts", 2),
    }

    def __init__(self, state) -> None:
        super().__init__(state)
        self._fixed = {
            ("POST", "getusersession"): Route("session", self.login, auth=False),
            ("POST", "orders"): Route("place", self.place),
            ("GET", "orders"): Route("orders", self.order_book),
            ("GET", "trades"): Route("trades", self.trade_book),
            ("GET", "positions"): Route("positions", self.positions),
            ("GET", "holdings"): Route("holdings", self.holdings),
            ("GET", "limits"): Route("limits", self.funds),
        }
        self._by_order = {
            "PUT": Route("modify", self.modify),
            "DELETE": Route("cancel", self.cancel),
            "GET": Route("order", self.order_history),
        }
        self._contracts = Route("contracts", self.contract_file, auth=False)

    def route(self, method: str, path: str) -> tuple[Route, tuple[str, ...]] | None:
        parts = path[len(PREFIX) :].strip("/").split("/")
        if len(parts) == 1:
            route = self._fixed.get((method, parts[0]))
            return (route, ()) if route else None
        if len(parts) == 2 and parts[0] == "orders" and method in self._by_order:
            return self._by_order[method], (parts[1],)
        if len(parts) == 2 and parts[0] == "contractfiles" and method == "GET" and parts[1].endswith(".json"):
            return self._contracts, (parts[1][: -len(".json")],)
        return None

    def token(self, request: Request) -> str:
        header = request.header("authorization")
        return header[len("Bearer ") :] if header.startswith("Bearer ") else ""

    def unauthorized(self) -> Response:
        return json_response(
            {"status": "Unauthorized", "message": "Invalid or expired session, log in again"}, 401
        )

    def not_found(self, request: Request) -> Response:
        return json_response(
            {"status": "Not Found", "message": f"No endpoint {request.method} {request.path}"}, 404
        )

    def bad_request(self, message: str) -> Response:
        return json_response({"status": "EC004", "message": message, "result": []}, 400)

    def anonymous_key(self, request: Request, route: Route, params: tuple[str, ...]) -> str | None:
        if route.group == "contracts":
            return f"{request.peer}:{params[0]}"
        # A login is limited per account, found from the checksum of its pending auth code.
        try:
            body = Call(request, None, (), self.state.clock.now()).json()
        except BadRequest:
            return None
        checksum = body.get("checkSum") if isinstance(body, dict) else None
        account = self.state.accounts.pending_login(checksum) if isinstance(checksum, str) else None
        return f"login:{account.key}" if account else None

    # Session.

    def login(self, call: Call) -> Response:
        body = call.json()
        checksum = body.get("checkSum") if isinstance(body, dict) else None
        if not isinstance(checksum, str) or not checksum:
            raise BadRequest("checkSum is required")
        try:
            session = self.state.accounts.v1_login(checksum, call.now)
        except LoginError as exc:
            self.state.stats.events["login_failures"] += 1
            return json_response({"status": LOGIN_FAILED, "message": str(exc), "userSession": None})
        self.state.stats.events["sessions_created"] += 1
        return json_response({"status": "Ok", "message": "Success", "userSession": session.token})

    # Orders.

    def place(self, call: Call) -> Response:
        items = call.json()
        if not isinstance(items, list) or not items:
            raise BadRequest("the body must be a JSON array of one or more orders")
        results = []
        for item in items:
            stamp = iifl_time(self.state.clock.now())
            try:
                request = self.state.broker.parsed(call.live_session, self._order_request, item)
                order, _ = self.state.broker.place(call.live_session, request, call.request.peer, call.received_at)
            except Refusal as refusal:
                results.append(
                    {"status": REFUSAL_CODES[refusal.kind], "message": refusal.message, "requestTime": stamp}
                )
                continue
            results.append(
                {
                    "status": "Success",
                    "message": "Success",
                    "brokerOrderId": order.order_id,
                    "requestTime": stamp,
                }
            )
        return ok(results)

    def modify(self, call: Call) -> Response:
        body = call.json()
        # IIFL's own example wraps the changes in a one-item array; a bare object is accepted too.
        if isinstance(body, list) and len(body) == 1:
            body = body[0]
        if not isinstance(body, dict) or not body:
            raise BadRequest("the body must be a JSON object with the fields to change")
        order_id = call.params[0]
        try:
            changes = self._changes(body)
            self.state.broker.modify(call.live_session, order_id, changes, call.request.peer)
        except Refusal as refusal:
            return inner_error(REFUSAL_CODES[refusal.kind], refusal.message)
        return ok(self._write_result(order_id))

    def cancel(self, call: Call) -> Response:
        order_id = call.params[0]
        try:
            self.state.broker.cancel(call.live_session, order_id, call.request.peer)
        except Refusal as refusal:
            return inner_error(REFUSAL_CODES[refusal.kind], refusal.message)
        return ok(self._write_result(order_id))

    # Reads.

    def order_book(self, call: Call) -> Response:
        account = call.account
        orders = account.book.orders
        if not orders:
            return inner_error(*EMPTY["orders"])
        return ok([self._row(account, order, order.history[-1]) for order in reversed(orders)])

    def order_history(self, call: Call) -> Response:
        account = call.account
        order = account.book.by_id.get(call.params[0])
        if order is None:
            return inner_error("EC004", f"Order {call.params[0]} not found")
        return ok([self._row(account, order, snapshot) for snapshot in order.history])

    def trade_book(self, call: Call) -> Response:
        account = call.account
        if not account.book.trades:
            return inner_error(*EMPTY["trades"])
        return ok([self._trade_row(account, trade) for trade in reversed(account.book.trades)])

    def positions(self, call: Call) -> Response:
        positions = call.account.book.positions()
        if not positions:
            return inner_error(*EMPTY["positions"])
        return ok([self._position_row(position) for position in positions])

    def holdings(self, call: Call) -> Response:
        rows = [self._holding_row(holding) for holding in call.account.holdings]
        return ok(rows) if rows else inner_error(*EMPTY["holdings"])

    def funds(self, call: Call) -> Response:
        account = call.account
        utilized = account.book.utilized_margin
        return ok(
            {
                "clientId": account.client_id,
                "openingBalance": money(account.funds),
                "payIn": "0.00",
                "payOut": "0.00",
                "collateralMargin": "0.00",
                "utilizedMargin": money(utilized),
                "availableMargin": money(account.funds - utilized),
            }
        )

    def contract_file(self, call: Call) -> Response:
        raw = self.state.master.contract_files.get(call.params[0])
        if raw is None:
            return self.not_found(call.request)
        return Response(200, raw)

    # Wire format.

    def _order_request(self, item: Any) -> OrderRequest:
        if not isinstance(item, dict):
            raise Refusal("invalid", "each order must be a JSON object")
        for name in REQUIRED:
            if item.get(name) in (None, ""):
                raise Refusal("invalid", f"{name} is required")
        exchange, instrument_id = str(item["exchange"]), str(item["instrumentId"])
        instrument = self.state.master.get(exchange, instrument_id)
        if instrument is None:
            raise Refusal("invalid", f"Invalid instrumentId {instrument_id} for exchange {exchange}")
        if item["orderComplexity"] != "REGULAR":
            raise Refusal(
                "invalid", f"orderComplexity {item['orderComplexity']!r}: the mock offers REGULAR only"
            )
        order_type = str(item["orderType"])
        protection = as_decimal(item.get("marketProtectionPercent") or 0, "marketProtectionPercent")
        if order_type == "MARKET" and protection <= 0:
            raise Refusal(
                "invalid", "MARKET orders need a non-zero marketProtectionPercent (SEBI, from 1 April 2026)"
            )
        tag = item.get("orderTag") or ""
        return OrderRequest(
            instrument=instrument,
            side=str(item["transactionType"]),
            quantity=as_int(item["quantity"], "quantity"),
            order_type=order_type,
            product=str(item["product"]),
            validity=str(item["validity"]),
            price=as_decimal(item.get("price") or 0, "price"),
            trigger_price=as_decimal(item.get("slTriggerPrice") or 0, "slTriggerPrice"),
            disclosed_quantity=as_int(item.get("disclosedQuantity") or 0, "disclosedQuantity"),
            market_protection=protection,
            tag=tag if isinstance(tag, str) else str(tag),
            echo={key: str(item.get(key) or "") for key in ("algoId", "apiOrderSource", "orderComplexity")},
        )

    def _changes(self, body: dict) -> Changes:
        def optional(name: str, parse):
            value = body.get(name)
            return None if value in (None, "") else parse(value, name)

        order_type = body.get("orderType")
        if order_type == "MARKET":
            protection = optional("marketProtectionPercent", as_decimal)
            if protection is None or protection <= 0:
                raise Refusal(
                    "invalid",
                    "MARKET orders need a non-zero marketProtectionPercent (SEBI, from 1 April 2026)",
                )
        return Changes(
            quantity=optional("quantity", as_int),
            order_type=str(order_type) if order_type else None,
            price=optional("price", as_decimal),
            trigger_price=optional("slTriggerPrice", as_decimal),
            validity=str(body["validity"]) if body.get("validity") else None,
            disclosed_quantity=optional("disclosedQuantity", as_int),
            market_protection=optional("marketProtectionPercent", as_decimal),
        )

    def _write_result(self, order_id: str) -> dict:
        return {
            "status": "Success",
            "message": "Success",
            "brokerOrderId": order_id,
            "requestTime": iifl_time(self.state.clock.now()),
        }

    def _row(self, account: Account, order: ob.Order, snap: ob.Snapshot) -> dict:
        instrument = order.instrument
        at_exchange = order.exchange_time is not None and snap.at >= order.exchange_time
        pending = 0 if snap.status in ob.TERMINAL else snap.quantity - snap.filled - snap.cancelled
        return {
            "clientId": account.client_id,
            "placedBy": account.client_id,
            "brokerOrderId": order.order_id,
            "exchangeOrderId": order.exchange_order_id if at_exchange else "",
            "orderStatus": STATUS[snap.status],
            "formattedInstrumentName": instrument.name,
            "tradingSymbol": instrument.trading_symbol,
            "instrumentId": instrument.instrument_id,
            "exchange": instrument.exchange,
            "transactionType": order.side,
            "quantity": str(snap.quantity),
            "product": order.product,
            "orderComplexity": order.echo.get("orderComplexity") or "REGULAR",
            "orderType": snap.order_type,
            "price": money(snap.price),
            "averageTradedPrice": money(snap.average_price),
            "slTriggerPrice": money(snap.trigger_price),
            "validity": order.validity,
            "disclosedQuantity": str(order.disclosed_quantity),
            "marketProtectionPercent": money(order.market_protection),
            "orderTime": iifl_time(order.created_at),
            "exchangeTimestamp": iifl_time(order.exchange_time)
            if at_exchange and order.exchange_time
            else "",
            "exchangeUpdateTime": iifl_time(snap.at) if at_exchange else "",
            "rejectionReason": snap.rejection_reason,
            "mainLegOrderId": "NA",
            "pendingQuantity": str(pending),
            "filledQuantity": str(snap.filled),
            "cancelledQuantity": str(snap.cancelled),
            "appKey": account.app_key,
            "apiOrderSource": order.echo.get("apiOrderSource", ""),
            "algoId": order.echo.get("algoId", ""),
            "source": "API",
            "orderTag": order.tag or "NA",
            "brokerUpdateTime": iifl_time(snap.at),
        }

    def _trade_row(self, account: Account, trade: ob.Trade) -> dict:
        order = trade.order
        instrument = order.instrument
        return {
            "clientId": account.client_id,
            "placedBy": account.client_id,
            "brokerOrderId": order.order_id,
            "exchangeOrderId": order.exchange_order_id,
            "exchangeTradeId": trade.trade_id,
            "formattedInstrumentName": instrument.name,
            "tradingSymbol": instrument.trading_symbol,
            "instrumentId": instrument.instrument_id,
            "exchange": instrument.exchange,
            "transactionType": order.side,
            "product": order.product,
            "orderComplexity": order.echo.get("orderComplexity") or "REGULAR",
            "orderType": order.order_type,
            "validity": order.validity,
            "tradedPrice": money(trade.price),
            "filledQuantity": str(trade.quantity),
            "fillTimestamp": iifl_time(trade.at),
            "algoId": order.echo.get("algoId", ""),
            "orderTag": order.tag or "NA",
        }

    def _position_row(self, position: ob.Position) -> dict:
        instrument = position.instrument
        ltp = self.state.master.price(instrument)
        unrealized = (
            (ltp - position.net_average) * position.net_quantity if position.net_quantity else Decimal(0)
        )
        return {
            "instrumentId": instrument.instrument_id,
            "tradingSymbol": instrument.trading_symbol,
            "formattedInstrumentName": instrument.name,
            "exchange": instrument.exchange,
            "product": position.product,
            "netQuantity": str(position.net_quantity),
            "netAveragePrice": money(position.net_average),
            "overnightQuantity": "0",
            "buyQuantity": str(position.buy_quantity),
            "sellQuantity": str(position.sell_quantity),
            "dayBuyQuantity": str(position.buy_quantity),
            "daySellQuantity": str(position.sell_quantity),
            "dayBuyPrice": money(position.buy_average),
            "daySellPrice": money(position.sell_average),
            "previousDayClose": money(self.state.master.initial_prices[instrument.key]),
            "ltp": money(ltp),
            "realizedPnl": money(position.realized_pnl),
            "unrealizedPnl": money(unrealized),
        }

    def _holding_row(self, holding: dict) -> dict:
        instrument = holding["instrument"]
        quantity = str(holding["quantity"])
        return {
            "isin": "",
            "nseInstrumentId": instrument.instrument_id if instrument.exchange == "NSEEQ" else "",
            "bseInstrumentId": instrument.instrument_id if instrument.exchange == "BSEEQ" else "",
            "nseTradingSymbol": instrument.trading_symbol if instrument.exchange == "NSEEQ" else "",
            "bseTradingSymbol": instrument.trading_symbol if instrument.exchange == "BSEEQ" else "",
            "formattedInstrumentName": instrument.name,
            "product": "DELIVERY",
            "totalQuantity": quantity,
            "dpQuantity": quantity,
            "t1Quantity": "0",
            "collateralQuantity": "0",
            "authorizedQuantity": "0",
            "averageTradedPrice": money(holding["average_price"]),
            "previousDayClose": money(self.state.master.initial_prices[instrument.key]),
            "ltp": money(self.state.master.price(instrument)),
        }
