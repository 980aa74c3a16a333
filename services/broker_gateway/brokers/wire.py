"""What both dialects share on the wire: JSON in and out, lenient number and time parsing, status
normalisation, and the classification of a failed HTTP exchange into the errors of base.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from services.broker_gateway.brokers.base import (
    IST,
    BrokerError,
    OrderStatus,
    OutcomeUnknown,
    RateLimited,
    Unavailable,
)
from services.broker_gateway.brokers.http import NoReply, NotSent, Reply, Transport, TransportError


def encode(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def decode(body: bytes) -> object | None:
    """The reply's JSON, or None when it is not JSON (an HTML error page from a proxy, a cut body)."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def decimal_text(value: Decimal) -> str:
    """A price as the brokers want it in a string: plain notation, no exponent, no float."""
    return format(value, "f")


def json_number(value: Decimal) -> float:
    """A price as a JSON number (XTS). json writes a float as its shortest round-trip repr, which
    for a price of at most 15 significant digits is exactly the decimal text; check it is."""
    number = float(value)
    if Decimal(repr(number)) != value:
        raise ValueError(f"{value} cannot travel exactly as a JSON number")
    return number


def to_decimal(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        # str() first: a float from the JSON parser becomes its short repr, not its binary expansion.
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def to_int(value: object) -> int:
    number = to_decimal(value)
    return int(number) if number is not None else 0


_TIME_FORMATS = (
    "%d-%b-%Y %H:%M:%S",
    "%d-%m-%Y %H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%b %d %Y %H:%M:%S",
    "%d %b %Y %H:%M:%S",
)


def ist_time(value: object) -> datetime | None:
    """An exchange time as the brokers write it (IST, no zone; ISO accepted too), in UTC."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=IST).astimezone(UTC)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=IST)).astimezone(UTC)


def _status_key(raw: str) -> str:
    return "".join(ch for ch in raw.lower() if ch.isalnum())


# Both dialects' status words, matched case-insensitively and ignoring spaces, '_' and '-'.
_STATUSES = {
    "putorderreqreceived": OrderStatus.PENDING,
    "pendingnew": OrderStatus.PENDING,
    "validationpending": OrderStatus.PENDING,
    "openpending": OrderStatus.PENDING,
    "new": OrderStatus.OPEN,
    "open": OrderStatus.OPEN,
    "pending": OrderStatus.OPEN,
    "replaced": OrderStatus.OPEN,
    "modified": OrderStatus.OPEN,
    "triggerpending": OrderStatus.TRIGGER_PENDING,
    "partiallyfilled": OrderStatus.PARTIALLY_FILLED,
    "partfilled": OrderStatus.PARTIALLY_FILLED,
    "complete": OrderStatus.FILLED,
    "completed": OrderStatus.FILLED,
    "filled": OrderStatus.FILLED,
    "traded": OrderStatus.FILLED,
    "executed": OrderStatus.FILLED,
    "rejected": OrderStatus.REJECTED,
    "cancelled": OrderStatus.CANCELLED,
    "canceled": OrderStatus.CANCELLED,
    "pendingreplace": OrderStatus.MODIFY_PENDING,
    "modifypending": OrderStatus.MODIFY_PENDING,
    "modifyvalidationpending": OrderStatus.MODIFY_PENDING,
    "pendingcancel": OrderStatus.CANCEL_PENDING,
    "cancelpending": OrderStatus.CANCEL_PENDING,
}


def normalise_status(raw: str) -> OrderStatus:
    return _STATUSES.get(_status_key(raw), OrderStatus.OTHER)


async def exchange(
    transport: Transport,
    method: str,
    path: str,
    *,
    headers: dict[str, str],
    payload: object = None,
    timeout: float | None,
    write: bool,
) -> Reply:
    """One HTTP exchange, with the failures every dialect classifies alike already raised:
    no answer, 429 and 5xx. A write that may have reached the broker is OutcomeUnknown; anything
    that provably did not, and any read, is Unavailable."""
    body = encode(payload) if payload is not None else None
    try:
        reply = await transport.request(method, path, headers=headers, body=body, timeout=timeout)
    except NotSent as exc:
        raise Unavailable(f"broker unreachable: {exc}", code="BROKER_UNREACHABLE") from None
    except NoReply as exc:
        code = "BROKER_TIMEOUT" if exc.timed_out else "CONNECTION_DROPPED"
        if write:
            raise OutcomeUnknown(f"no answer from the broker: {exc}", code=code) from None
        raise Unavailable(f"no answer from the broker: {exc}", code=code) from None
    except TransportError as exc:  # pragma: no cover - every transport raises one of the two above
        raise _unknown_or_unavailable(write, str(exc), "BROKER_UNREACHABLE") from None
    if reply.status == 429:
        raise RateLimited("the broker's rate limit was exceeded (HTTP 429)", code="HTTP_429")
    if reply.status >= 500:
        raise _unknown_or_unavailable(write, f"broker error HTTP {reply.status}", f"HTTP_{reply.status}")
    return reply


def _unknown_or_unavailable(write: bool, reason: str, code: str) -> BrokerError:
    return OutcomeUnknown(reason, code=code) if write else Unavailable(reason, code=code)


def unparseable(write: bool, reply: Reply) -> BrokerError:
    """A reply that is not the dialect's JSON: on a write the order may exist all the same."""
    return _unknown_or_unavailable(
        write, f"unreadable broker reply (HTTP {reply.status})", f"HTTP_{reply.status}"
    )
