"""The broker adapter interface: domain types, the errors every broker answer is classified into.

An adapter speaks one IIFL dialect and nothing else: it turns an OrderSpec into the dialect's HTTP
call and the reply into a PlaceAck, a BookEntry list or one of the errors below. It never retries and
never sleeps; pacing, retries and the never-twice rule live in placement.AccountClient, which is the
only thing that may decide that an order is absent.

The enums carry the proto's numbers (copytrade.broker.v1), so `Side(proto_value)` and
`int(Side.BUY)` convert without tables.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import Enum, IntEnum
from typing import Protocol


class Dialect(str, Enum):
    IIFL_CAPITAL_V1 = "IIFL_CAPITAL_V1"
    XTS = "XTS"


class Exchange(IntEnum):
    NSE = 1
    BSE = 2
    NFO = 3
    BFO = 4


class Side(IntEnum):
    BUY = 1
    SELL = 2


class OrderType(IntEnum):
    MARKET = 1
    LIMIT = 2
    SL = 3
    SL_M = 4


class Product(IntEnum):
    CNC = 1
    MIS = 2
    NRML = 3


class Validity(IntEnum):
    DAY = 1
    IOC = 2


class OrderStatus(IntEnum):
    PENDING = 1
    OPEN = 2
    TRIGGER_PENDING = 3
    PARTIALLY_FILLED = 4
    FILLED = 5
    REJECTED = 6
    CANCELLED = 7
    MODIFY_PENDING = 8
    CANCEL_PENDING = 9
    OTHER = 10

    @property
    def is_final(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable contract and how each dialect names it (from the instrument master)."""

    exchange: Exchange
    symbol: str  # the platform's symbol: RELIANCE, NIFTY26APRFUT
    trading_symbol: str  # the exchange's: RELIANCE-EQ
    v1_exchange: str  # NSEEQ, NSEFO, BSEEQ
    v1_instrument_id: str
    xts_segment: str  # NSECM, NSEFO, BSECM
    xts_instrument_id: int
    lot_size: int
    tick_size: Decimal
    freeze_quantity: int | None  # None: no freeze limit published


class InstrumentLookup(Protocol):
    """How an adapter maps a book row's broker ids back to the platform's instrument."""

    def by_v1_id(self, v1_exchange: str, instrument_id: str) -> Instrument | None: ...

    def by_xts_id(self, segment: str, instrument_id: int) -> Instrument | None: ...


def on_tick(value: Decimal, tick: Decimal) -> bool:
    return value % tick == 0


def protective_limit(side: Side, trigger: Decimal, percent: Decimal, tick: Decimal) -> Decimal:
    """The limit price of the SL order that stands in for an SL-M (bare SL-M is refused since
    2026-04-01): the trigger moved against the order by `percent`, rounded to the tick toward the
    trigger so that the protection never exceeds what was asked, and at least one tick away from
    the trigger so that the order can still fill when the price moves through it."""
    move = trigger * percent / 100
    if side is Side.BUY:
        limit = ((trigger + move) / tick).to_integral_value(ROUND_FLOOR) * tick
        return max(limit, trigger + tick)
    limit = ((trigger - move) / tick).to_integral_value(ROUND_CEILING) * tick
    return max(min(limit, trigger - tick), tick)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What opens a session. v1: app_key/app_secret of the IIFL app and the login redirect's auth
    code; XTS: appKey/secretKey. Secrets are kept out of repr so they never reach a log line."""

    client_code: str
    app_key: str = field(repr=False)
    app_secret: str = field(repr=False)
    auth_code: str = field(default="", repr=False)


IST = timezone(timedelta(hours=5, minutes=30), "IST")


def next_ist_midnight(moment: datetime) -> datetime:
    """IIFL sessions die at midnight IST (SEBI's daily login); XTS is assumed to do the same."""
    local = moment.astimezone(IST)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0), IST)
    return midnight.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class BrokerSession:
    token: str = field(repr=False)
    dialect: Dialect
    opened_at: datetime
    expires_at: datetime
    user_id: str = ""  # XTS answers the session's userID; v1 leaves it empty

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires_at


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """A validated order, ready for any dialect (instruments.InstrumentMaster.validate builds it)."""

    instrument: Instrument
    side: Side
    order_type: OrderType
    product: Product
    validity: Validity
    quantity: int
    price: Decimal | None
    trigger_price: Decimal | None
    tag: str
    market_protection_percent: Decimal | None
    algo_id: str


