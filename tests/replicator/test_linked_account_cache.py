"""The replicator's cache of which account each follower trades through."""

import asyncio

from copytrade.core import jetstream
from services.replicator.pipeline.accounts import LinkedAccountCache


class Gateway:
    """BatchGetLinkedAccounts, counted; `links` is the gateway's truth."""

    def __init__(self, links: dict[int, int]) -> None:
        self.links = links
        self.asked: list[list[int]] = []
        self.hold: asyncio.Event | None = None

    async def look_up(self, user_ids: list[int]) -> dict[int, int]:
        self.asked.append(sorted(user_ids))
        answer = {u: self.links[u] for u in user_ids if u in self.links}
        if self.hold is not None:
            await self.hold.wait()
        return answer


async def test_only_the_users_not_cached_are_looked_up_and_those_without_an_account_are_cached_too():
    gateway = Gateway({1: 101, 2: 102})
    cache = LinkedAccountCache(gateway.look_up)
    assert await cache.get([1, 3]) == {1: 101}
    assert await cache.get([1, 2, 3]) == {1: 101, 2: 102}
    assert await cache.get([3, 2, 1]) == {1: 101, 2: 102}
    assert gateway.asked == [[1, 3], [2]]


async def test_an_invalidated_user_is_looked_up_again():
    gateway = Gateway({1: 101})
    cache = LinkedAccountCache(gateway.look_up)
    assert await cache.get([1, 2]) == {1: 101}
    gateway.links = {2: 202}  # 1 unlinked, 2 linked
    cache.invalidate(1)
    cache.invalidate(2)
    assert await cache.get([1, 2]) == {2: 202}
    assert gateway.asked == [[1, 2], [1, 2]]


async def test_entries_expire():
    gateway = Gateway({1: 101})
    cache = LinkedAccountCache(gateway.look_up, ttl_seconds=0.0)
    await cache.get([1])
    await cache.get([1])
    assert gateway.asked == [[1], [1]]


async def test_an_answer_read_before_an_invalidation_is_not_kept():
    gateway = Gateway({1: 101})
    cache = LinkedAccountCache(gateway.look_up)
    gateway.hold = asyncio.Event()
    reading = asyncio.create_task(cache.get([1]))
    await asyncio.sleep(0)
    cache.invalidate(1)  # the user unlinked while the answer was on its way
    gateway.hold.set()
    assert await reading == {1: 101}  # this master order used what was true when it asked
    gateway.hold = None
    gateway.links = {}
    assert await cache.get([1]) == {}
    assert gateway.asked == [[1], [1]]


async def test_a_change_message_on_nats_drops_the_user(base_settings):
    gateway = Gateway({7: 707})
    cache = LinkedAccountCache(gateway.look_up)
    nats_client = await jetstream.connect(base_settings, "test-account-cache")
    await cache.listen(nats_client)
    try:
        await cache.get([7])
        gateway.links = {7: 708}
        await nats_client.publish(jetstream.account_changed_subject(7))
        await nats_client.flush()
        for _ in range(100):
            if await cache.get([7]) == {7: 708}:
                break
            await asyncio.sleep(0.02)
        assert await cache.get([7]) == {7: 708}
    finally:
        await cache.close()
        await nats_client.close()
