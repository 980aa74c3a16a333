"""The fault scenarios on one shared stack, in order: each injects its faults during a live fan-out,
then checks the invariant (faults/invariant.py) for the master orders it placed."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from bench.population import STRATEGIES
from faults import report
from faults.invariant import Verdict, tag_prefix
from tests.faults.conftest import FOLLOWERS, FULL, World

pytestmark = [pytest.mark.timeout(900 if FULL else 240), pytest.mark.usefixtures("single_replicas")]

KILLS = 10 if FULL else 2
GATEWAY_KILLS = 3 if FULL else 1
# Recovery after a crash: JetStream's ack_wait (faults.stack.DEFAULT_ACK_WAIT_SECONDS) for a dead
# replica's master orders, then the consumer's retry delays (2, 5, 15, 30, 60 s) for unfinished ones.
SETTLE_SECONDS = 120 if FULL else 60


async def arrived(world: World, master_order_id: int) -> int:
    return int((await world.mock.arrivals(tag_prefix(master_order_id)))["orders"])


async def wait_arrived(world: World, master_order_id: int, at_least: int, timeout: float = 30) -> int:
    """Wait until at least this many of the master order's copies are at the broker (bounded)."""
    deadline = time.monotonic() + timeout
    count = await arrived(world, master_order_id)
    while count < at_least and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        count = await arrived(world, master_order_id)
    return count


async def check(
    world: World, scenario: report.ScenarioReport, masters: dict[int, list[int]], announce: bool = True
) -> Verdict:
    verdict = await world.checker.check(masters, world.cast.accounts, settle_timeout=SETTLE_SECONDS)
    scenario.verdict = verdict
    if not announce:
        return verdict
    print("\n" + scenario.line(), flush=True)
    for note in scenario.notes:
        print("    " + note, flush=True)
    return verdict


async def test_replicator_killed_at_random_points_then_restarted(world: World) -> None:
    scenario = report.scenario(f"kill -9 replicator x{KILLS}, N={FOLLOWERS}")
    followers = world.cast.followers_of["kill-replicator"]
    masters: dict[int, list[int]] = {}
    for round_ in range(KILLS):
        master_order_id = await world.orders.place(world.cast.masters["kill-replicator"])
        masters[master_order_id] = followers
        if round_ % 2 == 0:
            # Mid-stream for sure: once a random share of the copies is at the broker.
            target = world.rng.randint(1, max(1, FOLLOWERS - 1))
            at = await wait_arrived(world, master_order_id, target)
            point = f"{at}/{FOLLOWERS} copies at the broker (aimed at {target})"
        else:
            # Anywhere: before planning, mid-stream or while recording.
            delay = world.rng.uniform(0, 1.5)
            await asyncio.sleep(delay)
            point = f"{delay * 1000:.0f} ms after acceptance, {await arrived(world, master_order_id)}/{FOLLOWERS} at the broker"
        await world.stack.kill("replicator")
        scenario.inject("kill -9 replicator", note=f"kill {round_ + 1}: master order {master_order_id}, {point}")
        await world.stack.restart("replicator")
    verdict = await check(world, scenario, masters)
    assert verdict.ok, verdict.explain()


