"""Page sizes and opaque page tokens: base64 of a small JSON object only this service reads."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from copytrade.core.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(value: int) -> int:
    if value < 0:
        raise InvalidArgument("must not be negative", field="page_size")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode()


def decode(token: str) -> dict[str, Any] | None:
    """The position a token stands for; None for the first page."""
    if not token:
        return None
    try:
        position = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, UnicodeError, ValueError):
        position = None
    if not isinstance(position, dict):
        raise InvalidArgument("is not a token this service issued", field="page_token")
    return position


def field(position: dict[str, Any], key: str, kind: type) -> Any:
    value = position.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise InvalidArgument("is not a token this service issued", field="page_token")
    return value
