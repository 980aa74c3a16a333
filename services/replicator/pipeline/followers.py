"""A master's active followers as the pipeline sizes them, from the subscriptions repository.

The repository caches each master's active subscriptions and drops the entry on any change made by
any replica (services/replicator/subscription_cache.py), so the hot path reads no table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

from services.replicator.models import Subscription
from services.replicator.pipeline.sizing import Strategy
from services.replicator.subscriptions import SubscriptionRepository


@dataclass(frozen=True)
class Follower:
    follower_id: int
    strategy: Strategy


LoadFollowers = Callable[[int], Awaitable[list[Follower]]]


def follower(subscription: Subscription) -> Follower:
    return Follower(
        subscription.follower_id,
        Strategy(
            kind=subscription.copy_strategy,
            ratio=subscription.ratio if subscription.ratio is not None else Decimal(1),
            percentage=subscription.percentage if subscription.percentage is not None else Decimal(0),
            fixed_quantity=subscription.fixed_quantity or 0,
            max_quantity=subscription.max_quantity or 0,
        ),
    )


def active_followers(repository: SubscriptionRepository) -> LoadFollowers:
    # master id -> the cached subscription list last converted, and its followers. Reading the
    # attributes of 500 ORM rows was a third of planning a 500-copy fan-out; the repository hands
    # out the same list until a change replaces it, so the conversion is redone only then.
    converted: dict[int, tuple[list[Subscription], list[Follower]]] = {}

    async def load(master_id: int) -> list[Follower]:
        subscriptions = await repository.active_subscriptions(master_id)
        known = converted.get(master_id)
        if known is not None and known[0] is subscriptions:
            return known[1]
        followers = [follower(s) for s in subscriptions]
        converted[master_id] = (subscriptions, followers)
        return followers

    return load
