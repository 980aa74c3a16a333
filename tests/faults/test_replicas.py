"""Two replicators and two broker gateways share the work (REPLICATOR_REPLICAS=2,
BROKER_GATEWAY_REPLICAS=2): every master order replicated once, by one replicator, and the work
split between both replicators and both gateways."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from faults import report
from faults.invariant import tag_prefix
from tests.faults.conftest import EXTRA_REPLICAS, FOLLOWERS, FULL, World

pytestmark = pytest.mark.timeout(900 if FULL else 240)

MASTER_ORDERS = 10 if FULL else 6
REPLICATORS = ("replicator", "replicator-2")
GATEWAYS = ("broker_gateway", "broker_gateway-2")


@pytest.fixture
async def replicated(world: World) -> World:
    """The shared stack with both replicas of each running (restarted if a scenario stopped them)."""
    for name in EXTRA_REPLICAS:
        if not world.stack.process(name).running:
            await world.stack.restart(name)
    return world


def sent_to(ports: set[int]) -> Counter[int]:
    """Bytes each process has sent on its open TCP connections to these ports (ss's tcp_info
    bytes_sent), by pid: what the broker gateways have written to the mock broker."""
    lines = subprocess.run(
        ["ss", "-tinpH", "state", "established"], capture_output=True, text=True, check=True, timeout=10
    ).stdout.splitlines()
    sent: Counter[int] = Counter()
    for socket_line, info in itertools.pairwise(lines):
        if socket_line[:1].isspace() or not info[:1].isspace():
            continue
        fields = socket_line.split()
        pid = re.search(r"pid=(\d+)", socket_line)
        sent_bytes = re.search(r"bytes_sent:(\d+)", info)
        if len(fields) >= 4 and pid and sent_bytes and int(fields[3].rpartition(":")[2]) in ports:
            sent[int(pid.group(1))] += int(sent_bytes.group(1))
    return sent


def replicated_by(log: Path, ids: set[int]) -> list[int]:
    """The master orders (of ids) whose replication this replica's log records as done."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if '"replication_timeline"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("master_order_id") in ids and entry.get("done"):
            found.append(entry["master_order_id"])
    return found


async def test_two_replicators_and_two_gateways_share_the_work(replicated: World) -> None:
    world = replicated
    stack = world.stack
    assert set(REPLICATORS + GATEWAYS) <= set(stack.processes), list(stack.processes)
    scenario = report.scenario(f"2 replicators + 2 broker gateways, {MASTER_ORDERS} x N={FOLLOWERS}")
    mock_ports = {stack.settings.mock_iifl_port, stack.settings.mock_iifl_h2_port}
    pids = {name: stack.process(name).pid for name in GATEWAYS}
    sent_before = sent_to(mock_ports)
    master = world.cast.masters["replicas"]
    ids = []
    for _ in range(MASTER_ORDERS):
        ids.append(await world.orders.place(master))
        await asyncio.sleep(0.2)
    verdict = await world.checker.check(
        {i: world.cast.followers_of["replicas"] for i in ids}, world.cast.accounts, settle_timeout=60
    )
    scenario.verdict = verdict
    sent_after = sent_to(mock_ports)
    to_broker = {name: sent_after[pid] - sent_before[pid] for name, pid in pids.items()}
    by_replica = {name: replicated_by(stack.process(name).log_path, set(ids)) for name in REPLICATORS}
    runs = await world.checker._fetch(
        "SELECT master_order_id, runs FROM replicator.fanouts WHERE master_order_id = ANY($1::bigint[])", ids
    )
    scenario.notes.append(
        "master orders per replicator: "
        + ", ".join(f"{name} {len(done)}" for name, done in by_replica.items())
        + "; bytes each gateway sent the broker: "
        + ", ".join(f"{name} {to_broker[name]}" for name in GATEWAYS)
    )
    print("\n" + scenario.line() + "\n    " + scenario.notes[-1], flush=True)
    assert verdict.ok, verdict.explain()
    every = [i for done in by_replica.values() for i in done]
    assert sorted(every) == sorted(ids), f"each master order replicated by exactly one replica: {by_replica}"
    assert all(by_replica.values()), f"the work is split between the replicators: {by_replica}"
    assert all(row["runs"] == 1 for row in runs), [dict(row) for row in runs]
    # Each gateway placed a share of the copies: a placement is an HTTP request of ~0.5 KB to the
    # broker, so a gateway that ran at least one fan-out sent well over 200 bytes per follower. One
    # that only answered look-ups (funds of the PERCENTAGE third of the followers) sent far less.
    assert all(sent >= FOLLOWERS * 200 for sent in to_broker.values()), to_broker


@pytest.mark.skipif(not FULL, reason="full suite only (FAULTS_FULL=1): waits out a dead replica's ack_wait")
async def test_a_replica_of_each_killed_mid_stream_the_other_takes_over(replicated: World) -> None:
    """kill -9 of one replicator and one gateway mid fan-out, not restarted: the survivors finish
    (the channel's round-robin drops the dead gateway; JetStream redelivers to the live replicator)."""
    world = replicated
    stack = world.stack
    scenario = report.scenario(f"2+2 replicas, kill -9 replicator-2 and broker_gateway-2 mid-stream, N={FOLLOWERS}")
    master = world.cast.masters["replicas"]
    ids = [await world.orders.place(master) for _ in range(2)]
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        arrived = [int((await world.mock.arrivals(tag_prefix(i)))["orders"]) for i in ids]
        if any(0 < n for n in arrived):
            break
        await asyncio.sleep(0.02)
    for name in ("replicator-2", "broker_gateway-2"):
        await stack.kill(name)
        scenario.inject(f"kill -9 {name}")
    scenario.notes.append(f"copies at the broker when killed: {arrived} of {FOLLOWERS} each")
    # Left stopped afterwards: the scenarios after this one run against one replica of each.
    verdict = await world.checker.check(
        {i: world.cast.followers_of["replicas"] for i in ids}, world.cast.accounts, settle_timeout=60
    )
    scenario.verdict = verdict
    print("\n" + scenario.line() + "\n    " + scenario.notes[-1], flush=True)
    assert verdict.ok, verdict.explain()
