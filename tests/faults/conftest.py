"""The fault suite (issue 6): real stack processes killed, restarted and starved, checked against
the mock broker's ground truth. `pytest tests/faults` runs the CI-sized subset; FAULTS_FULL=1 (or
`make faults`) the full suite. Each scenario prints what it injected and the invariant's result,
and the run ends with the table of all of them."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import aiohttp
import pytest

from faults import report
from faults.invariant import Checker
from faults.population import Cast, Orders, build
from faults.stack import Mock, fault_stack, full_suite
from stack import LocalStack

FULL = full_suite()
# Followers of each scenario's master (the fan-out is 500).
FOLLOWERS = int(os.environ.get("FAULTS_FOLLOWERS") or (500 if FULL else 60))
# The master of every scenario on the shared stack; each one's followers are the same N accounts
# (the lapsed-session master has its own few, since a lapsed account stays lapsed).
MASTERS = ("replicas", "kill-replicator", "kill-gateway", "orders-crash", "nats", "postgres", "broker-faults")
# One stack for every scenario (a stack costs ~20 s to start and populate): started with two
# replicators and two broker gateways for the replica scenarios (test_replicas.py, first), whose
# extra replicas are then stopped, so the other scenarios run against one of each.
REPLICAS = {"REPLICATOR_REPLICAS": "2", "BROKER_GATEWAY_REPLICAS": "2"}
EXTRA_REPLICAS = ("replicator-2", "broker_gateway-2")
# Three whose sessions lapse (one of each copy strategy, which rotate by index) and one that is fine.
LAPSED_FOLLOWERS = 4
BROKER_LATENCY = {"kind": "uniform", "min_ms": 50, "max_ms": 150}


def pytest_terminal_summary(terminalreporter) -> None:
    if report.REPORTS:
        terminalreporter.write_line("")
        for line in report.table().splitlines():
            terminalreporter.write_line(line)


@dataclass
class World:
    stack: LocalStack
    http: aiohttp.ClientSession
    mock: Mock
    checker: Checker
    orders: Orders
    cast: Cast
    rng: random.Random


@pytest.fixture(scope="package")
def rng() -> random.Random:
    seed = int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(1_000_000))
    print(f"\nfault suite: FAULTS_SEED={seed}, {'full' if FULL else 'CI-sized'}, N={FOLLOWERS}", flush=True)
    return random.Random(seed)


async def make_world(stack: LocalStack, http: aiohttp.ClientSession, rng: random.Random, follows: dict, followers: int) -> World:
    mock = Mock(stack, http)
    # Set-up is not under test: no broker latency or rate limits while 500 accounts link.
    await mock.configure({"latency": {"kind": "zero"}, "rate_limits": {"enabled": False}})
    cast = await build(stack, http, followers, follows)
    await mock.configure({"latency": BROKER_LATENCY, "rate_limits": {"enabled": True}})
    return World(stack, http, mock, Checker(stack, mock), Orders(stack), cast, rng)


@pytest.fixture(scope="package")
async def world(rng):
    follows = {name: range(FOLLOWERS) for name in MASTERS}
    follows["lapsed"] = range(FOLLOWERS, FOLLOWERS + LAPSED_FOLLOWERS)
    async with fault_stack(REPLICAS) as stack, aiohttp.ClientSession() as http:
        built = await make_world(stack, http, rng, follows, FOLLOWERS + LAPSED_FOLLOWERS)
        try:
            yield built
        finally:
            await built.orders.close()


@pytest.fixture
async def single_replicas(world):
    """One replicator and one broker gateway: the extra replicas stopped (not a fault; not counted)."""
    for name in EXTRA_REPLICAS:
        if world.stack.process(name).running:
            await world.stack.process(name).stop()
    return world
