"""The replication pipeline end to end: real NATS JetStream, the real broker gateway in process, the
real mock IIFL process and the real database.

Streams are shared with every other test (and, against external servers, earlier runs), so each
test uses its own master, its own durable consumer filtered to that master's subject, and fresh
random user and order ids. The mock's inspection is the ground truth of what was placed.
"""

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from copytrade.broker.v1 import broker_pb2, broker_pb2_grpc
from copytrade.core import db, jetstream
from copytrade.core.tokens import issue_access_token
from copytrade.events.v1 import events_pb2
from services.replicator.directory import UserDirectory
from services.replicator.pipeline import Pipeline
from services.replicator.pipeline.capital import directory_capital
from services.replicator.pipeline.store import tag_for
from services.replicator.subscriptions import SubscriptionRepository
from tests.auth.test_auth_service import register
from tests.mock_iifl.conftest import mock_server  # noqa: F401 - session fixture
from tests.support.broker import fresh_mock, running_gateway


@pytest.fixture(scope="module")
async def gateway(base_settings, mock_server):  # noqa: F811
    async with running_gateway(base_settings, mock_server, order_deadline_seconds=5.0) as process:
        yield process


@pytest.fixture
async def mock(mock_server):  # noqa: F811
    async with fresh_mock(mock_server) as client:
        yield client


@pytest.fixture
async def engine(gateway):
    # As the replicator's pipeline engine: its commits do not wait for the disk (store.py).
    engine = db.create_engine(
        gateway.settings, application_name="test-replicator-pipeline", synchronous_commit=False, by_key_only=True
    )
    yield engine
    await engine.dispose()


async def test_the_pipeline_engine_does_not_wait_for_the_disk_except_to_finish(engine):
    import contextlib

    from services.replicator.pipeline.store import Store

    async with engine.connect() as conn:
        assert (await conn.execute(text("SHOW synchronous_commit"))).scalar_one() == "off"
    # finish() flushes whatever the connection's setting: seen at the end of its transaction.
    seen: list[str] = []

    class Watching:
        def __getattr__(self, name):
            return getattr(engine, name)

        @contextlib.asynccontextmanager
        async def begin(self):
            async with engine.begin() as conn:
                yield conn
                seen.append((await conn.execute(text("SHOW synchronous_commit"))).scalar_one())

    await Store(Watching()).finish(new_id())
    assert seen == ["on"]


async def test_the_replicators_pipeline_pool_finds_follower_orders_by_key_whatever_the_statistics(replicator):
    from services.replicator.pipeline.store import _RECORD

    async with replicator.pipeline_engine.connect() as conn:
        assert (await conn.execute(text("SHOW enable_seqscan"))).scalar_one() == "off"
        assert (await conn.execute(text("SHOW synchronous_commit"))).scalar_one() == "off"
        # Statistics taken while the table was empty: the planner would scan it all for each batch.
        await conn.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        plan = "\n".join(
            row[0]
            for row in await conn.execute(
                text(f"EXPLAIN {_RECORD.text}"),
                {"ids": [1, 2], "statuses": ["SUBMITTED"] * 2, "reasons": [""] * 2, "codes": [""] * 2,
                 "brokers": [""] * 2, "latencies": [1, 1], "attempts": [1, 1]},
            )
        )  # fmt: skip
    assert "Seq Scan on follower_orders" not in plan
    assert "pk_follower_orders" in plan


async def test_follower_orders_leave_room_on_each_page_for_their_one_update(engine):
    # A result's UPDATE stays on the row's page (HOT, no new index entries) only if the page has
    # room for the new version: migration 0005 of the replicator's schema.
    async with engine.connect() as conn:
        options = await conn.scalar(
            text("SELECT reloptions FROM pg_class WHERE oid = 'replicator.follower_orders'::regclass")
        )
    assert "fillfactor=60" in options


@pytest.fixture
async def js(gateway):
    nc = await jetstream.connect(gateway.settings, "test-pipeline")
    context = nc.jetstream()
    await jetstream.ensure_streams(context)
    yield context
    await nc.close()


