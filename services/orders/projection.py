"""The read model's feed: OrderStatusChanged from ORDER_UPDATES, upserted into `orders.orders`.

A follower order arrives with its details on its first update and becomes a row here (linked to its
master order, so GetOrder shows a master order with its copies and ListMyOrders shows a follower
theirs); later updates change its status. A master order's updates (master_order_id 0) change the
row PlaceOrder stored. Replicas share one durable pull consumer (`orders-projection`), so each
update is applied by one of them; redelivery and replicas mean updates may come late, twice or out
of order, so each row keeps the last applied `sequence` and an update that is not newer is dropped.

Updates are applied a fetched batch at a time: one multi-row upsert for the follower orders that
arrive with their details, one multi-row UPDATE for the rest, in one transaction. A 5,000-follower
fan-out is ~5,000 updates; one statement per update cost ~5 ms of this service's CPU each, the
batch costs a few ms per hundred. A batch the database refuses is applied again one update at a
time, so that one bad update cannot hold back the others.

Follower orders keep the replicator's id in `source_order_id`: the replicator numbers them itself,
and those numbers would collide with this service's own order ids.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, cast

import structlog
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from copytrade.core import background
from copytrade.core.jetstream import ORDER_UPDATES_STREAM
from copytrade.events.v1 import events_pb2
from services.orders.models import Order

log = structlog.get_logger("copytrade.orders.projection")

DURABLE = "orders-projection"
BATCH = 512
# nats-py's fetch(n) returns once n updates came or this passed since the first did: the longest an
# update waits to be batched with others. Idle, it costs one pull request per interval. Kept short:
# WatchOrders waits for a new copy's row here before it tells the follower (for the copy's id).
BATCH_WAIT_SECONDS = 0.05
# An update that came before the one carrying its order's details waits for it, RETRY_SECONDS at a
# time, for at most MAX_WAITS deliveries (10 minutes): one whose details never come (its order lost
# with a database restored from an older backup, a stray publish) must not cycle forever, holding
# the consumer's unacknowledged count up for good.
RETRY_SECONDS = 1.0
MAX_WAITS = 600


class NotYetKnown(Exception):
    """An update for a follower order whose first (detailed) update has not been applied yet."""


async def _wait_for_details(message: Msg, change: events_pb2.OrderStatusChanged) -> None:
    """Have JetStream deliver the update again later, or drop it once it has waited MAX_WAITS times."""
    if message.metadata.num_delivered >= MAX_WAITS:
        log.error(
            "order update dropped: its order's details never came",
            order_id=change.order_id,
            master_order_id=change.master_order_id,
            sequence=change.sequence,
            deliveries=message.metadata.num_delivered,
        )
        await message.term()
    else:
        await message.nak(delay=RETRY_SECONDS)


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text) if text else None
    except InvalidOperation:
        return None
    return value if value is not None and value.is_finite() else None


def _moment(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _state(change: events_pb2.OrderStatusChanged) -> dict[str, object]:
    """The columns every update sets."""
    return {
        "status": change.status,
        "status_reason": change.status_reason[:500],
        "status_reason_code": change.status_reason_code[:40],
        "broker_order_id": change.broker_order_id[:40],
        "filled_quantity": change.filled_quantity,
        "average_price": _decimal(change.average_price),
        "sequence": change.sequence,
        "updated_at": _moment(change.changed_at) or func.now(),
    }


async def apply(session: AsyncSession, change: events_pb2.OrderStatusChanged) -> bool:
    """Apply one update; False when it was stale. Raises NotYetKnown when it must wait."""
    state = _state(change)
    latency = Decimal(change.replication_latency_ms) if change.replication_latency_ms else None
    if change.master_order_id == 0:
        # An UPDATE's result is a CursorResult (it has rowcount); SQLAlchemy types execute() as Result.
        updated = cast(
            CursorResult[Any],
            await session.execute(
                update(Order)
                .where(
                    Order.id == change.order_id, Order.is_master_order.is_(True), Order.sequence < change.sequence
                )
                .values(**state)
            ),
        )
        return updated.rowcount > 0
    if change.HasField("details"):
        details = change.details
        master_user = select(Order.user_id).where(Order.id == change.master_order_id).scalar_subquery()
        statement = insert(Order).values(
            source_order_id=change.order_id,
            user_id=change.user_id,
            is_master_order=False,
            master_order_id=change.master_order_id,
            master_user_id=master_user,
            symbol=details.symbol,
            exchange=details.exchange,
            side=details.side,
            order_type=details.order_type,
            product=details.product,
            validity="DAY",
            quantity=details.quantity,
            price=_decimal(details.price),
            trigger_price=_decimal(details.trigger_price),
            order_tag=details.tag[:20],
            replication_latency_ms=latency,
            **state,
        )
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=[Order.source_order_id],
            index_where=Order.source_order_id.is_not(None),
            set_={
                **{name: excluded[name] for name in state},
                "replication_latency_ms": func.coalesce(
                    excluded.replication_latency_ms, Order.replication_latency_ms
                ),
            },
            where=Order.sequence < excluded.sequence,
        )
        # An INSERT's result is a CursorResult (it has rowcount); SQLAlchemy types execute() as Result.
        inserted = cast(CursorResult[Any], await session.execute(statement))
        return inserted.rowcount > 0
    values = dict(state)
    if latency is not None:
        values["replication_latency_ms"] = latency
    result = await session.execute(
        update(Order)
        .where(Order.source_order_id == change.order_id, Order.sequence < change.sequence)
        .values(**values)
        .returning(Order.id)
    )
    if result.first() is not None:
        return True
    known = await session.scalar(select(Order.id).where(Order.source_order_id == change.order_id))
    if known is None:
        raise NotYetKnown(change.order_id)
    return False


_COPY_COLUMNS = (
    "source_order_id, user_id, master_order_id, symbol, exchange, side, order_type, product, quantity,"
    " price, trigger_price, order_tag, replication_latency_ms, status, status_reason, status_reason_code,"
    " broker_order_id, filled_quantity, average_price, sequence, updated_at"
)
_UPSERT_COPIES = text(
    "INSERT INTO orders.orders (is_master_order, validity, master_user_id, " + _COPY_COLUMNS + ")"
    " SELECT false, 'DAY', (SELECT m.user_id FROM orders.orders AS m WHERE m.id = v.master_order_id), "
    + _COPY_COLUMNS.replace("updated_at", "COALESCE(updated_at, now())")
    + " FROM unnest(CAST(:source_order_id AS BIGINT[]), CAST(:user_id AS BIGINT[]),"
    " CAST(:master_order_id AS BIGINT[]), CAST(:symbol AS TEXT[]), CAST(:exchange AS TEXT[]),"
    " CAST(:side AS TEXT[]), CAST(:order_type AS TEXT[]), CAST(:product AS TEXT[]),"
    " CAST(:quantity AS BIGINT[]), CAST(:price AS NUMERIC[]), CAST(:trigger_price AS NUMERIC[]),"
    " CAST(:order_tag AS TEXT[]), CAST(:replication_latency_ms AS NUMERIC[]), CAST(:status AS TEXT[]),"
    " CAST(:status_reason AS TEXT[]), CAST(:status_reason_code AS TEXT[]), CAST(:broker_order_id AS TEXT[]),"
    " CAST(:filled_quantity AS BIGINT[]), CAST(:average_price AS NUMERIC[]), CAST(:sequence AS BIGINT[]),"
    " CAST(:updated_at AS TIMESTAMPTZ[])) AS v(" + _COPY_COLUMNS + ")"
    " ON CONFLICT (source_order_id) WHERE source_order_id IS NOT NULL DO UPDATE SET"
    " status = EXCLUDED.status, status_reason = EXCLUDED.status_reason,"
    " status_reason_code = EXCLUDED.status_reason_code, broker_order_id = EXCLUDED.broker_order_id,"
    " filled_quantity = EXCLUDED.filled_quantity, average_price = EXCLUDED.average_price,"
    " sequence = EXCLUDED.sequence, updated_at = EXCLUDED.updated_at,"
    " replication_latency_ms = COALESCE(EXCLUDED.replication_latency_ms, orders.replication_latency_ms)"
    " WHERE orders.sequence < EXCLUDED.sequence"
)
_STATE_COLUMNS = (
    "source_order_id, status, status_reason, status_reason_code, broker_order_id, filled_quantity,"
    " average_price, sequence, updated_at, replication_latency_ms"
)
_UPDATE_COPIES = text(
    "UPDATE orders.orders AS o SET status = v.status, status_reason = v.status_reason,"
    " status_reason_code = v.status_reason_code, broker_order_id = v.broker_order_id,"
    " filled_quantity = v.filled_quantity, average_price = v.average_price, sequence = v.sequence,"
    " updated_at = COALESCE(v.updated_at, now()),"
    " replication_latency_ms = COALESCE(v.replication_latency_ms, o.replication_latency_ms)"
    " FROM unnest(CAST(:source_order_id AS BIGINT[]), CAST(:status AS TEXT[]), CAST(:status_reason AS TEXT[]),"
    " CAST(:status_reason_code AS TEXT[]), CAST(:broker_order_id AS TEXT[]), CAST(:filled_quantity AS BIGINT[]),"
    " CAST(:average_price AS NUMERIC[]), CAST(:sequence AS BIGINT[]), CAST(:updated_at AS TIMESTAMPTZ[]),"
    " CAST(:replication_latency_ms AS NUMERIC[])) AS v(" + _STATE_COLUMNS + ")"
    " WHERE o.source_order_id = v.source_order_id AND o.sequence < v.sequence"
)
_KNOWN_COPIES = text(
    "SELECT source_order_id FROM orders.orders WHERE source_order_id = ANY(CAST(:ids AS BIGINT[]))"
)


def _columns(rows: list[dict[str, object]], names: str) -> dict[str, list[object]]:
    return {name.strip(): [row[name.strip()] for row in rows] for name in names.split(",")}


def _copy_state(change: events_pb2.OrderStatusChanged) -> dict[str, object]:
    return {
        "source_order_id": change.order_id,
        "status": change.status,
        "status_reason": change.status_reason[:500],
        "status_reason_code": change.status_reason_code[:40],
        "broker_order_id": change.broker_order_id[:40],
        "filled_quantity": change.filled_quantity,
        "average_price": _decimal(change.average_price),
        "sequence": change.sequence,
        "updated_at": _moment(change.changed_at),
        "replication_latency_ms": Decimal(change.replication_latency_ms) if change.replication_latency_ms else None,
    }


async def apply_copies(session: AsyncSession, changes: list[events_pb2.OrderStatusChanged]) -> set[int]:
    """Apply a batch of follower-order updates in two statements; returns the ids of the follower
    orders whose details have not arrived yet (their updates must wait).

    Within the batch only each order's newest update counts, with the details of whichever of its
    updates carried them: the result, not the stale PENDING before it, is what gets written.
    """
    newest: dict[int, events_pb2.OrderStatusChanged] = {}
    details: dict[int, events_pb2.FollowerOrderDetails] = {}
    for change in changes:
        current = newest.get(change.order_id)
        if current is None or change.sequence > current.sequence:
            newest[change.order_id] = change
        if change.HasField("details"):
            details[change.order_id] = change.details
    inserts, updates = [], []
    for order_id, change in newest.items():
        row = _copy_state(change)
        found = details.get(order_id)
        if found is None:
            updates.append(row)
            continue
        inserts.append(
            row
            | {
                "user_id": change.user_id,
                "master_order_id": change.master_order_id,
                "symbol": found.symbol,
                "exchange": found.exchange,
                "side": found.side,
                "order_type": found.order_type,
                "product": found.product,
                "quantity": found.quantity,
                "price": _decimal(found.price),
                "trigger_price": _decimal(found.trigger_price),
                "order_tag": found.tag[:20],
            }
        )
    if inserts:
        await session.execute(_UPSERT_COPIES, _columns(inserts, _COPY_COLUMNS))
    if not updates:
        return set()
    await session.execute(_UPDATE_COPIES, _columns(updates, _STATE_COLUMNS))
    ids = [order_id for order_id in newest if order_id not in details]  # the rows of `updates`
    known = set((await session.scalars(_KNOWN_COPIES, {"ids": ids})).all())
    return {order_id for order_id in ids if order_id not in known}


class UpdatesProjection:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], js: JetStreamContext) -> None:
        self._sessions = sessions
        self._js = js
        self._task: asyncio.Task[None] | None = None
        self._subscription: JetStreamContext.PullSubscription | None = None

    async def start(self) -> None:
        self._subscription = subscription = await self._js.pull_subscribe(
            "orders.updates.*",
            durable=DURABLE,
            stream=ORDER_UPDATES_STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL),
        )
        self._task = asyncio.create_task(self._run(subscription), name="orders-projection")

    async def stop(self) -> None:
        await background.stop(self._task)
        self._task = None
        if self._subscription is not None:
            # A pull cancelled mid-fetch leaves the subscription waiting: without this, the
            # connection's drain would wait its full timeout (30 s) for it at every shutdown.
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None

    async def _run(self, subscription: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                messages = await subscription.fetch(BATCH, timeout=BATCH_WAIT_SECONDS)
            except TimeoutError:  # nats-py raises its own subclass or the builtin one: nothing came
                continue
            except Exception:  # NATS away: the consumer resumes where it was
                log.warning("fetching order updates failed; retrying", exc_info=True)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            await self._handle_batch(messages)

    async def _handle_batch(self, messages: list[Msg]) -> None:
        """Apply the follower orders' updates together; anything unusual goes one at a time."""
        copies: list[tuple[Msg, events_pb2.OrderStatusChanged]] = []
        one_by_one: list[Msg] = []
        for message in messages:
            try:
                change = events_pb2.OrderStatusChanged.FromString(message.data)
            except DecodeError:
                one_by_one.append(message)
                continue
            if change.master_order_id:
                copies.append((message, change))
            else:
                one_by_one.append(message)  # a master order's own status: rare, and one row
        if copies:
            try:
                async with self._sessions() as session, session.begin():
                    waiting = await apply_copies(session, [change for _, change in copies])
            except (IntegrityError, DataError):
                # One of them can never be stored: find it, and apply the others.
                one_by_one.extend(message for message, _ in copies)
            except Exception:  # PostgreSQL away: JetStream delivers them again
                log.warning("applying order updates failed; will retry", count=len(copies), exc_info=True)
                await asyncio.gather(*(message.nak(delay=RETRY_SECONDS) for message, _ in copies))
            else:
                await asyncio.gather(
                    *(
                        _wait_for_details(message, change) if change.order_id in waiting else message.ack()
                        for message, change in copies
                    )
                )
        for message in one_by_one:
            await self._handle(message)

    async def _handle(self, message: Msg) -> None:
        try:
            change = events_pb2.OrderStatusChanged.FromString(message.data)
        except DecodeError:
            log.error("dropping an undecodable order update", subject=message.subject)
            await message.term()
            return
        try:
            async with self._sessions() as session, session.begin():
                await apply(session, change)
        except NotYetKnown:
            await _wait_for_details(message, change)
            return
        except (IntegrityError, DataError):
            # The update itself can never be stored: retrying would only fill the log
            # forever. Say so loudly and let it go (JetStream keeps it in the stream for a replay).
            log.exception("order update refused by the database; dropped", order_id=change.order_id)
            await message.term()
            return
        except Exception:  # PostgreSQL away: JetStream delivers it again
            log.warning(
                "applying an order update failed; will retry", order_id=change.order_id, exc_info=True
            )
            await message.nak(delay=RETRY_SECONDS)
            return
        await message.ack()