async def test_broker_gateway_killed_mid_stream_then_restarted(world: World) -> None:
    scenario = report.scenario(f"kill -9 broker_gateway mid-stream x{GATEWAY_KILLS}, N={FOLLOWERS}")
    followers = world.cast.followers_of["kill-gateway"]
    masters: dict[int, list[int]] = {}
    for round_ in range(GATEWAY_KILLS):
        master_order_id = await world.orders.place(world.cast.masters["kill-gateway"])
        masters[master_order_id] = followers
        target = world.rng.randint(1, max(1, FOLLOWERS // 2))
        at = await wait_arrived(world, master_order_id, target)
        await world.stack.kill("broker_gateway")
        scenario.inject(
            "kill -9 broker_gateway",
            note=f"kill {round_ + 1}: master order {master_order_id}, {at}/{FOLLOWERS} copies at the broker",
        )
        await world.stack.restart("broker_gateway")
    verdict = await check(world, scenario, masters)
    assert verdict.ok, verdict.explain()


async def test_orders_crash_between_storing_and_publishing(world: World) -> None:
    """NATS frozen (SIGSTOP) so the outbox cannot publish; PlaceOrder commits; the orders service is
    killed with the row unsent; NATS thaws, orders restarts, and its outbox sends the row."""
    scenario = report.scenario(f"orders crash between store and publish, N={FOLLOWERS}")
    stack = world.stack
    stack.signal("nats", signal.SIGSTOP)
    try:
        master_order_id = await world.orders.place(world.cast.masters["orders-crash"])
        await asyncio.sleep(0.3)
        rows = await world.checker._fetch(
            "SELECT sent_at FROM orders.outbox WHERE message_id = $1", f"order-{master_order_id}"
        )
        await stack.kill("orders")
    finally:
        stack.signal("nats", signal.SIGCONT)
    unsent = len(rows) == 1 and rows[0]["sent_at"] is None
    scenario.inject(
        "kill -9 orders",
        note=f"master order {master_order_id} stored; outbox row {'unsent' if unsent else rows} when killed",
    )
    assert unsent, f"the outbox row should be stored and unsent at the crash: {rows}"
    await stack.restart("orders")
    verdict = await check(world, scenario, {master_order_id: world.cast.followers_of["orders-crash"]})
    outbox = await world.checker._fetch(
        "SELECT count(*) AS n, bool_and(sent_at IS NOT NULL) AS sent FROM orders.outbox WHERE message_id = $1",
        f"order-{master_order_id}",
    )
    assert outbox[0]["n"] == 1 and outbox[0]["sent"], f"outbox after recovery: {dict(outbox[0])}"
    assert verdict.ok, verdict.explain()


@pytest.mark.parametrize(
    "server",
    [
        # The NATS restart waits out the dead connection's ack_wait: full suite only (CI time).
        pytest.param("nats", marks=pytest.mark.skipif(not FULL, reason="full suite only (FAULTS_FULL=1)")),
        "postgres",
    ],
)
async def test_backing_server_restarted_during_fanout(world: World, server: str) -> None:
    scenario = report.scenario(f"restart {server} during a fan-out, N={FOLLOWERS}")
    master_order_id = await world.orders.place(world.cast.masters[server])
    target = world.rng.randint(1, max(1, FOLLOWERS // 2))
    at = await wait_arrived(world, master_order_id, target)
    began = time.monotonic()
    await world.stack.restart(server)
    scenario.inject(
        f"restart {server}",
        note=f"master order {master_order_id}: {at}/{FOLLOWERS} copies at the broker; down {time.monotonic() - began:.1f} s",
    )
    verdict = await check(world, scenario, {master_order_id: world.cast.followers_of[server]})
    assert verdict.ok, verdict.explain()


async def test_broker_faults_5xx_timeouts_drops_and_429_bursts(world: World) -> None:
    """10% 5xx, 5% timeouts (held past the gateway's request timeout), 5% dropped connections on
    every order call; and several master orders at once for the same accounts against a broker
    that allows one place per second per session: bursts of 429."""
    orders_at_once = 3 if FULL else 2
    scenario = report.scenario(f"broker 10% 5xx, 5% timeouts, 5% drops, 429 bursts; {orders_at_once} x N={FOLLOWERS}")
    before = await world.mock.fault_stats()
    await world.mock.configure(
        {
            "faults": {"http_5xx": 0.10, "timeout": 0.05, "drop": 0.05, "timeout_hold_seconds": 8},
            "rate_limits": {"enabled": True, "per_second": {"iifl_v1.place": 1}},
        }
    )
    try:
        master = world.cast.masters["broker-faults"]
        ids = await asyncio.gather(*(world.orders.place(master) for _ in range(orders_at_once)))
        masters = {master_order_id: world.cast.followers_of["broker-faults"] for master_order_id in ids}
        verdict = await check(world, scenario, masters, announce=False)
    finally:
        after = await world.mock.fault_stats()
        await world.mock.configure({"faults": {}, "rate_limits": {"enabled": True}})
    for kind in ("http_5xx", "timeout", "drop"):
        scenario.inject(f"broker {kind}", after["faults"].get(kind, 0) - before["faults"].get(kind, 0))
    scenario.inject("broker 429", after["rate_limited"]["total"] - before["rate_limited"]["total"])
    placed_first = after["faults"].get("placed_before_fault", 0) - before["faults"].get("placed_before_fault", 0)
    scenario.notes.append(f"writes that took effect before their fault: {placed_first}; mock stats after: {after}")
    print("\n" + scenario.line() + "\n    " + scenario.notes[-1], flush=True)
    assert scenario.faults["broker http_5xx"] and scenario.faults["broker 429"], scenario.line()
    assert verdict.ok, verdict.explain()


@pytest.fixture(scope="module")
async def lapsed(world: World) -> dict:
    """Three followers' broker sessions lapse (one per copy strategy); a master order is copied."""
    scenario = report.scenario("broker sessions lapsed (one follower per copy strategy)")
    followers = world.cast.followers_of["lapsed"]
    strategies = {f: str(STRATEGIES[(FOLLOWERS + i) % len(STRATEGIES)]["copy_strategy"]) for i, f in enumerate(followers)}
    for follower in followers[:3]:
        expired = await world.mock.expire_sessions(world.cast.accounts[follower])
        scenario.inject("broker session expired", expired, note=f"follower {follower} ({strategies[follower]}): {expired} session(s) expired")
    master_order_id = await world.orders.place(world.cast.masters["lapsed"])
    verdict = await check(world, scenario, {master_order_id: followers})
    rows = await world.checker._fetch(
        "SELECT follower_id, status, status_reason_code, status_reason FROM replicator.follower_orders"
        " WHERE master_order_id = $1",
        master_order_id,
    )
    for row in rows:
        if row["follower_id"] in followers[:3]:
            print(
                f"    follower {row['follower_id']} ({strategies[row['follower_id']]}): {row['status']}"
                f" {row['status_reason_code']} {row['status_reason']!r}",
                flush=True,
            )
    return {
        "verdict": verdict,
        "rows": {row["follower_id"]: dict(row) for row in rows},
        "lapsed": {f: strategies[f] for f in followers[:3]},
        "healthy": followers[3:],
    }


async def test_lapsed_broker_session_is_reported_not_skipped(world: World, lapsed: dict) -> None:
    assert lapsed["verdict"].ok, lapsed["verdict"].explain()
    rows = lapsed["rows"]
    assert all(rows[f]["status"] == "SUBMITTED" for f in lapsed["healthy"])
    # Each strategy: a PERCENTAGE copy is refused at planning, when its broker funds cannot be read
    # for the lapsed session; the others when the gateway tries to place them.
    for follower, strategy in lapsed["lapsed"].items():
        row = rows[follower]
        assert (row["status"], row["status_reason_code"]) == ("FAILED", "NEEDS_RELOGIN"), (strategy, row)
        assert "log in" in row["status_reason"]
    # The account itself shows it must be linked again.
    accounts = await world.checker._fetch(
        "SELECT user_id, status FROM broker_gateway.linked_accounts WHERE user_id = ANY($1::bigint[])",
        list(lapsed["lapsed"]),
    )
    assert {row["status"] for row in accounts} == {"NEEDS_RELOGIN"}, [dict(r) for r in accounts]


async def test_the_invariant_catches_an_order_placed_twice(world: World) -> None:
    """Last (it leaves a duplicate at the broker): the checker is not vacuous. A copy's tag placed a
    second time at the broker, behind the platform's back, fails the invariant naming the tag."""
    followers = world.cast.followers_of["lapsed"]
    master_order_id = await world.orders.place(world.cast.masters["lapsed"])
    clean = await world.checker.check({master_order_id: followers}, world.cast.accounts, settle_timeout=SETTLE_SECONDS)
    assert clean.ok, clean.explain()
    rows = await world.checker._fetch(
        "SELECT follower_id, tag FROM replicator.follower_orders WHERE master_order_id = $1 AND status = 'SUBMITTED'",
        master_order_id,
    )
    victim = rows[0]
    reply = await world.mock.place_behind_the_platforms_back(world.cast.accounts[victim["follower_id"]], victim["tag"])
    assert reply.get("status") == "Ok", reply
    caught = await world.checker.check({master_order_id: followers}, world.cast.accounts, settle_timeout=5)
    assert not caught.ok
    assert any(p.startswith(f"PLACED TWICE: tag {victim['tag']} is 2 orders") for p in caught.problems), caught.explain()
