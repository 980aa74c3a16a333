"""A follower's trading capital, which PERCENTAGE sizing takes its share of.

For a follower with a linked account, capital is the funds the broker reports (the replication
asks BrokerGatewayService.BatchGetFunds, and only when a follower sizes by PERCENTAGE). Here is
the fallback, used when the broker cannot say (a lapsed session, a broker that is down, XTS against
the mock): the platform balance each user has in the auth service
(UserDirectoryService.BatchGetUsers), and the seed's ₹10,000 for a user the directory does not
return. A directory that cannot be reached fails the master order's planning, which is
retried on redelivery: sizing on a guessed capital could place a copy far larger than intended.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation

from services.replicator.directory import UserDirectory

DEFAULT_CAPITAL = Decimal("10000.00")  # the seed's starting balance

Capital = Callable[[list[int]], Awaitable[dict[int, Decimal]]]


async def default_capital(follower_ids: list[int]) -> dict[int, Decimal]:
    return dict.fromkeys(follower_ids, DEFAULT_CAPITAL)


def _balance(text: str) -> Decimal:
    try:
        return Decimal(text) if text else DEFAULT_CAPITAL
    except InvalidOperation:
        return DEFAULT_CAPITAL


def directory_capital(directory: UserDirectory) -> Capital:
    async def capital(follower_ids: list[int]) -> dict[int, Decimal]:
        users = await directory.users(follower_ids)
        return {
            uid: _balance(users[uid].balance) if uid in users else DEFAULT_CAPITAL for uid in follower_ids
        }

    return capital
