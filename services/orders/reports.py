"""Replication figures: GetOrderStats's success rate and latency percentiles, GetReplicationReport.

Everything is read from the projection of follower orders in `orders.orders` (rows with
`is_master_order = false`, linked by `master_order_id`); see services/orders/projection.py.

Each follower order has one outcome, derived from its status and broker order id:
- PLACED: the broker accepted it (OPEN, PARTIALLY_FILLED, EXECUTED, or any other non-refused status
  that has a broker order id, e.g. SUBMITTED after the broker's answer or CANCELLED after placing);
- REJECTED / FAILED / SKIPPED: the status of the same name; a CANCELLED order that never got a broker
  order id never reached the broker, so the platform chose not to place it: SKIPPED;
- PENDING: anything else (PENDING, or SUBMITTED while the placement is being confirmed).

Figures are exact: counts are integers, the success percentage is rounded half-up from integers,
and percentiles interpolate between stored NUMERIC latencies in Decimal (PostgreSQL's
percentile_cont would go through double precision).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import and_, case, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from copytrade.orders.v1 import orders_pb2
from services.orders.models import Order

OUTCOMES = ("PLACED", "REJECTED", "FAILED", "SKIPPED", "PENDING")
DECIDED_ATTEMPTS = ("PLACED", "REJECTED", "FAILED")  # the success rate's denominator

OUTCOME = case(
    (Order.status.in_(("REJECTED", "FAILED", "SKIPPED")), Order.status),
    (or_(Order.status.in_(("OPEN", "PARTIALLY_FILLED", "EXECUTED")), Order.broker_order_id != ""), "PLACED"),
    (Order.status == "CANCELLED", "SKIPPED"),
    else_="PENDING",
)


@dataclass(frozen=True, slots=True)
class ReplicationStats:
    by_status: dict[str, int]
    replicated: int
    success_percent: str
    latency_p50_ms: str
    latency_p95_ms: str


def latency_text(value: Decimal | None) -> str:
    """Milliseconds as the API shows them (like Order.replication_latency_ms): at least one decimal
    place, and every further digit an interpolation produced, so nothing is rounded away."""
    if value is None:
        return ""
    normal = value.normalize()
    exponent = normal.as_tuple().exponent  # a letter, not a number, for NaN and the infinities
    if isinstance(exponent, int) and exponent > -1:
        normal = normal.quantize(Decimal("0.1"))
    return format(normal, "f")


def percent_text(part: int, whole: int) -> str:
    """part/whole as a percentage with two places, rounded half-up; empty when whole is 0."""
    if whole == 0:
        return ""
    # Integer arithmetic, so no intermediate rounding: hundredths of a percent, half-up.
    hundredths = (part * 10000 * 2 + whole) // (2 * whole)
    return format(Decimal(hundredths).scaleb(-2), "f")


async def _percentile(session: AsyncSession, latencies, count: int, fraction: Decimal) -> Decimal | None:
    """percentile_cont's linear interpolation, exactly: the value at position fraction*(count-1)."""
    if count == 0:
        return None
    position = fraction * (count - 1)
    index = int(position)
    values = list(
        await session.scalars(latencies.order_by(Order.replication_latency_ms).offset(index).limit(2))
    )
    low = values[0]
    high = values[1] if len(values) > 1 else low
    return low + (position - index) * (high - low)


