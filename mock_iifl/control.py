"""The control and inspection API under /_mock (documented in the package docstring).

Control calls get no latency, no rate limit and no faults. Bodies and answers are JSON with
snake_case keys; a bad body is HTTP 400 `{"error": "..."}` naming the field.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from mock_iifl.accounts import DIALECTS, Account
from mock_iifl.clock import IST
from mock_iifl.config import AccountConfig, RunConfig, merged
from mock_iifl.orderbook import Order
from mock_iifl.state import MockState
from mock_iifl.wire import Request, Response, json_response, loads

PREFIX = "/_mock/"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Holding(_Body):
    exchange: Literal["NSEEQ", "BSEEQ"] = "NSEEQ"
    instrument_id: str
    quantity: int = Field(gt=0)
    average_price: Decimal = Field(gt=0)


class Registration(_Body):
    dialect: Literal["iifl_v1", "xts"]
    client_id: str | None = Field(None, min_length=1, max_length=40)
    app_key: str | None = Field(None, min_length=1, max_length=100)
    app_secret: str | None = Field(None, min_length=1, max_length=200)
    funds: Decimal | None = Field(None, ge=0)
    allowed_ips: list[str] = Field(default_factory=list)
    config: AccountConfig = AccountConfig()
    holdings: list[Holding] = Field(default_factory=list)


class AccountUpdate(_Body):
    funds: Decimal | None = Field(None, ge=0)
    allowed_ips: list[str] | None = None
    config: AccountConfig | None = None


class AuthCodeRequest(_Body):
    client_id: str = Field(min_length=1, max_length=40)
    app_secret: str | None = Field(None, min_length=1, max_length=200)
    app_key: str | None = Field(None, min_length=1, max_length=100)


class ExpireRequest(_Body):
    dialect: Literal["iifl_v1", "xts"] | None = None
    client_id: str | None = None


class ClockRequest(_Body):
    advance_seconds: float | None = None
    set: datetime | None = None


class ResetRequest(_Body):
    config: dict[str, Any] = Field(default_factory=dict)


# {"NSEEQ:2885": "1420.50", ...}
_PRICES = TypeAdapter(dict[Annotated[str, Field(pattern=r"^[A-Z]+:[0-9]+$")], Decimal])


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Control:
    def __init__(self, state: MockState) -> None:
        self.state = state
        self._fixed: dict[tuple[str, str], Callable[[Request], Any]] = {
            ("GET", "health"): lambda request: {"status": "ok"},
            ("POST", "reset"): self.reset,
            ("GET", "config"): lambda request: self.state.config.model_dump(mode="json"),
            ("POST", "config"): self.configure,
            ("GET", "accounts"): self.list_accounts,
            ("POST", "accounts"): self.register,
            ("POST", "v1/authcode"): self.auth_code,
            ("POST", "sessions/expire"): self.expire,
            ("GET", "clock"): lambda request: {"now": self.state.clock.now().isoformat()},
            ("POST", "clock"): self.move_clock,
            ("GET", "prices"): lambda request: {
                key: str(v) for key, v in sorted(self.state.master.prices.items())
            },
            ("POST", "prices"): self.set_prices,
            ("GET", "inspect"): self.inspect,
            ("GET", "arrivals"): self.arrivals,
        }

    async def handle(self, request: Request) -> Response:
        self.state.stats.requests["control"] += 1
        try:
            return self._dispatch(request)
        except ControlError as exc:
            return json_response({"error": str(exc)}, exc.status)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in err['loc']) or 'body'}: {err['msg']}"
                for err in exc.errors()
            )
            return json_response({"error": problems}, 400)

    def _dispatch(self, request: Request) -> Response:
        path = request.path[len(PREFIX) :].strip("/")
        method = (
            "POST"
            if request.method in ("PUT", "PATCH") and not path.startswith("accounts/")
            else request.method
        )
        handler = self._fixed.get((method, path))
        if handler is not None:
            result = handler(request)
            return json_response(result, 201 if path == "accounts" and method == "POST" else 200)
        parts = path.split("/")
        if parts[0] == "accounts" and len(parts) in (3, 4):
            account = self._account(parts[1], parts[2])
            action = parts[3] if len(parts) == 4 else ""
            if (request.method, action) == ("GET", ""):
                return json_response(self._summary(account, by_tag=True))
            if request.method in ("PATCH", "PUT", "POST") and action == "":
                return json_response(self.update(account, request))
            if (request.method, action) == ("GET", "orders"):
                return json_response([self._order(order) for order in account.book.orders])
            if (request.method, action) == ("POST", "authcode"):
                return json_response(self._issue(account))
        raise ControlError(404, f"no control endpoint {request.method} {request.path}")

    # Run.

    def reset(self, request: Request) -> dict:
        body = ResetRequest.model_validate(self._json(request) or {})
        self.state.reset(RunConfig.model_validate(body.config))
        return {"status": "ok", "config": self.state.config.model_dump(mode="json")}

    def configure(self, request: Request) -> dict:
        update = self._json(request)
        if not isinstance(update, dict):
            raise ControlError(400, "the body must be a JSON object of config sections")
        self.state.configure(merged(self.state.config, update))
        return self.state.config.model_dump(mode="json")

    def move_clock(self, request: Request) -> dict:
        body = ClockRequest.model_validate(self._json(request))
        clock = self.state.clock
        if body.set is not None:
            when = body.set if body.set.tzinfo else body.set.replace(tzinfo=IST)
            clock.set(when)
        if body.advance_seconds is not None:
            clock.advance(body.advance_seconds)
        return {"now": clock.now().isoformat()}

    def set_prices(self, request: Request) -> dict:
        prices = _PRICES.validate_python(self._json(request))
        master = self.state.master
        for key, price in prices.items():
            exchange, instrument_id = key.split(":")
            instrument = master.get(exchange, instrument_id)
            if instrument is None:
                raise ControlError(404, f"no instrument {key}")
            if price <= 0 or price % instrument.tick_size:
                raise ControlError(
                    400, f"{key}: price {price} is not a positive multiple of the tick {instrument.tick_size}"
                )
        self.state.set_prices(prices)
        return {key: str(price) for key, price in prices.items()}

    # Accounts.

    def register(self, request: Request) -> dict:
        body = Registration.model_validate(self._json(request))
        if body.dialect == "iifl_v1" and not body.client_id:
            raise ControlError(400, "client_id is required for an iifl_v1 account")
        app_key = body.app_key or secrets.token_hex(8)
        holdings = []
        for holding in body.holdings:
            instrument = self.state.master.get(holding.exchange, holding.instrument_id)
            if instrument is None:
                raise ControlError(400, f"holdings: no instrument {holding.exchange}:{holding.instrument_id}")
            holdings.append(
                {
                    "instrument": instrument,
                    "quantity": holding.quantity,
                    "average_price": holding.average_price,
                }
            )
        try:
            account = self.state.register(
                body.dialect,
                body.client_id or app_key,
                app_key,
                body.app_secret or secrets.token_hex(16),
                funds=body.funds,
                allowed_ips=frozenset(body.allowed_ips),
                config=body.config,
                holdings=holdings,
            )
        except ValueError as exc:
            raise ControlError(409, str(exc)) from None
        answer = {
            "dialect": account.dialect,
            "client_id": account.client_id,
            "app_key": account.app_key,
            "app_secret": account.app_secret,
            "funds": str(account.funds),
        }
        if account.dialect == "iifl_v1":
            answer["auth_code"] = self.state.accounts.issue_auth_code(account)
        return answer

    def update(self, account: Account, request: Request) -> dict:
        body = AccountUpdate.model_validate(self._json(request))
        if body.funds is not None:
            account.funds = body.funds
        if body.allowed_ips is not None:
            account.allowed_ips = frozenset(body.allowed_ips)
        if body.config is not None:
            account.config = body.config
        return self._summary(account, by_tag=False)

    def auth_code(self, request: Request) -> dict:
        """The daily browser login of a v1 client, registering it first in auto-provision mode."""
        body = AuthCodeRequest.model_validate(self._json(request))
        state = self.state
        account = state.accounts.get("iifl_v1", body.client_id)
        if account is None:
            if not state.config.auto_provision:
                raise ControlError(404, f"no iifl_v1 account {body.client_id!r} (auto_provision is off)")
            account = state.register(
                "iifl_v1",
                body.client_id,
                body.app_key or secrets.token_hex(8),
                body.app_secret or secrets.token_hex(16),
                auto=True,
            )
        elif body.app_secret is not None and body.app_secret != account.app_secret:
            raise ControlError(409, f"app_secret differs from the one registered for {body.client_id!r}")
        return self._issue(account)

    def _issue(self, account: Account) -> dict:
        if account.dialect != "iifl_v1":
            raise ControlError(
                400, "auth codes are for iifl_v1 accounts; XTS logs in with appKey and secretKey"
            )
        code = self.state.accounts.issue_auth_code(account)
        return {"client_id": account.client_id, "auth_code": code, "app_secret": account.app_secret}

    def expire(self, request: Request) -> dict:
        body = ExpireRequest.model_validate(self._json(request) or {})
        accounts = self.state.accounts
        if body.client_id is not None:
            if body.dialect is None:
                raise ControlError(400, "dialect is required with client_id")
            count = accounts.expire(self._account(body.dialect, body.client_id))
        elif body.dialect is not None:
            count = sum(accounts.expire(a) for a in accounts.by_key.values() if a.dialect == body.dialect)
        else:
            count = accounts.expire()
        self.state.stats.events["sessions_expired"] += count
        return {"expired": count}

    def list_accounts(self, request: Request) -> dict:
        return {"accounts": [self._summary(a, by_tag=False) for a in self.state.accounts.by_key.values()]}

    # Inspection.

    def inspect(self, request: Request) -> dict:
        query = request.query
        by_tag = query.get("by_tag", "0") not in ("0", "false", "")
        accounts = [
            a
            for a in self.state.accounts.by_key.values()
            if query.get("dialect") in (None, a.dialect) and query.get("client_id") in (None, a.client_id)
        ]
        books = [a.book for a in accounts]
        return {
            "stats": self.state.stats.snapshot(),
            "totals": {
                "accounts": len(accounts),
                "orders": sum(len(b.orders) for b in books),
                "duplicates": sum(b.duplicates for b in books),
                "place_items": sum(b.place_items for b in books),
                "dedupe_hits": sum(b.dedupe_hits for b in books),
                "refused": sum(b.refused for b in books),
                "trades": sum(len(b.trades) for b in books),
            },
            "accounts": [self._summary(a, by_tag=by_tag) for a in accounts],
        }

    def arrivals(self, request: Request) -> dict:
        """When the orders whose tag starts with tag_prefix arrived and were made, across accounts.

        A fan-out's tags share a prefix, so this times one fan-out at the broker without reading
        thousands of order books over HTTP.
        """
        prefix = request.query.get("tag_prefix", "")
        if not prefix:
            raise ControlError(400, "tag_prefix is required")
        orders = list(self.state.tags.starting_with(prefix))
        if not orders:
            return {"orders": 0}
        received = [order.received_at for order in orders]
        created = [order.created_at for order in orders]
        return {
            "orders": len(orders),
            "first_received_at": min(received).isoformat(),
            "last_received_at": max(received).isoformat(),
            "first_created_at": min(created).isoformat(),
            "last_created_at": max(created).isoformat(),
        }

    def _summary(self, account: Account, by_tag: bool) -> dict:
        book = account.book
        orders: dict[str, object] = {
            "count": len(book.orders),
            "duplicates": book.duplicates,
            "untagged": book.untagged,
            "by_status": book.by_status(),
        }
        if by_tag:
            orders["by_tag"] = dict(book.tag_counts)
        return {
            "dialect": account.dialect,
            "client_id": account.client_id,
            "app_key": account.app_key,
            "auto_provisioned": account.auto_provisioned,
            "funds": str(account.funds),
            "utilized_margin": str(book.utilized_margin),
            "sessions_created": account.sessions_created,
            "orders": orders,
            "requests": {
                "place_items": book.place_items,
                "dedupe_hits": book.dedupe_hits,
                "refused": book.refused,
                "modify": book.modifies,
                "cancel": book.cancels,
            },
            "trades": len(book.trades),
            "config": account.config.model_dump(mode="json", exclude_none=True),
        }

    def _order(self, order: Order) -> dict:
        return {
            "order_id": order.order_id,
            "tag": order.tag,
            "status": order.status,
            "instrument": order.instrument.key,
            "side": order.side,
            "quantity": order.quantity,
            "filled": order.filled,
            "cancelled": order.cancelled,
            "average_price": str(order.average_price),
            "order_type": order.order_type,
            "product": order.product,
            "validity": order.validity,
            "price": str(order.price),
            "trigger_price": str(order.trigger_price),
            "rejection_reason": order.rejection_reason,
            "modified": order.modified,
            "session": order.session_token[-12:],
            "created_at": order.created_at.isoformat(),
            "updated_at": order.updated_at.isoformat(),
        }

    def _account(self, dialect: str, client_id: str) -> Account:
        if dialect not in DIALECTS:
            raise ControlError(404, f"dialect must be one of {', '.join(DIALECTS)}")
        account = self.state.accounts.get(dialect, client_id)
        if account is None:
            raise ControlError(404, f"no {dialect} account {client_id!r}")
        return account

    def _json(self, request: Request) -> Any:
        if not request.body.strip():
            return None
        try:
            return loads(request.body)
        except ValueError as exc:
            raise ControlError(400, f"body is not valid JSON: {exc}") from None
