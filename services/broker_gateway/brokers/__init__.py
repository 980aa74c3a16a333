"""Talking to IIFL: one adapter per dialect behind one interface, pooled HTTP, per-session pacing,
and AccountClient, which places an order at most once whatever the broker does.

    transport = HttpClients(settings).for_dialect("XTS")
    adapter = make_adapter("XTS", transport, InstrumentMaster.load())
    client = AccountClient.from_settings(adapter, session, settings, on_session_expired=relogin)
    placement = await client.place(spec)
"""

from services.broker_gateway.brokers.base import (
    ActionAck,
    BookEntry,
    BrokerAdapter,
    BrokerError,
    BrokerSession,
    Credentials,
    CredentialsRejected,
    Dialect,
    Exchange,
    Funds,
    Instrument,
    OrderChange,
    OrderSpec,
    OrderStatus,
    OrderType,
    OutcomeUnknown,
    PlaceAck,
    Product,
    RateLimited,
    Rejected,
    SessionExpired,
    Side,
    Unavailable,
    Validity,
)
from services.broker_gateway.brokers.circuit import BreakerState, CircuitBreaker
from services.broker_gateway.brokers.http import HttpClients, Transport, make_transport
from services.broker_gateway.brokers.iifl_v1 import IiflV1Adapter
from services.broker_gateway.brokers.outcomes import (
    ActionOutcome,
    ActionResult,
    NeedsRelogin,
    Placement,
    PlacementOutcome,
)
from services.broker_gateway.brokers.placement import AccountClient
from services.broker_gateway.brokers.rate_limit import RateLimiter, SessionLimits
from services.broker_gateway.brokers.xts import XtsAdapter


def make_adapter(dialect: Dialect | str, transport: Transport, instruments) -> BrokerAdapter:
    """The adapter for a dialect; `instruments` is the InstrumentMaster (for book rows)."""
    if Dialect(dialect) is Dialect.IIFL_CAPITAL_V1:
        return IiflV1Adapter(transport, instruments)
    return XtsAdapter(transport, instruments)


__all__ = [
    "AccountClient",
    "ActionAck",
    "ActionOutcome",
    "ActionResult",
    "BookEntry",
    "BreakerState",
    "BrokerAdapter",
    "BrokerError",
    "BrokerSession",
    "CircuitBreaker",
    "Credentials",
    "CredentialsRejected",
    "Dialect",
    "Exchange",
    "Funds",
    "HttpClients",
    "IiflV1Adapter",
    "Instrument",
    "NeedsRelogin",
    "OrderChange",
    "OrderSpec",
    "OrderStatus",
    "OrderType",
    "OutcomeUnknown",
    "PlaceAck",
    "Placement",
    "PlacementOutcome",
    "Product",
    "RateLimited",
    "RateLimiter",
    "Rejected",
    "SessionExpired",
    "SessionLimits",
    "Side",
    "Transport",
    "Unavailable",
    "Validity",
    "XtsAdapter",
    "make_adapter",
    "make_transport",
]
