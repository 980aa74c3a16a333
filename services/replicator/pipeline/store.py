"""The replicator's record of every follower order and every fan-out (tables in migration 0002).

A follower order exists at most once per master order and follower, ever (UNIQUE), and carries a tag
derived from that pair alone, so a redelivered or resumed master order finds the same rows and sends
the same tags, which the broker gateway looks up instead of placing twice. Writes are batched: one
multi-row INSERT per part of a fan-out's plan (two at most) and one UPDATE per batch of results
(of every fan-out under way: recording.py).

Commits here do not wait for the WAL to reach disk (synchronous_commit off: per transaction for
the plan's, and for the single statements that record results and runs, on the replicator's
pipeline engine, which has it off for every connection; each of those statements commits on its
own, one round trip instead of four): a crash of PostgreSQL itself may forget the last fraction of
a second of them, never corrupt them, and nothing forgotten here can place an order twice. A
forgotten plan is made again with the same tags; a forgotten result leaves its order PENDING, and
the redelivery looks its tag up at the broker before sending anything. Waiting for the disk cost
each batch a flush on the fan-out's critical path. The fan-out's last write (finish) does wait,
whatever the connection's setting, and WAL is flushed in order, so everything is on disk before
the master order is acknowledged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.replicator.pipeline.recording import GroupRecorder

PENDING, SUBMITTED, REJECTED, FAILED, SKIPPED = "PENDING", "SUBMITTED", "REJECTED", "FAILED", "SKIPPED"
# A fan-out's record: PLANNING while its plan is recorded in parts, RUNNING once all of it is, DONE
# when every copy is final and the master order acknowledged.
PLANNING, RUNNING, DONE = "PLANNING", "RUNNING", "DONE"
FINAL = frozenset({SUBMITTED, REJECTED, FAILED, SKIPPED})  # SUBMITTED: at the broker, its job from there

_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
TAG_LENGTH = 20


def _base36(value: int) -> str:
    out = ""
    while True:
        value, digit = divmod(value, 36)
        out = _DIGITS[digit] + out
        if value == 0:
            return out


def tag_for(master_order_id: int, follower_id: int) -> str:
    """The follower order's broker tag: deterministic, at most 20 letters and digits.

    Readable when it fits: one base36 digit giving the master order id's length, then both ids in
    base36 (`4` `2N9C` `7LPHJ2`). The length prefix makes it unambiguous; it is at most 13 (an int64
    has at most 13 base36 digits), so ids too long to fit use `Z` plus a 19-digit hash of the pair,
    which can never be mistaken for a readable tag.
    """
    master, follower = _base36(master_order_id), _base36(follower_id)
    readable = _base36(len(master)) + master + follower
    if len(readable) <= TAG_LENGTH:
        return readable
    digest = int.from_bytes(hashlib.sha256(f"{master_order_id}:{follower_id}".encode()).digest(), "big")
    return "Z" + _base36(digest)[: TAG_LENGTH - 1]


@dataclass(frozen=True)
class MasterDetails:
    """The master order's fields every copy shares."""

    master_order_id: int
    master_user_id: int
    symbol: str
    exchange: str
    side: str
    order_type: str
    product: str
    price: Decimal | None
    trigger_price: Decimal | None


@dataclass(frozen=True)
class NewFollowerOrder:
    follower_id: int
    account_id: int | None
    quantity: int
    status: str  # PENDING, or SKIPPED/FAILED when decided before the broker
    status_reason: str = ""
    status_reason_code: str = ""


@dataclass(frozen=True)
class FollowerOrder:
    id: int
    master_order_id: int
    follower_id: int
    account_id: int | None
    tag: str
    symbol: str
    exchange: str
    side: str
    order_type: str
    product: str
    quantity: int
    price: Decimal | None
    trigger_price: Decimal | None
    status: str
    status_reason: str
    status_reason_code: str
    broker_order_id: str
    latency_ms: int | None
    attempts: int
    sequence: int


@dataclass(frozen=True)
class Result:
    """One broker outcome to record against a follower order."""

    id: int
    status: str  # PENDING when the broker's answer is UNKNOWN
    status_reason: str
    status_reason_code: str
    broker_order_id: str
    latency_ms: int
    attempts: int


# Every query below selects exactly these columns, in this order: rows become FollowerOrders by
# position (building a mapping per row was 3% of the replicator's CPU in a 5,000-copy fan-out).
_COLUMNS = ", ".join(FollowerOrder.__dataclass_fields__)
_NO_FLUSH_WAIT = text("SET LOCAL synchronous_commit TO OFF")
_FLUSH = text("SET LOCAL synchronous_commit TO ON")

