"""The fuzzing tier's stack: the whole platform on free ports, as tests/e2e starts it.

The fuzzers need users to act as: a MASTER and a FOLLOWER (with the follower following the master,
so orders, reports and subscriptions have rows to return), whose access tokens are minted per request
by `Tokens` (Logout revokes the token it is called with, which would otherwise stop the run).
"""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.flows import PASSWORD
from tests.fuzz.support import Actor, Tally, register_actor
from tests.support.stack import package_stack


@pytest.fixture(scope="package")
async def stack(backing):
    # The fuzzers log in from 127.0.0.1 with thousands of wrong passwords.
    async with package_stack(backing, "fuzz", LOGIN_FAILURES_PER_ADDRESS="1000000", LOG_LEVEL="WARNING") as running:
        yield running


@pytest.fixture(scope="package")
async def actors(stack) -> dict[str, Actor]:
    """A MASTER with one order and a FOLLOWER (broker account linked) who follows them, through Envoy."""
    async with httpx.AsyncClient(base_url=stack.envoy_url, timeout=30) as rest:
        master = await register_actor(rest, stack.settings, "MASTER", PASSWORD)
        follower = await register_actor(rest, stack.settings, "FOLLOWER", PASSWORD)
        response = await rest.post(
            "/api/broker/accounts",
            json={"dialect": "XTS", "client_code": follower.username[:20].upper(), "app_key": follower.username,
                  "app_secret": "s3cret"},
            headers=follower.headers(),
        )
        assert response.status_code == 200, response.text
        response = await rest.post(
            "/api/masters/follow",
            json={"master_id": master.user_id, "copy_strategy": "FIXED_QUANTITY", "fixed_quantity": 1},
            headers=follower.headers(),
        )
        assert response.status_code == 200, response.text
        response = await rest.post(
            "/api/orders/place",
            json={"symbol": "RELIANCE", "side": "BUY", "order_type": "MARKET", "quantity": 1, "price": 2450.5},
            headers=master.headers(),
        )
        assert response.status_code == 200, response.text
    return {"master": master, "follower": follower}


@pytest.fixture(scope="package")
def tallies(request):
    """Every fuzzer's tally; the totals are printed when the package is done (the figures of a run)."""
    collected: list[Tally] = []
    yield collected
    if not collected:
        return
    inputs = sum(t.inputs for t in collected)
    failures = sum(len(t.failures) for t in collected)
    known = sum(t.known for t in collected)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    line = (
        f"FUZZ TOTAL: {inputs} inputs tried by {len(collected)} fuzzers; {failures} invariant failures "
        f"(5xx / INTERNAL / UNKNOWN / DATA_LOSS / UNAVAILABLE); {known} known and excluded (tests/fuzz/support.py)"
    )
    if reporter is not None:
        reporter.write_line("")
        reporter.write_line(line)