@pytest.fixture
async def pipelines(gateway, engine):
    """Pipelines for one master: all share one durable consumer, as replicas do."""
    durable = f"replicator-test-{uuid.uuid4().hex[:10]}"
    started: list[Pipeline] = []

    async def start(master_id: int, settings=None, **options) -> Pipeline:
        pipeline = Pipeline(
            settings or gateway.settings,
            engine,
            SubscriptionRepository(db.session_factory(engine)),
            durable=durable,
            subject=jetstream.accepted_subject(master_id),
            ack_wait_seconds=2.0,
            **options,
        )
        await pipeline.start()
        started.append(pipeline)
        return pipeline

    start.durable = durable
    yield start
    for pipeline in started:
        await pipeline.stop()


def new_id() -> int:
    return random.randrange(10**11, 10**12)


def metadata_for(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def link_xts(gateway, user_id: int, code: str) -> int:
    token, _ = issue_access_token(gateway.settings, user_id, "FOLLOWER")
    stub = broker_pb2_grpc.BrokerAccountServiceStub(gateway.channel)
    reply = await stub.LinkAccount(
        broker_pb2.LinkAccountRequest(dialect="XTS", client_code=code, app_key=code, app_secret="xsecret"),
        metadata=metadata_for(token),
    )
    assert reply.account.status == "LINKED"
    return reply.account.id


async def link_v1_without_login(gateway, user_id: int, code: str) -> None:
    token, _ = issue_access_token(gateway.settings, user_id, "FOLLOWER")
    stub = broker_pb2_grpc.BrokerAccountServiceStub(gateway.channel)
    reply = await stub.LinkAccount(
        broker_pb2.LinkAccountRequest(
            dialect="IIFL_CAPITAL_V1", client_code=code, app_key="k", app_secret="s"
        ),
        metadata=metadata_for(token),
    )
    assert reply.account.status == "NEEDS_RELOGIN"


async def subscribe(engine, master_id: int, follower_id: int, strategy: str, **settings) -> None:
    columns = {"ratio": None, "percentage": None, "fixed_quantity": None, "max_quantity": None, **settings}
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO replicator.subscriptions (follower_id, master_id, copy_strategy, ratio, percentage,"
                " fixed_quantity, max_quantity, status)"
                " VALUES (:f, :m, :s, :ratio, :percentage, :fixed_quantity, :max_quantity, 'ACTIVE')"
            ),
            {"f": follower_id, "m": master_id, "s": strategy, **columns},
        )


async def publish_order(
    js,
    order_id: int,
    master_id: int,
    *,
    quantity: int = 2,
    accepted_at: datetime | None = None,
    msg_id: str = "",
) -> None:
    event = events_pb2.OrderAccepted(
        order_id=order_id,
        master_user_id=master_id,
        symbol="RELIANCE",
        exchange="NSE",
        side="BUY",
        order_type="MARKET",
        product="MIS",
        quantity=quantity,
        accepted_at=(accepted_at or datetime.now(UTC)).isoformat(),
    )
    await js.publish(
        jetstream.accepted_subject(master_id),
        event.SerializeToString(),
        headers={"Nats-Msg-Id": msg_id or f"order-{order_id}"},
    )


async def follower_orders(engine, master_order_id: int) -> dict[int, dict]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT * FROM replicator.follower_orders WHERE master_order_id = :id"),
            {"id": master_order_id},
        )
        return {row["follower_id"]: dict(row) for row in rows.mappings()}


