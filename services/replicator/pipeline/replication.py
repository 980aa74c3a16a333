"""One master order's replication, from OrderAccepted to every follower order's recorded outcome.

Safe to run again for the same master order at any point (a redelivery after a crash): the first
run's follower orders are found instead of sized again, only those still PENDING are sent, with
`resumed` so that the gateway looks their tags up first, and updates not yet published are.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import grpc
from nats.js import JetStreamContext

from copytrade.broker.v1 import broker_pb2, broker_pb2_grpc
from copytrade.core.logging import get_logger
from copytrade.core.settings import PROJECT_ROOT
from copytrade.events.v1 import events_pb2
from copytrade.instruments import ContractMaster
from services.replicator.pipeline import metrics, sizing, updates
from services.replicator.pipeline.accounts import LinkedAccountCache
from services.replicator.pipeline.capital import DEFAULT_CAPITAL, Capital, default_capital
from services.replicator.pipeline.followers import Follower, LoadFollowers
from services.replicator.pipeline.funds import FundsCache, Refused
from services.replicator.pipeline.store import (
    FAILED,
    PENDING,
    PLANNING,
    REJECTED,
    RUNNING,
    SKIPPED,
    SUBMITTED,
    FollowerOrder,
    MasterDetails,
    NewFollowerOrder,
    Result,
    Store,
)

log = get_logger(__name__)
Outcome = broker_pb2.PlacementOutcome

ACCOUNT_BATCH = 1_000  # BatchGetLinkedAccounts' and BatchGetFunds' limit
# A master order first seen later than this is not copied (SKIPPED, STALE_ORDER): a copy placed
# minutes after the master's trade, at another price, is not the trade the follower signed up for.
# A fan-out already started is always finished, however late.
MAX_START_DELAY_SECONDS = 300
# Whole fan-outs end far sooner (5,000 orders in ~3 s); past this the gateway is taken as stuck, the
# orders without a result stay PENDING, and the redelivery resumes them with their tags looked up.
FANOUT_TIMEOUT_SECONDS = 120.0
# The next part of a fan-out is planned once the gateway has taken the streams of the one before
# (its headers, which it sends first thing), or after this. Planning is CPU on this event loop: begun
# at once, it held a 1,000-copy fan-out's first request in this process for ~4 ms and in the
# network for ~3 more.
PART_SENT_WAIT_SECONDS = 0.02
LOOKUP_TIMEOUT_SECONDS = 10.0
REFERENCE_PRICES = PROJECT_ROOT / "data" / "instruments" / "reference_prices.json"

_EXCHANGES = {
    "NSE": broker_pb2.EXCHANGE_NSE,
    "BSE": broker_pb2.EXCHANGE_BSE,
    "NFO": broker_pb2.EXCHANGE_NFO,
    "BFO": broker_pb2.EXCHANGE_BFO,
}
_SIDES = {"BUY": broker_pb2.SIDE_BUY, "SELL": broker_pb2.SIDE_SELL}
_TYPES = {
    "MARKET": broker_pb2.ORDER_TYPE_MARKET,
    "LIMIT": broker_pb2.ORDER_TYPE_LIMIT,
    "SL": broker_pb2.ORDER_TYPE_SL,
    "SL-M": broker_pb2.ORDER_TYPE_SL_M,
}
_PRODUCTS = {"CNC": broker_pb2.PRODUCT_CNC, "MIS": broker_pb2.PRODUCT_MIS, "NRML": broker_pb2.PRODUCT_NRML}
# The broker's answer as the follower order's status; UNKNOWN (and any outcome this code does not
# know) leaves the order PENDING, to be looked up by tag when the master order is redelivered.
_STATUS = {
    Outcome.PLACEMENT_OUTCOME_PLACED: SUBMITTED,
    Outcome.PLACEMENT_OUTCOME_REJECTED: REJECTED,
    Outcome.PLACEMENT_OUTCOME_FAILED: FAILED,
    Outcome.PLACEMENT_OUTCOME_NEEDS_RELOGIN: FAILED,
    Outcome.PLACEMENT_OUTCOME_ACCOUNT_NOT_LINKED: FAILED,
}
_DEFAULT_CODES = {
    Outcome.PLACEMENT_OUTCOME_REJECTED: "REJECTED",
    Outcome.PLACEMENT_OUTCOME_FAILED: "BROKER_FAILED",
    Outcome.PLACEMENT_OUTCOME_NEEDS_RELOGIN: "NEEDS_RELOGIN",
    Outcome.PLACEMENT_OUTCOME_ACCOUNT_NOT_LINKED: "ACCOUNT_NOT_LINKED",
}


# BatchGetFunds's error codes that say the account cannot trade at all, rather than that the broker
# could not say: a copy for it fails with that reason instead of being sized on a fallback capital.
_CANNOT_TRADE = frozenset({"NEEDS_RELOGIN", "ACCOUNT_NOT_LINKED"})


def load_reference_prices(path: Path = REFERENCE_PRICES) -> dict[tuple[str, str], Decimal]:
    """(v1 segment, instrument id) -> the instrument's last known price."""
    raw = json.loads(path.read_text())
    return {
        (segment, iid): Decimal(price) for segment, prices in raw.items() for iid, price in prices.items()
    }


def parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # events.proto promises UTC; a value without an offset is read as UTC rather than refused.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _discard(task: asyncio.Task[object] | None) -> None:
    """Cancel a task whose result is no longer wanted, and take its exception should it have one."""
    if task is not None:
        task.cancel()
        task.add_done_callback(lambda done: done.cancelled() or done.exception())


def _decimal(value: str) -> Decimal | None:
    return Decimal(value) if value else None


@dataclass(frozen=True)
class Plan:
    """What sizing some of a master order's followers' copies needs: their accounts and capital.

    A large fan-out has two, the first part's and the rest's: the first copies leave before the
    others' accounts and funds are even read (at N = 5,000 that reading took ~40 ms)."""

    accounts: dict[int, int]
    capital: dict[int, Decimal]
    refused: dict[int, Refused]
    order: sizing.MasterOrder
    contract: sizing.Contract
    stale: bool

    def copies(self, followers: list[Follower]) -> list[NewFollowerOrder]:
        """Size each follower's copy, or decide why there is none."""
        planned = []
        for follower in followers:
            account = self.accounts.get(follower.follower_id)
            if self.stale:
                planned.append(
                    NewFollowerOrder(
                        follower.follower_id, account, 0, SKIPPED, "master order is too old to copy", "STALE_ORDER"
                    )
                )
                continue
            if account is None:
                planned.append(
                    NewFollowerOrder(
                        follower.follower_id, None, 0, FAILED, "no linked broker account", "ACCOUNT_NOT_LINKED"
                    )
                )
                continue
            refusal = self.refused.get(follower.follower_id)
            if refusal is not None:
                # Its broker said the account cannot trade now (a lapsed session): the follower
                # must hear that, not a sizing reason computed on a fallback capital.
                planned.append(
                    NewFollowerOrder(follower.follower_id, account, 0, FAILED, refusal.reason, refusal.code)
                )
                continue
            funds = self.capital.get(follower.follower_id, DEFAULT_CAPITAL)
            sized = sizing.size(self.order, follower.strategy, self.contract, funds)
            if sized.skipped:
                planned.append(
                    NewFollowerOrder(follower.follower_id, account, 0, SKIPPED, sized.skip_reason, sized.skip_code)
                )
            else:
                planned.append(NewFollowerOrder(follower.follower_id, account, sized.quantity, PENDING))
        return planned