async def order_stats(
    sessions: async_sessionmaker[AsyncSession],
    user_id: int,
    *,
    since: datetime | None,
    until: datetime | None,
) -> ReplicationStats:
    async with sessions() as session:
        window = [Order.created_at >= since] if since is not None else []
        window += [Order.created_at < until] if until is not None else []
        rows = await session.execute(
            select(Order.status, func.count()).where(Order.user_id == user_id, *window).group_by(Order.status)
        )
        by_status = {status: count for status, count in rows}
        # A master's copies are those of their orders created in the window (a copy made just after
        # the window's end still belongs to its order); a follower's are the copies in their account.
        masters_orders = select(Order.id).where(
            Order.user_id == user_id, Order.is_master_order.is_(True), *window
        )
        copies = and_(
            Order.is_master_order.is_(False),
            or_(Order.master_order_id.in_(masters_orders), and_(Order.user_id == user_id, *window)),
        )
        outcomes: dict[str, int] = dict(
            (await session.execute(select(OUTCOME, func.count()).where(copies).group_by(OUTCOME))).all()
        )
        latencies = select(Order.replication_latency_ms).where(
            copies, Order.replication_latency_ms.is_not(None)
        )
        count = await session.scalar(select(func.count()).select_from(latencies.subquery())) or 0
        p50 = await _percentile(session, latencies, count, Decimal("0.5"))
        p95 = await _percentile(session, latencies, count, Decimal("0.95"))
    return ReplicationStats(
        by_status=by_status,
        replicated=sum(outcomes.values()),
        success_percent=percent_text(
            outcomes.get("PLACED", 0), sum(outcomes.get(o, 0) for o in DECIDED_ATTEMPTS)
        ),
        latency_p50_ms=latency_text(p50),
        latency_p95_ms=latency_text(p95),
    )


async def summary(session: AsyncSession, master_order_id: int) -> orders_pb2.ReplicationSummary:
    copies = and_(Order.master_order_id == master_order_id, Order.is_master_order.is_(False))
    counts: dict[str, int] = {}
    first: Decimal | None = None
    last: Decimal | None = None
    rows = await session.execute(
        select(
            OUTCOME,
            func.count(),
            func.min(Order.replication_latency_ms),
            func.max(Order.replication_latency_ms),
        )
        .where(copies)
        .group_by(OUTCOME)
    )
    for outcome, count, fastest, slowest in rows:
        counts[outcome] = count
        # Only a broker's answer has a latency: skipped and pending copies never got one.
        if outcome in DECIDED_ATTEMPTS and fastest is not None:
            first = fastest if first is None else min(first, fastest)
            last = slowest if last is None else max(last, slowest)
    pending = counts.get("PENDING", 0)
    return orders_pb2.ReplicationSummary(
        master_order_id=master_order_id,
        followers_targeted=sum(counts.values()),
        placed=counts.get("PLACED", 0),
        rejected=counts.get("REJECTED", 0),
        failed=counts.get("FAILED", 0),
        skipped=counts.get("SKIPPED", 0),
        pending=pending,
        first_follower_latency_ms=latency_text(first),
        last_follower_latency_ms=latency_text(last) if pending == 0 else "",
        complete=pending == 0,
    )


def follower_message(order: Order, outcome: str) -> orders_pb2.FollowerReplication:
    answered = outcome in DECIDED_ATTEMPTS
    return orders_pb2.FollowerReplication(
        follower_id=order.user_id,
        follower_order_id=order.id,
        outcome=outcome,
        status=order.status,
        reason_code="" if outcome == "PLACED" else order.status_reason_code,
        reason=order.status_reason,
        quantity=order.quantity,
        broker_order_id=order.broker_order_id,
        latency_ms=latency_text(order.replication_latency_ms) if answered else "",
        # ORDER_UPDATES does not carry the gateway's attempt count, so this service cannot know it.
        attempts=0,
    )


async def followers(
    session: AsyncSession,
    master_order_id: int,
    *,
    limit: int,
    after: tuple[int, int] | None,
    outcome: str | None,
) -> list[orders_pb2.FollowerReplication]:
    """Follower orders of a master order by follower id (then order id), after the cursor."""
    query = select(Order, OUTCOME).where(
        Order.master_order_id == master_order_id, Order.is_master_order.is_(False)
    )
    if outcome is not None:
        query = query.where(OUTCOME == outcome)
    if after is not None:
        query = query.where(tuple_(Order.user_id, Order.id) > tuple_(*after))
    rows = await session.execute(query.order_by(Order.user_id, Order.id).limit(limit))
    return [follower_message(order, label) for order, label in rows]
