"""The broker gateway's metrics: calls and errors per dialect and call, pacing waits, breaker states."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from services.broker_gateway.brokers import CircuitBreaker, Dialect, RateLimited, RateLimiter, make_adapter
from services.broker_gateway.brokers.metrics import BREAKER_STATES, MeteredAdapter, pacing_wait
from tests.broker_gateway.test_brokers_replies import Canned, session
from tests.broker_gateway.test_brokers_support import MASTER, spec


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_429_is_a_call_and_a_rate_limited_error_of_its_dialect() -> None:
    adapter = MeteredAdapter(make_adapter(Dialect.XTS, Canned(429, {"type": "error"}), MASTER))
    calls = sample("copytrade_broker_calls_total", dialect="xts", call="place")
    errors = sample("copytrade_broker_call_errors_total", dialect="xts", call="place", error="rate_limited")
    timed = sample("copytrade_broker_call_seconds_count", dialect="xts", call="place")
    with pytest.raises(RateLimited):
        await adapter.place(session(Dialect.XTS), spec(Dialect.XTS, "M1"))
    assert sample("copytrade_broker_calls_total", dialect="xts", call="place") == calls + 1
    assert (
        sample("copytrade_broker_call_errors_total", dialect="xts", call="place", error="rate_limited")
        == errors + 1
    )
    assert sample("copytrade_broker_call_seconds_count", dialect="xts", call="place") == timed + 1


async def test_an_answered_read_is_counted_without_an_error() -> None:
    adapter = MeteredAdapter(
        make_adapter(Dialect.IIFL_CAPITAL_V1, Canned(200, {"status": "Ok", "result": []}), MASTER)
    )
    calls = sample("copytrade_broker_calls_total", dialect="iifl_v1", call="order_book")
    before = sum(
        sample("copytrade_broker_call_errors_total", dialect="iifl_v1", call="order_book", error=kind)
        for kind in ("unavailable", "outcome_unknown", "broker_error", "other")
    )
    assert await adapter.find_by_tag(session(Dialect.IIFL_CAPITAL_V1), "X") is None
    assert sample("copytrade_broker_calls_total", dialect="iifl_v1", call="order_book") == calls + 1
    after = sum(
        sample("copytrade_broker_call_errors_total", dialect="iifl_v1", call="order_book", error=kind)
        for kind in ("unavailable", "outcome_unknown", "broker_error", "other")
    )
    assert after == before


async def test_only_a_call_that_waited_for_pacing_is_observed() -> None:
    limiter = RateLimiter(1000, on_wait=pacing_wait(Dialect.XTS, "reads"))
    waits = sample("copytrade_broker_rate_limit_wait_seconds_count", dialect="xts", bucket="reads")
    assert await limiter.acquire() == 0
    assert sample("copytrade_broker_rate_limit_wait_seconds_count", dialect="xts", bucket="reads") == waits
    limiter.pause(0.05)  # as after a 429
    assert await limiter.acquire() > 0
    assert sample("copytrade_broker_rate_limit_wait_seconds_count", dialect="xts", bucket="reads") == waits + 1


def test_breaker_states_are_counted_per_dialect_when_scraped() -> None:
    class Accounts:
        def __init__(self) -> None:
            tripped = CircuitBreaker(failure_threshold=1, cool_down=60)
            tripped.record_failure()
            self.pairs = [(Dialect.XTS, CircuitBreaker()), (Dialect.XTS, tripped)]

        def breakers(self):
            return iter(self.pairs)

    def states() -> dict[tuple[str, str], float]:
        return {
            (dialect, state): sample("copytrade_broker_circuit_breakers", dialect=dialect, state=state)
            for dialect in ("xts", "iifl_v1")
            for state in ("closed", "open", "half_open")
        }

    before = states()
    accounts = Accounts()
    BREAKER_STATES.watch(accounts)
    grown = {key: count - before[key] for key, count in states().items() if count != before[key]}
    assert grown == {("xts", "closed"): 1, ("xts", "open"): 1}
    del accounts  # no longer watched once it is gone
    assert states() == before