# Built once (a text() per call cost its construction and its cache key every time).
_INSERT = text(
    "INSERT INTO replicator.follower_orders (master_order_id, follower_id, account_id, tag,"
    " symbol, exchange, side, order_type, product, quantity, price, trigger_price, status,"
    " status_reason, status_reason_code)"
    " SELECT :master, f, a, t, :symbol, :exchange, :side, :order_type, :product, q,"
    " :price, :trigger_price, s, r, c"
    " FROM unnest(CAST(:followers AS BIGINT[]), CAST(:accounts AS BIGINT[]),"
    " CAST(:tags AS TEXT[]), CAST(:quantities AS BIGINT[]), CAST(:statuses AS TEXT[]),"
    " CAST(:reasons AS TEXT[]), CAST(:codes AS TEXT[])) AS v(f, a, t, q, s, r, c)"
    " ON CONFLICT (master_order_id, follower_id) DO NOTHING"
    f" RETURNING {_COLUMNS}"
)
_FANOUT_ROW = (
    "INSERT INTO replicator.fanouts (master_order_id, master_user_id, state)"
    " VALUES (:master, :user, :state) ON CONFLICT (master_order_id) DO NOTHING"
)
_CREATE_FANOUT = text(_FANOUT_ROW)
# A fan-out's row and its first part's follower orders in one statement, one round trip.
_CREATE = text(f"WITH fanout AS ({_FANOUT_ROW}) {_INSERT.text}")
_RECORD = text(
    "UPDATE replicator.follower_orders AS o SET status = v.s, status_reason = v.r,"
    " status_reason_code = v.c, broker_order_id = v.b, latency_ms = v.l,"
    " attempts = o.attempts + v.n, sequence = o.sequence + CASE WHEN v.s <> o.status THEN 1 ELSE 0 END,"
    " updated_at = now()"
    " FROM unnest(CAST(:ids AS BIGINT[]), CAST(:statuses AS TEXT[]), CAST(:reasons AS TEXT[]),"
    " CAST(:codes AS TEXT[]), CAST(:brokers AS TEXT[]), CAST(:latencies AS BIGINT[]),"
    " CAST(:attempts AS INT[])) AS v(id, s, r, c, b, l, n)"
    f" WHERE o.id = v.id AND o.status = '{PENDING}'"
    f" RETURNING {', '.join('o.' + c for c in FollowerOrder.__dataclass_fields__)}"
)


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Single statements commit on their own: no BEGIN, SET LOCAL and COMMIT round trips.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._recorder: GroupRecorder[Result, FollowerOrder] = GroupRecorder(self._record_batch)

    async def fanout_state(self, master_order_id: int) -> str | None:
        """PLANNING, RUNNING or DONE; None for a master order no run has recorded yet."""
        async with self.engine.connect() as conn:
            found = await conn.execute(
                text("SELECT state FROM replicator.fanouts WHERE master_order_id = :id"), {"id": master_order_id}
            )
            return found.scalar_one_or_none()

    async def create(
        self, master: MasterDetails, orders: list[NewFollowerOrder], *, complete: bool = True
    ) -> tuple[list[FollowerOrder], bool]:
        """Record the fan-out and (the first part of) its follower orders in one statement, once;
        read back what exists. True with them when this call made them all, False when an earlier
        run had made some. Not `complete`: more of the plan follows (`add`), and until it is
        recorded the fan-out stays PLANNING, which tells a redelivery to plan the rest itself.

        A replica racing on the same master order waits on the first one's uncommitted rows (the
        UNIQUE pairs and fan-out), then inserts nothing (every pair conflicts) and reads them.
        """
        state = RUNNING if complete else PLANNING
        fanout = {"master": master.master_order_id, "user": master.master_user_id, "state": state}
        inserted: list[FollowerOrder] = []
        # One statement, committed on its own: the fan-out's row and the follower orders together
        # or not at all, on the first copy's path (it was BEGIN, SET, two INSERTs and COMMIT).
        async with self._autocommit.connect() as conn:
            if orders:
                inserted = await self._insert(conn, master, orders, statement=_CREATE, extra=fanout)
            else:
                await conn.execute(_CREATE_FANOUT, fanout)
        if len(inserted) == len(orders):
            return sorted(inserted, key=lambda o: o.id), True
        # Another replica got there first (or part way): what exists is the record.
        return await self.load(master.master_order_id), False

    async def add(self, master: MasterDetails, orders: list[NewFollowerOrder]) -> tuple[list[FollowerOrder], bool]:
        """Record the rest of a PLANNING fan-out's plan and mark it RUNNING, in one transaction.
        As `create`: the new rows and True, or every row there is and False when another run had
        recorded some of these followers' orders first (they are that run's to send)."""
        inserted: list[FollowerOrder] = []
        async with self.engine.begin() as conn:
            await conn.execute(_NO_FLUSH_WAIT)
            if orders:
                inserted = await self._insert(conn, master, orders)
            await conn.execute(
                text(
                    f"UPDATE replicator.fanouts SET state = '{RUNNING}'"
                    f" WHERE master_order_id = :id AND state = '{PLANNING}'"
                ),
                {"id": master.master_order_id},
            )
        if len(inserted) == len(orders):
            return sorted(inserted, key=lambda o: o.id), True
        return await self.load(master.master_order_id), False

    @staticmethod
    async def _insert(
        conn: AsyncConnection,
        master: MasterDetails,
        orders: list[NewFollowerOrder],
        *,
        statement: TextClause = _INSERT,
        extra: dict[str, object] | None = None,
    ) -> list[FollowerOrder]:
        """One multi-row INSERT; returns the rows it made (a pair that exists already is skipped)."""
        rows = await conn.execute(
            statement,
            (extra or {})
            | {
                "master": master.master_order_id,
                "symbol": master.symbol,
                "exchange": master.exchange,
                "side": master.side,
                "order_type": master.order_type,
                "product": master.product,
                "price": master.price,
                "trigger_price": master.trigger_price,
                "followers": [o.follower_id for o in orders],
                "accounts": [o.account_id for o in orders],
                "tags": [tag_for(master.master_order_id, o.follower_id) for o in orders],
                "quantities": [o.quantity for o in orders],
                "statuses": [o.status for o in orders],
                "reasons": [o.status_reason[:300] for o in orders],
                "codes": [o.status_reason_code[:40] for o in orders],
            },
        )
        return [FollowerOrder(*row) for row in rows]

    async def load(self, master_order_id: int) -> list[FollowerOrder]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    f"SELECT {_COLUMNS} FROM replicator.follower_orders WHERE master_order_id = :id ORDER BY id"
                ),
                {"id": master_order_id},
            )
            return [FollowerOrder(*row) for row in rows]

    async def record(self, results: list[Result]) -> list[FollowerOrder]:
        """Record results; returns the orders whose status changed.

        Only PENDING orders change: a result arriving again (a resumed fan-out) cannot move an order
        out of a final state, and its sequence only grows with a real change of status. Results
        handed in by several fan-outs at once share one UPDATE (recording.GroupRecorder).
        """
        orders = await self._recorder.record(results)
        return [order for order in orders if order.status != PENDING]

    async def close(self) -> None:
        """Let the results being written finish."""
        await self._recorder.close()

    async def _record_batch(self, results: list[Result]) -> list[FollowerOrder]:
        """One UPDATE for a batch of results; every row it changed."""
        async with self._autocommit.connect() as conn:
            rows = await conn.execute(
                _RECORD,
                {
                    "ids": [r.id for r in results],
                    "statuses": [r.status for r in results],
                    "reasons": [r.status_reason[:300] for r in results],
                    "codes": [r.status_reason_code[:40] for r in results],
                    "brokers": [r.broker_order_id[:64] for r in results],
                    "latencies": [r.latency_ms for r in results],
                    "attempts": [r.attempts for r in results],
                },
            )
            return [FollowerOrder(*row) for row in rows]

    async def finish(self, master_order_id: int) -> None:
        # A flushed commit, whatever the connection's setting: WAL is written in order, so once
        # this is on disk every commit before it is too, and only then is the master order
        # acknowledged.
        async with self.engine.begin() as conn:
            await conn.execute(_FLUSH)
            await conn.execute(
                text(
                    f"UPDATE replicator.fanouts SET state = '{DONE}', finished_at = now()"
                    f" WHERE master_order_id = :id AND state = '{RUNNING}'"
                ),
                {"id": master_order_id},
            )

    async def count_run(self, master_order_id: int) -> None:
        async with self._autocommit.connect() as conn:
            await conn.execute(
                text("UPDATE replicator.fanouts SET runs = runs + 1 WHERE master_order_id = :id"),
                {"id": master_order_id},
            )