async def wait_acked(js, durable: str, timeout: float = 30.0) -> None:
    """Until the consumer has delivered everything and holds nothing unacknowledged."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        info = await js.consumer_info(jetstream.ORDERS_STREAM, durable)
        if info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq > 0:
            return
        assert asyncio.get_running_loop().time() < deadline, f"not acknowledged: {info}"
        await asyncio.sleep(0.05)


async def updates_of(js, follower_id: int) -> list[events_pb2.OrderStatusChanged]:
    subscription = await js.pull_subscribe(jetstream.updates_subject(follower_id), stream="ORDER_UPDATES")
    received = []
    try:
        while True:
            try:
                messages = await subscription.fetch(100, timeout=0.5)
            except TimeoutError:  # nats-py raises its own subclass or the builtin one: nothing left
                break
            for message in messages:
                received.append(events_pb2.OrderStatusChanged.FromString(message.data))
                assert (
                    message.headers["Nats-Msg-Id"]
                    == f"update-{received[-1].order_id}-{received[-1].sequence}"
                )
                await message.ack()
    finally:
        await subscription.unsubscribe()
    return sorted(received, key=lambda update: update.sequence)


async def placed_tags(mock) -> dict[str, int]:
    inspection = await mock.inspect(by_tag="1")
    assert inspection["totals"]["duplicates"] == 0
    counts: dict[str, int] = {}
    for account in inspection["accounts"]:
        for tag, count in account["orders"].get("by_tag", {}).items():
            counts[tag] = counts.get(tag, 0) + count
    return counts


async def test_a_master_order_is_copied_to_every_follower_once(gateway, mock, engine, js, pipelines, unique):
    master, order_id = new_id(), new_id()
    followers = {
        name: new_id() for name in ("ratio1", "half", "tiny", "percent", "costly", "unlinked", "relogin")
    }
    for name in ("ratio1", "half", "tiny", "percent", "costly"):
        await link_xts(gateway, followers[name], unique("P"))
    await link_v1_without_login(gateway, followers["relogin"], unique("Q"))
    await subscribe(engine, master, followers["ratio1"], "FIXED_RATIO", ratio="1")
    await subscribe(engine, master, followers["half"], "FIXED_RATIO", ratio="0.5")
    await subscribe(engine, master, followers["tiny"], "FIXED_RATIO", ratio="0.1")
    await subscribe(engine, master, followers["percent"], "PERCENTAGE", percentage="50")
    await subscribe(engine, master, followers["costly"], "FIXED_QUANTITY", fixed_quantity=100)
    await subscribe(engine, master, followers["unlinked"], "FIXED_RATIO", ratio="1")
    await subscribe(engine, master, followers["relogin"], "FIXED_RATIO", ratio="1")

    await pipelines(master)
    await publish_order(js, order_id, master, quantity=2)
    await wait_acked(js, pipelines.durable)

    rows = await follower_orders(engine, order_id)
    assert set(rows) == set(followers.values())
    by_name = {name: rows[uid] for name, uid in followers.items()}
    expected = {
        "ratio1": ("SUBMITTED", 2, ""),
        "half": ("SUBMITTED", 1, ""),
        "tiny": ("SKIPPED", 0, "SIZED_TO_ZERO"),
        # 50% of the default ₹10,000 at RELIANCE's reference ₹1,412.30: 3 units.
        "percent": ("SUBMITTED", 3, ""),
        "costly": ("SKIPPED", 0, "INSUFFICIENT_FUNDS"),
        "unlinked": ("FAILED", 0, "ACCOUNT_NOT_LINKED"),
        "relogin": ("FAILED", 2, "NEEDS_RELOGIN"),
    }
    for name, (status, quantity, code) in expected.items():
        row = by_name[name]
        assert (row["status"], row["quantity"], row["status_reason_code"]) == (status, quantity, code), name
        assert row["tag"] == tag_for(order_id, followers[name])
        assert (await updates_of(js, followers[name]))[-1].sequence == row["sequence"], name  # announced
        if status == "SUBMITTED":
            assert row["broker_order_id"] and row["latency_ms"] is not None and row["attempts"] == 1
    assert by_name["tiny"]["status_reason"] and by_name["costly"]["status_reason"]

    placed = await placed_tags(mock)
    for name in ("ratio1", "half", "percent"):
        assert placed.get(by_name[name]["tag"]) == 1, name
    for name in ("tiny", "costly", "unlinked", "relogin"):
        assert by_name[name]["tag"] not in placed, name

    # A copy answered within the fan-out is announced once, with its result and its details.
    updates = await updates_of(js, followers["ratio1"])
    assert [u.status for u in updates] == ["SUBMITTED"]
    assert updates[0].details.tag == by_name["ratio1"]["tag"] and updates[0].details.quantity == 2
    assert updates[0].broker_order_id == by_name["ratio1"]["broker_order_id"]
    assert updates[0].master_order_id == order_id and updates[0].user_id == followers["ratio1"]
    skipped = await updates_of(js, followers["tiny"])
    assert [(u.status, u.status_reason_code) for u in skipped] == [("SKIPPED", "SIZED_TO_ZERO")]
    assert skipped[0].details.symbol == "RELIANCE"

    async with engine.connect() as conn:
        fanout = (
            (
                await conn.execute(
                    text("SELECT * FROM replicator.fanouts WHERE master_order_id = :id"), {"id": order_id}
                )
            )
            .mappings()
            .one()
        )
    assert fanout["state"] == "DONE" and fanout["runs"] == 1 and fanout["finished_at"] is not None


async def test_a_pipeline_stopped_mid_fanout_is_finished_by_another_with_nothing_twice(
    gateway, mock, engine, js, pipelines, unique
):
    master, order_id, count = new_id(), new_id(), 24
    followers = [new_id() for _ in range(count)]
    for follower in followers:
        await link_xts(gateway, follower, unique("C"))
        await subscribe(engine, master, follower, "FIXED_RATIO", ratio="1")
    # Broker answers spread over 0.1-0.9 s (inside the gateway's 1 s request timeout), so the stop
    # lands with some results recorded and some not.
    await mock.configure(latency={"kind": "uniform", "min_ms": 100, "max_ms": 900})

    first = await pipelines(master)
    await publish_order(js, order_id, master, quantity=1)

    async def partly_done():
        rows = await follower_orders(engine, order_id)
        statuses = [row["status"] for row in rows.values()]
        return len(rows) == count and 0 < statuses.count("SUBMITTED") < count

    deadline = asyncio.get_running_loop().time() + 20
    while not await partly_done():
        assert asyncio.get_running_loop().time() < deadline, "the fan-out never got under way"
        await asyncio.sleep(0.01)
    await first.stop(grace_seconds=0)  # as a crash: nothing acknowledged, the stream cut mid-way
    stranded = [
        row for row in (await follower_orders(engine, order_id)).values() if row["status"] == "PENDING"
    ]
    assert stranded, "the stop came too late to test a resume"

    await pipelines(master)
    await wait_acked(js, pipelines.durable, timeout=40)

    rows = await follower_orders(engine, order_id)
    assert len(rows) == count
    assert {row["status"] for row in rows.values()} == {"SUBMITTED"}
    assert all(row["sequence"] == 2 for row in rows.values())
    placed = await placed_tags(mock)
    assert all(placed.get(tag_for(order_id, follower)) == 1 for follower in followers)
    async with engine.connect() as conn:
        runs = (
            await conn.execute(
                text("SELECT runs FROM replicator.fanouts WHERE master_order_id = :id"), {"id": order_id}
            )
        ).scalar_one()
    assert runs >= 2  # resumed by the second pipeline
    for follower in followers[:3]:
        # Once each, with details: the stop published nothing half-way, the resume its results.
        updates = await updates_of(js, follower)
        assert [u.status for u in updates] == ["SUBMITTED"]
        assert updates[0].details.tag == tag_for(order_id, follower)


async def test_an_order_delivered_again_after_its_ack_places_nothing_more(
    gateway, mock, engine, js, pipelines, unique
):
    master, order_id, follower = new_id(), new_id(), new_id()
    await link_xts(gateway, follower, unique("D"))
    await subscribe(engine, master, follower, "FIXED_RATIO", ratio="1")
    await pipelines(master)
    await publish_order(js, order_id, master, quantity=1)
    await wait_acked(js, pipelines.durable)
    # The same master order again, past JetStream's deduplication (a replay, an operator's re-publish).
    await publish_order(js, order_id, master, quantity=1, msg_id=f"replay-{order_id}")
    await wait_acked(js, pipelines.durable)

    assert (await placed_tags(mock)).get(tag_for(order_id, follower)) == 1
    rows = await follower_orders(engine, order_id)
    assert [row["status"] for row in rows.values()] == ["SUBMITTED"]
    assert [u.status for u in await updates_of(js, follower)] == ["SUBMITTED"]  # nothing published twice


async def test_a_master_order_first_seen_too_late_is_skipped_not_placed(
    gateway, mock, engine, js, pipelines, unique
):
    master, order_id, follower = new_id(), new_id(), new_id()
    await link_xts(gateway, follower, unique("S"))
    await subscribe(engine, master, follower, "FIXED_RATIO", ratio="1")
    await pipelines(master)
    await publish_order(
        js, order_id, master, quantity=1, accepted_at=datetime.now(UTC) - timedelta(minutes=10)
    )
    await wait_acked(js, pipelines.durable)

    row = (await follower_orders(engine, order_id))[follower]
    assert (row["status"], row["status_reason_code"]) == ("SKIPPED", "STALE_ORDER")
    assert tag_for(order_id, follower) not in await placed_tags(mock)


async def test_percentage_sizes_by_the_balance_in_the_user_directory(
    gateway, mock, engine, js, pipelines, unique, auth_stub, replicator_settings
):
    master, order_id, stranger = new_id(), new_id(), new_id()
    rich = (await register(auth_stub, unique, role="FOLLOWER")).id
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE auth.users SET balance = 100000.00 WHERE id = :id"), {"id": rich})
    for follower in (rich, stranger):
        await link_xts(gateway, follower, unique("B"))
        await subscribe(engine, master, follower, "PERCENTAGE", percentage="50")
    directory = UserDirectory(replicator_settings)
    try:
        await pipelines(master, capital=directory_capital(directory))
        await publish_order(js, order_id, master, quantity=1)
        await wait_acked(js, pipelines.durable)
    finally:
        await directory.close()

    rows = await follower_orders(engine, order_id)
    # 50% of ₹1,00,000 at ₹1,412.30 is 35 units; a user the directory does not know has the default
    # ₹10,000: 3 units.
    assert (rows[rich]["status"], rows[rich]["quantity"]) == ("SUBMITTED", 35)
    assert (rows[stranger]["status"], rows[stranger]["quantity"]) == ("SUBMITTED", 3)


async def test_a_fanout_of_hundreds_records_and_publishes_in_batches(
    gateway, mock, engine, js, pipelines, unique
):
    master, order_id, count = new_id(), new_id(), 300
    followers = [new_id() for _ in range(count)]
    gate = asyncio.Semaphore(20)

    async def follow(follower: int) -> None:
        async with gate:
            await link_xts(gateway, follower, unique("H"))
            await subscribe(engine, master, follower, "FIXED_RATIO", ratio="1")

    await asyncio.gather(*(follow(f) for f in followers))
    await mock.configure(latency={"kind": "uniform", "min_ms": 50, "max_ms": 150})
    await pipelines(master)
    started = asyncio.get_running_loop().time()
    await publish_order(js, order_id, master, quantity=1)
    await wait_acked(js, pipelines.durable)
    elapsed = asyncio.get_running_loop().time() - started

    rows = await follower_orders(engine, order_id)
    assert len(rows) == count and {row["status"] for row in rows.values()} == {"SUBMITTED"}
    assert all(row["sequence"] == 2 for row in rows.values())
    placed = await placed_tags(mock)
    assert all(placed.get(row["tag"]) == 1 for row in rows.values())
    assert elapsed < 10, f"{count} followers took {elapsed:.1f}s"
    print(f"pipeline: {count} followers replicated and acknowledged in {elapsed:.2f}s")


async def test_orders_the_broker_leaves_unknown_are_resolved_by_redelivery(
    gateway, mock, engine, js, pipelines, unique
):
    master, order_id, count = new_id(), new_id(), 20
    followers = [new_id() for _ in range(count)]
    for follower in followers:
        await link_xts(gateway, follower, unique("U"))
        await subscribe(engine, master, follower, "FIXED_RATIO", ratio="1")
    # Every write and every order-book read fails (half of the writes after taking effect), so the
    # gateway can prove nothing either way: past its deadline every order is UNKNOWN, and the master
    # order must not be acknowledged until a redelivery resolves them.
    faults = {"http_5xx": 1.0, "placed_before_fault": 0.5}
    await mock.configure(faults=faults, seed=5)
    await pipelines(master)
    await publish_order(js, order_id, master, quantity=1)
    await asyncio.sleep(gateway.settings.broker_order_deadline_seconds + 2)
    await mock.configure(faults={"http_5xx": 0})
    await wait_acked(js, pipelines.durable, timeout=60)

    rows = await follower_orders(engine, order_id)
    assert len(rows) == count and {row["status"] for row in rows.values()} == {"SUBMITTED"}
    placed = await placed_tags(mock)
    assert all(placed.get(row["tag"]) == 1 for row in rows.values())
    stats = (await mock.inspect())["stats"]["faults"]
    assert stats["http_5xx"] > 0 and stats["placed_before_fault"] > 0, "no fault was injected"
    async with engine.connect() as conn:
        runs = (
            await conn.execute(
                text("SELECT runs FROM replicator.fanouts WHERE master_order_id = :id"), {"id": order_id}
            )
        ).scalar_one()
    # Not acknowledged while unresolved: the master order came back at least once more.
    assert runs >= 2


async def test_a_master_without_followers_is_acknowledged_with_nothing_placed(engine, js, pipelines):
    master, order_id = new_id(), new_id()
    await pipelines(master)
    await publish_order(js, order_id, master)
    await wait_acked(js, pipelines.durable)
    assert await follower_orders(engine, order_id) == {}
    async with engine.connect() as conn:
        state = (
            await conn.execute(
                text("SELECT state FROM replicator.fanouts WHERE master_order_id = :id"), {"id": order_id}
            )
        ).scalar_one()
    assert state == "DONE"


async def test_percentage_sizes_by_the_broker_funds_of_a_linked_account(
    gateway, mock, engine, js, pipelines, unique, auth_stub, replicator_settings
):
    master, order_id = new_id(), new_id()
    follower = (await register(auth_stub, unique, role="FOLLOWER")).id
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE auth.users SET balance = 100000.00 WHERE id = :id"), {"id": follower})
    client = unique("F")
    code = (await mock.control("POST", "v1/authcode", {"client_id": client, "app_secret": "v1secret"}))["auth_code"]
    await mock.control("PATCH", f"accounts/iifl_v1/{client}", {"funds": "20000.00"})
    token, _ = issue_access_token(gateway.settings, follower, "FOLLOWER")
    reply = await broker_pb2_grpc.BrokerAccountServiceStub(gateway.channel).LinkAccount(
        broker_pb2.LinkAccountRequest(
            dialect="IIFL_CAPITAL_V1", client_code=client, app_key=f"key{client}", app_secret="v1secret", auth_code=code
        ),
        metadata=metadata_for(token),
    )
    assert reply.account.status == "LINKED"
    await subscribe(engine, master, follower, "PERCENTAGE", percentage="50")
    directory = UserDirectory(replicator_settings)
    try:
        await pipelines(master, capital=directory_capital(directory))
        await publish_order(js, order_id, master, quantity=1)
        await wait_acked(js, pipelines.durable)
    finally:
        await directory.close()

    rows = await follower_orders(engine, order_id)
    # 50% of the broker's ₹20,000 at ₹1,412.30 is 7 units (the stored ₹1,00,000 would give 35).
    assert (rows[follower]["status"], rows[follower]["quantity"]) == ("SUBMITTED", 7)


def fanout_streams_opened() -> float:
    labels = {
        "grpc_service": "copytrade.broker.v1.BrokerGatewayService",
        "grpc_method": "ExecuteFanout",
        "grpc_code": "OK",
    }
    return REGISTRY.get_sample_value("copytrade_grpc_server_handled_total", labels) or 0.0


async def test_a_large_fan_out_is_sent_as_several_streams_and_every_copy_lands_once(
    gateway, mock, engine, js, pipelines, unique
):
    master, order_id = new_id(), new_id()
    followers = [new_id() for _ in range(7)]
    for follower in followers:
        await link_xts(gateway, follower, unique("S"))
        await subscribe(engine, master, follower, "FIXED_QUANTITY", fixed_quantity=1)
    # Up to 3 streams of at least 2 copies: 7 copies go out as 3 streams (3, 2 and 2).
    settings = gateway.settings.model_copy(update={"fanout_streams": 3, "fanout_stream_min_orders": 2})
    await pipelines(master, settings=settings)
    before = fanout_streams_opened()

    await publish_order(js, order_id, master)
    await wait_acked(js, pipelines.durable)

    assert fanout_streams_opened() - before == 3
    rows = await follower_orders(engine, order_id)
    assert {rows[f]["status"] for f in followers} == {"SUBMITTED"}
    tags = await placed_tags(mock)
    assert all(tags.get(tag_for(order_id, f)) == 1 for f in followers), tags


async def fixed_quantity_followers(gateway, engine, master: int, count: int, code) -> list[int]:
    """`count` followers of `master`, each with a linked XTS account, copying 1 unit."""
    followers = [new_id() for _ in range(count)]
    for follower in followers:
        await link_xts(gateway, follower, code())
        await subscribe(engine, master, follower, "FIXED_QUANTITY", fixed_quantity=1)
    return followers


async def fanout_row(engine, order_id: int) -> dict:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT * FROM replicator.fanouts WHERE master_order_id = :id"), {"id": order_id}
        )
        return dict(found.mappings().one())


async def test_a_large_plan_is_recorded_in_two_parts_and_the_first_goes_out_before_the_rest(
    gateway, mock, engine, js, pipelines, unique
):
    master, order_id = new_id(), new_id()
    followers = await fixed_quantity_followers(gateway, engine, master, 7, lambda: unique("W"))
    # 7 copies to send, more than twice the first part of 2: 2 recorded and sent, then 5. Streams
    # are not split here (at least 100 copies each), so each part is one stream.
    settings = gateway.settings.model_copy(update={"fanout_first_part": 2})
    await pipelines(master, settings=settings)
    before = fanout_streams_opened()

    await publish_order(js, order_id, master)
    await wait_acked(js, pipelines.durable)

    assert fanout_streams_opened() - before == 2
    rows = await follower_orders(engine, order_id)
    assert {rows[f]["status"] for f in followers} == {"SUBMITTED"}
    tags = await placed_tags(mock)
    assert all(tags.get(tag_for(order_id, f)) == 1 for f in followers), tags
    assert (await fanout_row(engine, order_id))["state"] == "DONE"


async def test_a_run_stopped_between_the_parts_of_its_plan_is_finished_by_the_redelivery(
    gateway, mock, engine, js, pipelines, unique
):
    master, order_id = new_id(), new_id()
    followers = await fixed_quantity_followers(gateway, engine, master, 7, lambda: unique("X"))
    settings = gateway.settings.model_copy(update={"fanout_first_part": 2})
    pipeline = await pipelines(master, settings=settings)
    # The first run fails as a crash would, after its first part is recorded and on its way and
    # before the rest is recorded; the redelivery must plan and place the other five.
    store = pipeline.store
    record_rest = store.add
    seen_by_the_failure: list = []

    async def fail_once(master_details, orders):
        if not seen_by_the_failure:
            recorded = await follower_orders(engine, order_id)
            seen_by_the_failure.extend([len(orders), len(recorded), (await fanout_row(engine, order_id))["state"]])
            raise ConnectionError("the database went away")
        return await record_rest(master_details, orders)

    store.add = fail_once
    await publish_order(js, order_id, master)
    await wait_acked(js, pipelines.durable, timeout=40)

    assert seen_by_the_failure == [5, 2, "PLANNING"], "the first run did not stop between the parts"
    rows = await follower_orders(engine, order_id)
    assert set(rows) == set(followers)
    assert {row["status"] for row in rows.values()} == {"SUBMITTED"}
    tags = await placed_tags(mock)
    assert all(tags.get(tag_for(order_id, f)) == 1 for f in followers), tags
    fanout = await fanout_row(engine, order_id)
    assert fanout["state"] == "DONE" and fanout["runs"] >= 2


def on_each_look_up(pipeline, note) -> None:
    """`note(user_ids)` at each look-up of linked accounts the pipeline's plans make."""
    accounts = pipeline._replication.accounts  # the cache the plans read linked accounts through
    look_up = accounts._look_up

    async def noting(user_ids):
        note(user_ids)
        return await look_up(user_ids)

    accounts._look_up = noting


