"""What a listener hands the broker logic, and what it gets back.

The HTTP/1.1 listener (aiohttp, http1.py) and the h2c listener (h2, http2.py) both turn a request into
a `Request` and act on the `Reply`; the logic itself never sees a framework. A `Response` is written
as it is; `DROP` means "close without answering" (HTTP/1.1: the connection; HTTP/2: the stream).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final


@dataclass(slots=True)
class Request:
    method: str
    path: str
    # Header names are lower case.
    headers: Mapping[str, str]
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    peer: str = ""

    def header(self, name: str) -> str:
        return self.headers.get(name, "")


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"


class _Drop(enum.Enum):
    # A one-member enum rather than a plain object, so that `reply is DROP` tells type checkers the rest
    # of the branch has a Response.
    DROP = "DROP"

    def __repr__(self) -> str:
        return "DROP"


DROP: Final = _Drop.DROP
Reply = Response | _Drop


def _plain(value: Any) -> Any:
    # Money and quantities are Decimal inside; on the wire they are exact strings.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), default=_plain).encode()


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(status, dumps(payload))


def loads(body: bytes) -> Any:
    """JSON with every non-integer number as Decimal, so a price sent as 1501.55 stays exact."""
    return json.loads(body, parse_float=Decimal)