@dataclass(frozen=True, slots=True)
class OrderChange:
    """A modification: None keeps the current value."""

    quantity: int | None = None
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    order_type: OrderType | None = None
    validity: Validity | None = None

    @property
    def empty(self) -> bool:
        return all(
            value is None
            for value in (self.quantity, self.price, self.trigger_price, self.order_type, self.validity)
        )


@dataclass(frozen=True, slots=True)
class PlaceAck:
    broker_order_id: str
    tag: str


@dataclass(frozen=True, slots=True)
class ActionAck:
    broker_order_id: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class BookEntry:
    """One order-book row, normalised; the raw status is kept as the broker wrote it."""

    broker_order_id: str
    exchange_order_id: str
    tag: str
    exchange: Exchange | None
    symbol: str  # the platform's symbol when the instrument master knows it, else the broker's
    instrument: Instrument | None
    side: Side | None
    order_type: OrderType | None
    product: Product | None
    validity: Validity | None
    quantity: int
    filled_quantity: int
    pending_quantity: int
    price: Decimal | None
    trigger_price: Decimal | None
    average_price: Decimal | None
    status: OrderStatus
    raw_status: str
    rejection_reason: str
    exchange_time: datetime | None  # UTC


@dataclass(frozen=True, slots=True)
class Funds:
    available: Decimal
    utilised: Decimal
    raw: Mapping[str, object] = field(default_factory=dict, repr=False)


# Errors. Each carries a stable code for PlacementResult.error_code and a reason for people.


class BrokerError(Exception):
    default_code = "BROKER_ERROR"

    def __init__(self, reason: str, *, code: str | None = None) -> None:
        super().__init__(reason)
        self.code = code or self.default_code
        self.reason = reason


class SessionExpired(BrokerError):
    """The broker refused the session (v1 HTTP 401, XTS e-session-0007): nothing was done."""

    default_code = "SESSION_EXPIRED"


class CredentialsRejected(BrokerError):
    """The broker refused to open a session with these credentials."""

    default_code = "CREDENTIALS_REJECTED"


class RateLimited(BrokerError):
    """HTTP 429: the broker refused the call before acting on it."""

    default_code = "HTTP_429"


class Rejected(BrokerError):
    """The broker or its RMS refused the order or action; sending it again would be refused again."""

    default_code = "REJECTED"


class OutcomeUnknown(BrokerError):
    """A write whose fate is unknown (timeout, 5xx, dropped connection, unparseable or generic-error
    reply): the order may exist, and only the order book can say."""

    default_code = "BROKER_TIMEOUT"


class Unavailable(BrokerError):
    """A read that failed, or a write that provably never left (connection refused): safe to retry."""

    default_code = "BROKER_UNREACHABLE"


class BrokerAdapter(abc.ABC):
    """One IIFL dialect. Methods take an optional per-call timeout (seconds) so that the caller can
    fit a call into an order's overall deadline."""

    dialect: Dialect

    @abc.abstractmethod
    async def open_session(
        self, credentials: Credentials, *, timeout: float | None = None
    ) -> BrokerSession: ...

    @abc.abstractmethod
    async def place(
        self, session: BrokerSession, spec: OrderSpec, *, timeout: float | None = None
    ) -> PlaceAck: ...

    @abc.abstractmethod
    async def modify(
        self, session: BrokerSession, current: BookEntry, change: OrderChange, *, timeout: float | None = None
    ) -> ActionAck:
        """Change an open order; `current` is its book row (XTS wants every field each time)."""

    @abc.abstractmethod
    async def cancel(
        self, session: BrokerSession, current: BookEntry, *, timeout: float | None = None
    ) -> ActionAck: ...

    @abc.abstractmethod
    async def order_book(self, session: BrokerSession, *, timeout: float | None = None) -> list[BookEntry]:
        """Today's orders, oldest first; an empty book is an empty list."""

    @abc.abstractmethod
    async def funds(self, session: BrokerSession, *, timeout: float | None = None) -> Funds: ...

    async def find_by_tag(
        self, session: BrokerSession, tag: str, *, timeout: float | None = None
    ) -> BookEntry | None:
        """The book row carrying `tag`; None is proof that the broker has no such order."""
        for entry in await self.order_book(session, timeout=timeout):
            if entry.tag == tag:
                return entry
        return None