class Replication:
    def __init__(
        self,
        store: Store,
        followers: LoadFollowers,
        gateway: broker_pb2_grpc.BrokerGatewayServiceStub,
        js: JetStreamContext,
        service_token: Callable[[], str],
        capital: Capital = default_capital,
        instruments: ContractMaster | None = None,
        fanout_streams: int = 1,
        fanout_stream_min: int = 100,
        first_part: int = 15,
    ) -> None:
        self.first_part = first_part
        self.fanout_streams = fanout_streams
        self.fanout_stream_min = fanout_stream_min
        self.store = store
        self.followers = followers
        self.gateway = gateway
        self.js = js
        self.service_token = service_token
        self.capital = capital
        self.instruments = instruments or ContractMaster.load()
        self.prices = load_reference_prices()
        self.funds = FundsCache(self._read_funds)
        self.accounts = LinkedAccountCache(self._look_up_accounts)

    async def run(self, event: events_pb2.OrderAccepted, redelivered: bool) -> bool:
        """Replicate one master order; True when every follower order is final (ack), else False."""
        marks = {"started": time.perf_counter()}
        master = MasterDetails(
            master_order_id=event.order_id,
            master_user_id=event.master_user_id,
            symbol=event.symbol,
            exchange=event.exchange,
            side=event.side,
            order_type=event.order_type,
            product=event.product,
            price=_decimal(event.price),
            trigger_price=_decimal(event.trigger_price),
        )
        # A first delivery is almost never seen before: plan while the store says so, rather than
        # after (a round trip off the first copy's path). A redelivery asks first.
        planning = None if redelivered else asyncio.create_task(self._plan_first_part(event))
        try:
            state = await self.store.fanout_state(event.order_id)
        except BaseException:
            _discard(planning)
            raise
        tail: list[Follower] = []
        if state is None:
            plan, head, tail = await (planning or self._plan_first_part(event))
            first = plan.copies(head)
            marks["planned"] = time.perf_counter()
            orders, fresh = await self.store.create(master, first, complete=not tail)
            if fresh:
                metrics.count_final(orders)  # the copies decided without the broker (skipped, failed)
            else:
                # A racing replica recorded it first: what it recorded may already be at the broker.
                tail = []
                state = await self.store.fanout_state(event.order_id) or RUNNING
        else:
            _discard(planning)
            await self.store.count_run(event.order_id)
            orders = await self.store.load(event.order_id)
        if state == PLANNING:
            # A run stopped between the parts of its plan: the followers without a row were never
            # sent anything, so they are planned now.
            orders = await self._plan_the_rest(event, master, orders)
        resumed = state is not None or redelivered
        marks["recorded"] = time.perf_counter()
        current = {o.id: o for o in orders}

        async def parts() -> AsyncIterator[tuple[list[FollowerOrder], bool]]:
            yield [o for o in orders if o.status == PENDING], resumed
            if tail:
                # Planned, sized and recorded while the first part is on its way to the broker.
                rest = await self._plan(event, tail, stale=plan.stale)
                added, fresh = await self.store.add(master, rest.copies(tail))
                marks["recorded_all"] = time.perf_counter()
                if fresh:
                    metrics.count_final(added)
                    current.update((o.id, o) for o in added)
                    yield [o for o in added if o.status == PENDING], resumed
                else:
                    # Another run planned these followers in the meantime, and sends its own rows.
                    current.update((o.id, o) for o in added if o.id not in current)

        announced: set[int] = set()
        if tail or any(o.status == PENDING for o in orders):
            # Nothing is published before the broker has the orders: each result is published as
            # it is recorded, with the order's details, and a copy whose answer comes within the
            # fan-out is never announced as PENDING at all (watchers see it created with its
            # result). Publishing thousands of PENDING updates first would delay every copy.
            for order in await self._execute(event, parts(), marks=marks):
                current[order.id] = order
                announced.add(order.id)
        orders = list(current.values())
        # The rest: copies decided before the broker (skipped, failed), those still PENDING (UNKNOWN
        # at the broker, or the stream cut), and on a redelivery everything, since a crash may have
        # come between recording and publishing (JetStream drops what it already has, by id).
        await self._publish([o for o in orders if o.id not in announced])
        marks["published"] = time.perf_counter()
        self.funds.revalidate()  # the stale broker funds this plan used, read again now it is placed
        done = not any(o.status == PENDING for o in orders)
        if done:
            await self.store.finish(event.order_id)
        metrics.FANOUT_SECONDS.observe(marks.get("last_recorded", marks["recorded"]) - marks["started"])
        self._log_timeline(event, len(orders), marks, done)
        return done

    def _first_part(self, followers: list[Follower]) -> tuple[list[Follower], list[Follower]]:
        """The followers whose copies are sized, recorded and sent first, and the rest, done while
        those are on their way.

        Sizing and recording a large plan takes tens of milliseconds (500 copies: ~35 ms), all of
        it before the first copy could leave. A small fan-out is done whole: a second transaction
        would cost it more than it saves.
        """
        if len(followers) <= 2 * self.first_part:
            return followers, []
        return followers[: self.first_part], followers[self.first_part :]

    async def _plan_the_rest(
        self, event: events_pb2.OrderAccepted, master: MasterDetails, orders: list[FollowerOrder]
    ) -> list[FollowerOrder]:
        """Plan and record the copies of the followers a stopped run had not recorded yet."""
        have = {o.follower_id for o in orders}
        missing = [f for f in await self.followers(event.master_user_id) if f.follower_id not in have]
        # The first part decided whether the master order was too old to copy; the rest follows it.
        stale = any(o.status_reason_code == "STALE_ORDER" for o in orders) if orders else None
        plan = await self._plan(event, missing, stale=stale)
        added, fresh = await self.store.add(master, plan.copies(missing))
        if not fresh:
            return added  # every row there is, another run's included
        metrics.count_final(added)
        return [*orders, *added]

    @staticmethod
    def _log_timeline(
        event: events_pb2.OrderAccepted, orders: int, marks: dict[str, float], done: bool
    ) -> None:
        """Where one master order's time went, in ms since this replica took it; and how long it
        waited to be taken, from the orders service's acceptance."""
        accepted = parse_time(event.accepted_at)
        started = marks.pop("started")
        log.info(
            "replication_timeline",
            master_order_id=event.order_id,
            orders=orders,
            done=done,
            waited_ms=round((datetime.now(UTC) - accepted).total_seconds() * 1000 - (time.perf_counter() - started) * 1000, 1)
            if accepted
            else None,
            **{f"{name}_ms": round((at - started) * 1000, 1) for name, at in marks.items()},
        )

    async def _plan_first_part(
        self, event: events_pb2.OrderAccepted
    ) -> tuple[Plan, list[Follower], list[Follower]]:
        """The active followers split into the first part and the rest, and the first part's plan."""
        head, tail = self._first_part(await self.followers(event.master_user_id))
        return await self._plan(event, head), head, tail

    async def _plan(
        self, event: events_pb2.OrderAccepted, followers: list[Follower], *, stale: bool | None = None
    ) -> Plan:
        """Everything sizing these followers' copies needs: their accounts and their capital.

        `stale` is the first part's answer when planning the rest: a fan-out already started is
        finished, even if the master order grew too old to copy in between."""
        accounts: dict[int, int] = {}
        capital: dict[int, Decimal] = {}
        refused: dict[int, Refused] = {}
        if followers:
            accounts = await self.accounts.get(f.follower_id for f in followers)
            capital, refused = await self._capital(followers, accounts)
        accepted = parse_time(event.accepted_at)
        return Plan(
            accounts=accounts,
            capital=capital,
            refused=refused,
            order=sizing.MasterOrder(
                side=event.side,
                order_type=event.order_type,
                quantity=event.quantity,
                price=_decimal(event.price),
                trigger_price=_decimal(event.trigger_price),
            ),
            contract=self._contract(event),
            stale=stale
            if stale is not None
            else accepted is not None and (datetime.now(UTC) - accepted).total_seconds() > MAX_START_DELAY_SECONDS,
        )

    def _contract(self, event: events_pb2.OrderAccepted) -> sizing.Contract:
        instrument = self.instruments.resolve(event.exchange, event.symbol)
        if instrument is None:
            # The orders service validated the instrument; if the master file lacks it here, size by
            # units of one and let the gateway answer each order INSTRUMENT_NOT_FOUND on the record.
            return sizing.Contract(lot_size=1, freeze_quantity=None, reference_price=None)
        return sizing.Contract(
            lot_size=instrument.lot_size,
            freeze_quantity=instrument.freeze_quantity,
            reference_price=self.prices.get((instrument.segment, instrument.instrument_id)),
        )

    async def _look_up_accounts(self, follower_ids: list[int]) -> dict[int, int]:
        """follower id -> linked account id, for those who have one, from the broker gateway."""
        replies = await asyncio.gather(
            *(
                self.gateway.BatchGetLinkedAccounts(
                    broker_pb2.BatchGetLinkedAccountsRequest(user_ids=follower_ids[start : start + ACCOUNT_BATCH]),
                    metadata=self._auth(),
                    timeout=LOOKUP_TIMEOUT_SECONDS,
                )
                for start in range(0, len(follower_ids), ACCOUNT_BATCH)
            )
        )
        return {account.user_id: account.id for reply in replies for account in reply.accounts}

    async def _capital(
        self, followers: list[Follower], accounts: dict[int, int]
    ) -> tuple[dict[int, Decimal], dict[int, Refused]]:
        """follower id -> capital, for the PERCENTAGE followers only (no other strategy needs it):
        the funds their broker reports (kept between master orders, see funds.py), else the
        balance the platform holds for them; and the followers whose broker refused the read
        because the account cannot trade (NEEDS_RELOGIN, ACCOUNT_NOT_LINKED)."""
        by_account = {
            accounts[f.follower_id]: f.follower_id
            for f in followers
            if f.strategy.kind == sizing.PERCENTAGE and f.follower_id in accounts
        }
        capital: dict[int, Decimal] = {}
        refused: dict[int, Refused] = {}
        for account, answer in (await self.funds.get(by_account)).items():
            if isinstance(answer, Refused):
                refused[by_account[account]] = answer
            else:
                capital[by_account[account]] = answer
        without = [
            f.follower_id
            for f in followers
            if f.strategy.kind == sizing.PERCENTAGE and f.follower_id not in capital and f.follower_id not in refused
        ]
        if without:
            capital.update(await self.capital(without))
        return capital, refused

    async def _read_funds(self, account_ids: list[int]) -> dict[int, Decimal | Refused | None]:
        """account id -> the funds the broker reports now, Refused when the account cannot trade,
        or None when the broker cannot say."""
        found: dict[int, Decimal | Refused | None] = {}
        for start in range(0, len(account_ids), ACCOUNT_BATCH):
            reply = await self.gateway.BatchGetFunds(
                broker_pb2.BatchGetFundsRequest(account_ids=account_ids[start : start + ACCOUNT_BATCH]),
                metadata=self._auth(),
                timeout=LOOKUP_TIMEOUT_SECONDS,
            )
            for funds in reply.funds:
                if not funds.found:
                    if funds.error_code in _CANNOT_TRADE:
                        found[funds.account_id] = Refused(funds.error_code, funds.reason or funds.error_code)
                    continue
                try:
                    available = Decimal(funds.available)
                except ArithmeticError:
                    continue
                if available.is_finite():
                    found[funds.account_id] = available
        return found

    async def _execute(
        self,
        event: events_pb2.OrderAccepted,
        parts: AsyncIterator[tuple[list[FollowerOrder], bool]],
        marks: dict[str, float],
    ) -> list[FollowerOrder]:
        """Send the pending copies by ExecuteFanout and record the results as they stream back.

        `parts` yields the copies to send, and whether they are resumed (the gateway looks their
        tags up first), as they are recorded: each part goes out as soon as it comes, while the
        results of the earlier ones are already being recorded.

        Reading and recording run apart: the streams are read as fast as the gateway writes them,
        and each database write takes every result that arrived while the previous one ran. Written
        one stream message at a time, a 100-copy fan-out took ~1 s to record results that had
        all landed in 150 ms (the benchmark's profile); batched this way the writes keep up.
        Returns the orders whose results were recorded (and published), as they now stand.
        """
        by_tag: dict[str, FollowerOrder] = {}
        accepted = parse_time(event.accepted_at)
        started = time.perf_counter()
        # Lists of results as they arrive; None when a stream (or the sending of parts) has ended.
        arrived: asyncio.Queue[list[broker_pb2.PlacementResult] | None] = asyncio.Queue()
        readers: list[asyncio.Task[None]] = []

        async def read(request: broker_pb2.ExecuteFanoutRequest, taken: asyncio.Future[None]) -> None:
            try:
                call = self.gateway.ExecuteFanout(request, metadata=self._auth(), timeout=FANOUT_TIMEOUT_SECONDS)
                try:
                    await call.initial_metadata()  # the gateway has the request (or the call ended)
                finally:
                    taken.set_result(None)
                async for message in call:
                    if message.results:
                        marks.setdefault("first_result", time.perf_counter())
                        marks["last_result"] = time.perf_counter()
                        metrics.observe_copies(marks["last_result"] - started, len(message.results))
                        arrived.put_nowait(list(message.results))
                    if message.HasField("summary"):
                        log.info(
                            "fanout_done",
                            master_order_id=event.order_id,
                            orders=message.summary.total,
                            placed=message.summary.placed,
                            unknown=message.summary.unknown,
                            resumed=request.resumed,
                            first_result_ms=message.summary.first_result_latency_ms,
                            elapsed_ms=int((time.perf_counter() - started) * 1000),
                        )
            except grpc.aio.AioRpcError as exc:
                # The orders without a result stay PENDING; the redelivery sends them again, resumed.
                log.warning("fanout_cut_short", master_order_id=event.order_id, code=exc.code().name)
            finally:
                arrived.put_nowait(None)

        async def send() -> None:
            try:
                async for pending, resumed in parts:
                    if not pending:
                        continue
                    by_tag.update((o.tag, o) for o in pending)
                    # A large part goes out as several streams, which the channel spreads over the
                    # gateway replicas (one Python process per core), each taking its share.
                    streams = max(1, min(self.fanout_streams, -(-len(pending) // self.fanout_stream_min)))
                    taken = [asyncio.get_running_loop().create_future() for _ in range(streams)]
                    for stream in range(streams):
                        request = broker_pb2.ExecuteFanoutRequest(
                            fanout_id=event.order_id,
                            orders=[self._new_order(o) for o in pending[stream::streams]],
                            resumed=resumed,
                        )
                        readers.append(asyncio.create_task(read(request, taken[stream])))
                    # Before the next part is planned (parts' next step), this one leaves the process.
                    await asyncio.wait(taken, timeout=PART_SENT_WAIT_SECONDS)
            finally:
                arrived.put_nowait(None)

        sender = asyncio.create_task(send())
        publishing: list[asyncio.Task[list[FollowerOrder]]] = []
        try:
            ended = 0
            # Open until the sender and every stream it started have ended (one None each); the
            # sender's None comes after its last stream started, so the count cannot fall short.
            while ended < 1 + len(readers):
                chunks = [await arrived.get()]
                while not arrived.empty():
                    chunks.append(arrived.get_nowait())
                ended += chunks.count(None)
                results = [
                    self._result(r, by_tag[r.tag], accepted)
                    for chunk in chunks
                    if chunk
                    for r in chunk
                    if r.tag in by_tag
                ]
                if results:
                    recorded = await self.store.record(results)
                    marks["last_recorded"] = time.perf_counter()
                    metrics.count_final(recorded)
                    # Published while the next results are written; all are awaited below.
                    publishing.append(asyncio.create_task(self._publish(recorded)))
            await sender  # raises what recording a later part raised
            await asyncio.gather(*readers)
            return [order for published in await asyncio.gather(*publishing) for order in published]
        except BaseException:
            for task in (sender, *readers, *publishing):
                task.cancel()
            raise

    def _new_order(self, order: FollowerOrder) -> broker_pb2.NewOrder:
        return broker_pb2.NewOrder(
            account_id=order.account_id or 0,
            user_id=order.follower_id,
            order_id=order.id,
            instrument=broker_pb2.Instrument(
                symbol=order.symbol, exchange=_EXCHANGES.get(order.exchange, broker_pb2.EXCHANGE_UNSPECIFIED)
            ),
            side=_SIDES.get(order.side, broker_pb2.SIDE_UNSPECIFIED),
            order_type=_TYPES.get(order.order_type, broker_pb2.ORDER_TYPE_UNSPECIFIED),
            product=_PRODUCTS.get(order.product, broker_pb2.PRODUCT_UNSPECIFIED),
            quantity=order.quantity,
            price=updates.decimal_text(order.price),
            trigger_price=updates.decimal_text(order.trigger_price),
            tag=order.tag,
        )

    @staticmethod
    def _result(
        result: broker_pb2.PlacementResult, order: FollowerOrder, accepted: datetime | None
    ) -> Result:
        status = _STATUS.get(result.outcome, PENDING)
        if status == PENDING:
            code = result.error_code or "BROKER_UNKNOWN"
        elif status == SUBMITTED:
            code = ""
        else:
            code = result.error_code or _DEFAULT_CODES.get(result.outcome, "BROKER_FAILED")
        if result.outcome in (
            Outcome.PLACEMENT_OUTCOME_NEEDS_RELOGIN,
            Outcome.PLACEMENT_OUTCOME_ACCOUNT_NOT_LINKED,
        ):
            # The user's fix is the same whatever the broker's own code was.
            code = _DEFAULT_CODES[result.outcome]
        latency = result.latency_ms
        if accepted is not None:
            latency = max(int((datetime.now(UTC) - accepted).total_seconds() * 1000), 0)
        return Result(
            id=order.id,
            status=status,
            status_reason=result.reason,
            status_reason_code=code,
            broker_order_id=result.broker_order_id,
            latency_ms=latency,
            attempts=result.attempts,
        )

    async def _publish(self, orders: list[FollowerOrder]) -> list[FollowerOrder]:
        """Publish the orders' current states (returned, for chaining)."""
        if orders:
            await updates.publish(self.js, orders)
        return orders

    def _auth(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.service_token()}"),)
