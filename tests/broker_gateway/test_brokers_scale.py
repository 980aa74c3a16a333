"""A fan-out's worth of orders at the mock's default latency and rate limits, through the pooled
client the gateway builds from its settings; and the bare-client benchmark helper."""

from __future__ import annotations

import asyncio
import time

from services.broker_gateway.brokers import (
    AccountClient,
    Dialect,
    HttpClients,
    PlacementOutcome,
    make_adapter,
)
from services.broker_gateway.brokers.bench import CLIENTS, fire, open_sessions
from tests.broker_gateway.test_brokers_support import MASTER, settings_for, spec

pytest_plugins = ("tests.broker_gateway.test_brokers_support",)

ACCOUNTS = 500


async def test_500_orders_to_500_accounts_draw_zero_429s(brokers, mock) -> None:
    # The mock as shipped: 50-150 ms per request, IIFL's per-session limits on.
    await mock.control("POST", "reset", {"config": {"seed": 11}})
    settings = settings_for(mock.server)
    http = HttpClients(settings)
    try:
        accounts = await asyncio.gather(*(brokers.account(Dialect.IIFL_CAPITAL_V1) for _ in range(ACCOUNTS)))
        sessions = await asyncio.gather(*(brokers.login(account) for account in accounts))
        adapter = make_adapter(Dialect.IIFL_CAPITAL_V1, http.for_dialect("IIFL_CAPITAL_V1"), MASTER)
        clients = [AccountClient.from_settings(adapter, session, settings) for session in sessions]
        await http.for_dialect("IIFL_CAPITAL_V1").warm(ACCOUNTS)
        started = time.monotonic()
        results = await asyncio.gather(
            *(client.place(spec(Dialect.IIFL_CAPITAL_V1, f"FAN{i}")) for i, client in enumerate(clients))
        )
        elapsed = time.monotonic() - started
    finally:
        await http.close()
    assert [r.outcome for r in results] == [PlacementOutcome.PLACED] * ACCOUNTS
    assert all(r.attempts == 1 and not r.found_existing for r in results)
    assert min(r.latency_ms for r in results) >= 50  # the mock's latency was on
    report = await mock.inspect(dialect="iifl_v1")
    assert report["stats"]["rate_limited"]["total"] == 0
    assert report["stats"]["requests"]["iifl_v1.place"] == ACCOUNTS
    assert report["totals"]["orders"] == ACCOUNTS and report["totals"]["duplicates"] == 0
    assert all(account["orders"]["count"] == 1 for account in report["accounts"])
    # All in flight together: about one broker round trip, not 500 of them.
    assert elapsed < 3.0, elapsed


async def test_bench_helper_measures_each_bare_client(mock) -> None:
    await mock.control("POST", "reset", {"config": {"seed": 3}})
    for number, client in enumerate(CLIENTS):
        tokens = await open_sessions(mock.server.url, 40, prefix=f"BENCH{number}C")
        result = await fire(client, tokens, mock_url=mock.server.url, mock_h2_url=mock.server.h2_url,
                            mock_pid=mock.server.pid, run=f"B{number}")  # fmt: skip
        assert (result.client, result.orders, result.accepted, result.errors) == (client, 40, 40, 0)
        assert (
            0 < result.p50_ms <= result.p99_ms
            and result.cpu_seconds > 0
            and result.mock_cpu_seconds is not None
        )
