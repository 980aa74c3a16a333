"""Injected faults: what was drawn, and what the client then sees.

Transport faults (http_5xx, timeout, drop) hit a whole request. For a write (place, modify, cancel)
the mock first decides, with probability placed_before_fault, whether the write took effect before
the fault: that is the case a client must survive without placing twice, because it cannot tell
the two apart. Order faults (ec003, rms_reject, exchange_reject, partial_fill) are drawn per order.
"""

from __future__ import annotations

import asyncio
import random

from mock_iifl.config import Faults
from mock_iifl.wire import DROP, Reply, Response

TRANSPORT_KINDS = ("http_5xx", "timeout", "drop")
ORDER_KINDS = ("ec003", "rms_reject", "exchange_reject", "partial_fill")
# What a load balancer in front of a broker sends; clients must not expect JSON here.
_5XX_BODY = b"<html><body><h1>%d</h1>upstream error</body></html>"


def draw_transport(faults: Faults, rng: random.Random) -> str | None:
    total = faults.http_5xx + faults.timeout + faults.drop
    if total == 0:
        return None
    draw = rng.random()
    for kind in TRANSPORT_KINDS:
        probability = getattr(faults, kind)
        if draw < probability:
            return kind
        draw -= probability
    return None


def chance(probability: float, rng: random.Random) -> bool:
    return probability > 0 and rng.random() < probability


async def transport_reply(kind: str, faults: Faults, rng: random.Random) -> Reply:
    if kind == "http_5xx":
        status = rng.choice(faults.http_5xx_statuses)
        return Response(status, _5XX_BODY % status, "text/html")
    if kind == "timeout":
        # Held past any sane client timeout, then closed unanswered (unless the mock stops first).
        await asyncio.sleep(faults.timeout_hold_seconds)
    return DROP


def fill_tranches(quantity: int, lot_size: int, parts: int, rng: random.Random) -> list[int]:
    """Split a quantity into 2..parts fills of whole lots; [] if it is a single lot."""
    lots = quantity // lot_size
    if lots < 2:
        return []
    count = rng.randint(2, min(parts, lots))
    cuts = sorted(rng.sample(range(1, lots), count - 1))
    bounds = [0, *cuts, lots]
    return [(bounds[i + 1] - bounds[i]) * lot_size for i in range(count)]
