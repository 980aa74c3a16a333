"""ListMasters: every active master, most followed first, from two owners of the data.

The replicator knows follower counts; the auth service's directory knows who is an active master.
A page is therefore read in two phases, and the page token says which one it stopped in:

1. followed masters, by follower count descending then id (keyset `{"c": count, "m": master_id}`),
   each checked against the directory (still an active MASTER, matching the query);
2. masters nobody follows, in the directory's own order (`{"d": directory_page_token}`), skipping the
   followed ones phase 1 already listed.

Counts change while a client pages; a master whose count changes between two pages may be listed
twice or missed, which is acceptable for a browsing list and avoids holding any snapshot.
"""

from __future__ import annotations

from copytrade.auth.v1 import auth_pb2
from copytrade.core.errors import InvalidArgument
from copytrade.replicator.v1 import replicator_pb2
from services.replicator import paging
from services.replicator.directory import UserDirectory
from services.replicator.subscriptions import SubscriptionRepository

MAX_QUERY = 100


def _matches(user: auth_pb2.User, query: str) -> bool:
    lowered = query.lower()
    return user.username.lower().startswith(lowered) or user.full_name.lower().startswith(lowered)


def _master(user: auth_pb2.User, followers: int, my_status: str) -> replicator_pb2.Master:
    return replicator_pb2.Master(
        user_id=user.id,
        username=user.username,
        full_name=user.full_name,
        follower_count=followers,
        my_subscription_status=my_status,
        created_at=user.created_at,
    )


class MasterCatalog:
    def __init__(self, subscriptions: SubscriptionRepository, directory: UserDirectory) -> None:
        self._subscriptions = subscriptions
        self._directory = directory

    async def page(self, caller_id: int, *, size: int, token: str, query: str) -> tuple[list, str]:
        query = query.strip()
        if len(query) > MAX_QUERY:
            raise InvalidArgument(f"must be at most {MAX_QUERY} characters", field="query")
        position = paging.decode(token) or {"c": None, "m": 0}
        if position.get("q", "") != query and token:
            raise InvalidArgument("was issued for a different query", field="page_token")
        found: list[tuple[auth_pb2.User, int]] = []
        if "d" not in position:
            after = None
            if position.get("c") is not None:
                after = (paging.field(position, "c", int), paging.field(position, "m", int))
            after, done = await self._followed(found, size, after, query)
            if not done and after is not None:  # not done: a batch was read, which set `after`
                return await self._answer(caller_id, found, {"c": after[0], "m": after[1], "q": query})
            position = {"d": ""}
        directory_token = paging.field(position, "d", str)
        directory_token = await self._unfollowed(found, size, directory_token, query)
        return await self._answer(
            caller_id, found, {"d": directory_token, "q": query} if directory_token else None
        )

    async def _followed(self, found, size, after, query) -> tuple[tuple[int, int] | None, bool]:
        """Fill `found` from followed masters; return where it stopped and whether they ran out."""
        while len(found) < size:
            batch = await self._subscriptions.most_followed(after=after, limit=size - len(found))
            if not batch:
                return after, True
            users = await self._directory.users([master_id for master_id, _ in batch])
            for master_id, count in batch:
                user = users.get(master_id)
                if user is not None and user.is_active and user.role == "MASTER" and _matches(user, query):
                    found.append((user, count))
            last_master, last_count = batch[-1]
            after = (last_count, last_master)
        return after, False

    async def _unfollowed(self, found, size, token: str, query: str) -> str:
        """Fill `found` from masters with no followers; return the directory's next token."""
        while len(found) < size:
            reply = await self._directory.masters(page_size=size - len(found), page_token=token, query=query)
            counts = await self._subscriptions.follower_counts([user.id for user in reply.users])
            found.extend((user, 0) for user in reply.users if user.id not in counts)
            token = reply.next_page_token
            if not token:
                break
        return token

    async def _answer(self, caller_id, found, next_position) -> tuple[list[replicator_pb2.Master], str]:
        statuses = await self._subscriptions.statuses(caller_id, [user.id for user, _ in found])
        masters = [_master(user, count, statuses.get(user.id, "")) for user, count in found]
        return masters, paging.encode(next_position) if next_position else ""
