"""ExecuteFanout: every order of a master order's fan-out placed at once, results streamed as they land.

All orders are in flight together (the per-session rate limits and the HTTP pool pace them), so a
fan-out costs about the slowest broker answer, not the sum of them. Results that land in the same
turn of the event loop go out in one stream message: a Python gRPC stream pays per message, not per
item (ENVOY_GRPC_NOTES 2.6).

The placements belong to the process, not to the call: when the caller goes away mid-stream the
orders already on their way are finished (an order cut off half-sent would be an unknown), and a
caller that sends them again gets the broker's existing orders back through the tag lookup.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

from copytrade.broker.v1 import broker_pb2
from copytrade.core.errors import InvalidArgument

MAX_ORDERS_PER_FANOUT = 20_000  # as documented in broker.proto
# Results per stream message: big enough to batch a burst, small enough to keep messages moderate.
MAX_RESULTS_PER_MESSAGE = 500
TAG = re.compile(r"^[A-Za-z0-9]{1,20}$")

Outcome = broker_pb2.PlacementOutcome
PlaceOne = Callable[[broker_pb2.NewOrder], Awaitable[broker_pb2.PlacementResult]]

# Placements outlive the stream that started them; hold them here so they are not garbage-collected.
_in_flight: set[asyncio.Task[None]] = set()


def check_request(request: broker_pb2.ExecuteFanoutRequest) -> None:
    """Refuse a malformed request as a whole, before anything is placed."""
    if request.fanout_id <= 0:
        raise InvalidArgument("is required and must be positive", field="fanout_id")
    if not request.orders:
        raise InvalidArgument("at least one order is required", field="orders")
    if len(request.orders) > MAX_ORDERS_PER_FANOUT:
        raise InvalidArgument(f"at most {MAX_ORDERS_PER_FANOUT} orders per fan-out", field="orders")
    first_seen: dict[str, int] = {}
    for index, order in enumerate(request.orders):
        if order.tag in first_seen:
            raise InvalidArgument(
                f"duplicate of orders[{first_seen[order.tag]}].tag ({order.tag!r}); tags must be unique",
                field=f"orders[{index}].tag",
            )
        first_seen[order.tag] = index


def invalid_order(order: broker_pb2.NewOrder, reason: str) -> broker_pb2.PlacementResult:
    return broker_pb2.PlacementResult(
        tag=order.tag,
        user_id=order.user_id,
        account_id=order.account_id,
        order_id=order.order_id,
        outcome=Outcome.PLACEMENT_OUTCOME_FAILED,
        error_code="INVALID_ORDER",
        reason=reason,
    )


async def stream_fanout(
    request: broker_pb2.ExecuteFanoutRequest, place_one: PlaceOne
) -> AsyncIterator[broker_pb2.ExecuteFanoutResponse]:
    check_request(request)
    started = time.perf_counter()
    results: asyncio.Queue[broker_pb2.PlacementResult] = asyncio.Queue()

    async def place(order: broker_pb2.NewOrder) -> None:
        await results.put(await place_one(order))

    for order in request.orders:
        task = asyncio.get_running_loop().create_task(place(order))
        _in_flight.add(task)
        task.add_done_callback(_in_flight.discard)

    outcomes: Counter[int] = Counter()
    first_latency_ms = 0
    remaining = len(request.orders)
    while remaining:
        batch = [await results.get()]
        while not results.empty() and len(batch) < MAX_RESULTS_PER_MESSAGE:
            batch.append(results.get_nowait())
        if not first_latency_ms:
            first_latency_ms = max(1, round((time.perf_counter() - started) * 1000))
        remaining -= len(batch)
        outcomes.update(result.outcome for result in batch)
        yield broker_pb2.ExecuteFanoutResponse(results=batch)

    yield broker_pb2.ExecuteFanoutResponse(
        summary=broker_pb2.FanoutSummary(
            fanout_id=request.fanout_id,
            total=len(request.orders),
            placed=outcomes[Outcome.PLACEMENT_OUTCOME_PLACED],
            rejected=outcomes[Outcome.PLACEMENT_OUTCOME_REJECTED],
            failed=outcomes[Outcome.PLACEMENT_OUTCOME_FAILED],
            needs_relogin=outcomes[Outcome.PLACEMENT_OUTCOME_NEEDS_RELOGIN],
            account_not_linked=outcomes[Outcome.PLACEMENT_OUTCOME_ACCOUNT_NOT_LINKED],
            unknown=outcomes[Outcome.PLACEMENT_OUTCOME_UNKNOWN],
            first_result_latency_ms=first_latency_ms,
            elapsed_ms=round((time.perf_counter() - started) * 1000),
        )
    )
