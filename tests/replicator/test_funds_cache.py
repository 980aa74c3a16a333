"""The broker funds kept between master orders: fresh, stale-while-revalidate, too old."""

import asyncio
from decimal import Decimal

from services.replicator.pipeline.funds import FundsCache


class Broker:
    def __init__(self) -> None:
        self.funds: dict[int, Decimal | None] = {1: Decimal("1000.00"), 2: None}
        self.reads: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def read(self, account_ids: list[int]) -> dict[int, Decimal | None]:
        self.reads.append(sorted(account_ids))
        await self.gate.wait()
        return {a: self.funds.get(a) for a in account_ids}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_first_read_waits_then_fresh_answers_come_from_memory():
    broker, clock = Broker(), Clock()
    cache = FundsCache(broker.read, fresh_seconds=30, max_age_seconds=300, clock=clock)
    assert await cache.get([1, 2]) == {1: Decimal("1000.00")}  # 2: the broker could not say
    clock.now = 29
    broker.funds[1] = Decimal("5.00")
    assert await cache.get([1, 2]) == {1: Decimal("1000.00")}
    assert broker.reads == [[1, 2]]  # the "cannot say" was remembered too


async def test_stale_figures_are_used_while_one_background_read_updates_them():
    broker, clock = Broker(), Clock()
    cache = FundsCache(broker.read, fresh_seconds=30, max_age_seconds=300, clock=clock)
    await cache.get([1])
    clock.now = 31
    broker.funds[1] = Decimal("750.00")
    broker.gate.clear()  # the broker is slow: the fan-out must not wait for it
    assert await asyncio.wait_for(cache.get([1]), 0.5) == {1: Decimal("1000.00")}
    assert broker.reads == [[1]]  # nothing read while the fan-out runs
    cache.revalidate()  # its fan-out done
    await asyncio.sleep(0)
    assert await asyncio.wait_for(cache.get([1]), 0.5) == {1: Decimal("1000.00")}
    cache.revalidate()
    await asyncio.sleep(0)
    assert broker.reads == [[1], [1]]  # one refresh under way, not one per master order
    broker.gate.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert await cache.get([1]) == {1: Decimal("750.00")}
    await cache.close()


async def test_figures_older_than_the_limit_are_read_again_before_use():
    broker, clock = Broker(), Clock()
    cache = FundsCache(broker.read, fresh_seconds=30, max_age_seconds=300, clock=clock)
    await cache.get([1])
    clock.now = 301
    broker.funds[1] = Decimal("10.00")
    assert await cache.get([1]) == {1: Decimal("10.00")}
    assert broker.reads == [[1], [1]]


async def test_a_failed_background_read_keeps_the_stale_figures():
    clock = Clock()
    calls = 0

    async def read(account_ids):
        nonlocal calls
        calls += 1
        if calls > 1:
            raise ConnectionError("broker down")
        return {1: Decimal(100)}

    cache = FundsCache(read, fresh_seconds=30, max_age_seconds=300, clock=clock)
    await cache.get([1])
    clock.now = 60
    assert await cache.get([1]) == {1: Decimal(100)}
    cache.revalidate()
    for _ in range(10):
        await asyncio.sleep(0)
    assert await cache.get([1]) == {1: Decimal(100)}
    cache.revalidate()
    for _ in range(10):
        await asyncio.sleep(0)
    assert calls == 3  # it tries again on the next use; the figure is kept until it is too old
    await cache.close()