async def test_the_first_part_is_planned_from_its_own_followers_accounts_alone(
    gateway, mock, engine, js, pipelines, unique
):
    master, order_id = new_id(), new_id()
    followers = await fixed_quantity_followers(gateway, engine, master, 7, lambda: unique("Y"))
    settings = gateway.settings.model_copy(update={"fanout_first_part": 2})
    pipeline = await pipelines(master, settings=settings)
    asked: list[list[int]] = []
    on_each_look_up(pipeline, lambda user_ids: asked.append(sorted(user_ids)))
    await publish_order(js, order_id, master)
    await wait_acked(js, pipelines.durable)

    # Two look-ups: the first part's two followers, then the other five once those were sent.
    assert [len(ids) for ids in asked] == [2, 5], asked
    assert sorted(asked[0] + asked[1]) == sorted(followers)
    rows = await follower_orders(engine, order_id)
    assert {rows[f]["status"] for f in followers} == {"SUBMITTED"}


async def test_the_rest_is_planned_once_the_gateway_has_the_first_part(
    gateway, mock, engine, js, pipelines, unique, monkeypatch
):
    # Planning is CPU on the replicator's event loop: begun before the first part's stream left
    # the process, it held that stream back (~4 ms for 985 copies, make bench N = 1,000).
    master, order_id = new_id(), new_id()
    followers = await fixed_quantity_followers(gateway, engine, master, 7, lambda: unique("R"))
    settings = gateway.settings.model_copy(update={"fanout_first_part": 2})
    pipeline = await pipelines(master, settings=settings)
    taken: list[int] = []  # the sizes of the ExecuteFanout requests the gateway has begun on
    resolve = gateway.sessions.resolve

    async def taking(account_ids):
        ids = list(account_ids)
        taken.append(len(ids))
        return await resolve(ids)

    monkeypatch.setattr(gateway.sessions, "resolve", taking)
    seen_at_each_look_up: list[list[int]] = []
    on_each_look_up(pipeline, lambda _: seen_at_each_look_up.append(list(taken)))
    await publish_order(js, order_id, master)
    await wait_acked(js, pipelines.durable)

    # The first part's look-up before anything was sent; the rest's once the gateway had the first.
    assert seen_at_each_look_up == [[], [2]], seen_at_each_look_up
    rows = await follower_orders(engine, order_id)
    assert {rows[f]["status"] for f in followers} == {"SUBMITTED"}


async def test_a_fan_out_started_in_time_is_not_cut_short_by_growing_old_between_its_parts(
    gateway, mock, engine, js, pipelines, unique
):
    from services.replicator.pipeline import replication

    master, order_id = new_id(), new_id()
    followers = await fixed_quantity_followers(gateway, engine, master, 7, lambda: unique("Z"))
    settings = gateway.settings.model_copy(update={"fanout_first_part": 2})
    pipeline = await pipelines(master, settings=settings)
    # The first part is planned just inside MAX_START_DELAY_SECONDS; recording it takes long enough
    # that the rest is planned past it. The rest must be placed too, not skipped as too old.
    record_first = pipeline.store.create

    async def slow_create(*args, **kwargs):
        created = await record_first(*args, **kwargs)
        await asyncio.sleep(1.5)
        return created

    pipeline.store.create = slow_create
    accepted = datetime.now(UTC) - timedelta(seconds=replication.MAX_START_DELAY_SECONDS - 1)
    await publish_order(js, order_id, master, accepted_at=accepted)
    await wait_acked(js, pipelines.durable, timeout=40)

    rows = await follower_orders(engine, order_id)
    assert {f: rows[f]["status"] for f in followers} == dict.fromkeys(followers, "SUBMITTED")
