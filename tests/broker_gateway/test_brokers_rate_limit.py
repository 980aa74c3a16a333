"""Client-side pacing and the circuit breaker, on their own (the broker-facing checks, zero 429s from
the mock, are in test_brokers_faults.py)."""

import asyncio
import random

import pytest

from services.broker_gateway.brokers.circuit import BreakerState, CircuitBreaker
from services.broker_gateway.brokers.rate_limit import RateLimiter


def _max_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_slots_never_exceed_the_rate_in_any_one_second_window():
    limiter = RateLimiter(10, slack=0.0)
    rng = random.Random(7)
    now, slots = 0.0, []
    for _ in range(500):
        now += rng.choice([0.0, 0.0, 0.01, 0.3, 1.5])
        slots.append(limiter.reserve(now))
    assert _max_in_any_window(slots, 1.0) == 10
    # Handed out in call order: the first caller waiting is the first served.
    assert slots == sorted(slots)


def test_a_burst_goes_at_once_then_one_window_later():
    limiter = RateLimiter(10, slack=0.05)
    slots = [limiter.reserve(100.0) for _ in range(25)]
    assert slots[:10] == [100.0] * 10
    assert slots[10:20] == [pytest.approx(101.05)] * 10
    assert slots[20:] == [pytest.approx(102.10)] * 5


def test_fractional_rate_is_kept_on_average():
    limiter = RateLimiter(2.5, slack=0.0)
    slots = [limiter.reserve(0.0) for _ in range(11)]
    # 2 calls per 0.8 s: the 11th call waits 5 windows.
    assert slots[-1] == pytest.approx(4.0)


async def test_acquire_waits_for_the_slot_and_pause_holds_new_calls():
    limiter = RateLimiter(20, slack=0.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(limiter.acquire() for _ in range(21)))
    assert loop.time() - started >= 0.99
    limiter.pause(0.3)
    assert limiter.wait_estimate() >= 0.29
    began = loop.time()
    await limiter.acquire()
    assert loop.time() - began >= 0.29


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_probes_once():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, cool_down=5, max_cool_down=20, clock=clock)
    for _ in range(2):
        breaker.record_failure()
    breaker.record_success()  # a useful answer resets the count
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.now = 5.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one
    breaker.record_failure()  # the probe failed: open for twice as long
    clock.now = 14.9
    assert not breaker.allow()
    clock.now = 15.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() and breaker.allow()


def test_a_probe_that_ends_neutral_lets_another_probe():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cool_down=1, clock=clock)
    breaker.record_failure()
    clock.now = 1.0
    assert breaker.allow()
    breaker.release_probe()
    assert breaker.allow()
