"""The cap on requests in flight at one broker: the rest wait unsent, and give up as NotSent."""

import asyncio

import pytest

from services.broker_gateway.brokers.http import Bounded, NotSent, Reply, Transport


class Slow(Transport):
    base_url = "http://broker.invalid"

    def __init__(self) -> None:
        self.in_flight = self.most = self.sent = 0
        self.release = asyncio.Event()

    async def request(self, method, path, *, headers, body=None, timeout=None):
        self.sent += 1
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await self.release.wait()
        self.in_flight -= 1
        return Reply(200, b"{}")

    async def warm(self, connections):
        return connections

    async def close(self):
        pass


async def test_no_more_than_the_limit_are_at_the_broker_and_the_rest_follow():
    inner = Slow()
    bounded = Bounded(inner, 3, timeout=5)
    calls = [asyncio.create_task(bounded.request("POST", "/orders", headers={})) for _ in range(10)]
    await asyncio.sleep(0.05)
    assert (inner.in_flight, inner.sent) == (3, 3)  # seven wait here, unsent
    inner.release.set()
    replies = await asyncio.gather(*calls)
    assert [r.status for r in replies] == [200] * 10 and inner.most == 3 and inner.sent == 10


async def test_a_request_without_a_slot_in_time_was_never_sent():
    inner = Slow()
    bounded = Bounded(inner, 1, timeout=5)
    first = asyncio.create_task(bounded.request("POST", "/orders", headers={}))
    await asyncio.sleep(0.01)
    with pytest.raises(NotSent, match="no free slot"):
        await bounded.request("POST", "/orders", headers={}, timeout=0.05)
    assert inner.sent == 1  # the broker never saw the second: safe to send again
    inner.release.set()
    await first
