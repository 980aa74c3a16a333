"""Reading and writing copy subscriptions in PostgreSQL.

Every write that changes a master's subscriptions ends in `cache.changed(master_id)`, after the
commit, so no replica keeps copying with settings that are gone.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from copytrade.core.errors import NotFound
from services.replicator.models import Subscription
from services.replicator.subscription_cache import ActiveSubscriptionCache
from services.replicator.validation import Settings

NOT_FOLLOWING = "you do not follow this master"


def _same_settings(row: Subscription, settings: Settings) -> bool:
    return (
        row.copy_strategy == settings.copy_strategy
        and row.ratio == settings.ratio
        and row.percentage == settings.percentage
        and row.fixed_quantity == settings.fixed_quantity
        and row.max_quantity == settings.max_quantity
    )


def _apply(row: Subscription, settings: Settings) -> None:
    row.copy_strategy = settings.copy_strategy
    row.ratio = settings.ratio
    row.percentage = settings.percentage
    row.fixed_quantity = settings.fixed_quantity
    row.max_quantity = settings.max_quantity


class SubscriptionRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self.cache = ActiveSubscriptionCache(self._load_active)

    async def active_subscriptions(self, master_id: int) -> list[Subscription]:
        """The ACTIVE subscriptions to `master_id`, oldest first: whom to copy a master order to.

        Served from the cache (see subscription_cache); the rows are shared, so treat them as
        read-only.
        """
        return await self.cache.get(master_id)

    async def _load_active(self, master_id: int) -> list[Subscription]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Subscription)
                .where(Subscription.master_id == master_id, Subscription.status == "ACTIVE")
                .order_by(Subscription.id)
            )
            return list(rows)

    async def follow(self, follower_id: int, master_id: int, settings: Settings) -> tuple[Subscription, bool]:
        """Create the subscription, or give an existing one these settings and make it ACTIVE.

        Returns the subscription and whether it was created.
        """
        try:
            row, created, changed = await self._follow_once(follower_id, master_id, settings)
        except IntegrityError:
            # Another Follow for the same pair committed between our read and insert: now it exists.
            row, created, changed = await self._follow_once(follower_id, master_id, settings)
        if changed:
            await self.cache.changed(master_id)
        return row, created

    async def _follow_once(
        self, follower_id: int, master_id: int, settings: Settings
    ) -> tuple[Subscription, bool, bool]:
        async with self._sessions() as session, session.begin():
            row = await self._locked(session, follower_id, master_id)
            if row is None:
                row = Subscription(follower_id=follower_id, master_id=master_id, status="ACTIVE")
                _apply(row, settings)
                session.add(row)
                await session.flush()
                await session.refresh(row)
                return row, True, True
            if _same_settings(row, settings) and row.status == "ACTIVE":
                return row, False, False
            _apply(row, settings)
            row.status = "ACTIVE"
            row.updated_at = func.now()
        await self._refresh(row)
        return row, False, True

    async def update(self, follower_id: int, master_id: int, change) -> Subscription:
        """Apply `change(row) -> Settings` to the caller's subscription under a row lock."""
        async with self._sessions() as session, session.begin():
            row = await self._existing(session, follower_id, master_id)
            settings = change(row)
            if _same_settings(row, settings):
                return row
            _apply(row, settings)
            row.updated_at = func.now()
        await self._refresh(row)
        await self.cache.changed(master_id)
        return row

    async def set_status(self, follower_id: int, master_id: int, status: str) -> Subscription:
        async with self._sessions() as session, session.begin():
            row = await self._existing(session, follower_id, master_id)
            if row.status == status:
                return row
            row.status = status
            row.updated_at = func.now()
        await self._refresh(row)
        await self.cache.changed(master_id)
        return row

    async def remove(self, follower_id: int, master_id: int) -> None:
        async with self._sessions() as session, session.begin():
            removed = await session.scalar(
                delete(Subscription)
                .where(Subscription.follower_id == follower_id, Subscription.master_id == master_id)
                .returning(Subscription.id)
            )
        if removed is None:
            raise NotFound(NOT_FOLLOWING, field="master_id")
        await self.cache.changed(master_id)

    async def of_follower(self, follower_id: int, *, after_id: int, limit: int) -> list[Subscription]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Subscription)
                .where(Subscription.follower_id == follower_id, Subscription.id > after_id)
                .order_by(Subscription.id)
                .limit(limit)
            )
            return list(rows)

    async def of_master(
        self, master_id: int, *, status: str | None, after_id: int, limit: int
    ) -> list[Subscription]:
        statement = select(Subscription).where(
            Subscription.master_id == master_id, Subscription.id > after_id
        )
        if status is not None:
            statement = statement.where(Subscription.status == status)
        async with self._sessions() as session:
            return list(await session.scalars(statement.order_by(Subscription.id).limit(limit)))

    async def follower_counts(self, master_ids: list[int]) -> dict[int, int]:
        if not master_ids:
            return {}
        async with self._sessions() as session:
            rows = await session.execute(
                select(Subscription.master_id, func.count())
                .where(Subscription.master_id.in_(master_ids))
                .group_by(Subscription.master_id)
            )
            return {master_id: count for master_id, count in rows}

    async def most_followed(self, *, after: tuple[int, int] | None, limit: int) -> list[tuple[int, int]]:
        """(master_id, follower count) for followed masters, most followed first, then by id;
        `after` is the (count, master_id) the previous batch ended with."""
        count = func.count().label("followers")
        statement = select(Subscription.master_id, count).group_by(Subscription.master_id)
        if after is not None:
            # Descending count, ascending id: after (c, m) come smaller counts, then c with larger ids.
            statement = statement.having(tuple_(-count, Subscription.master_id) > tuple_(-after[0], after[1]))
        async with self._sessions() as session:
            rows = await session.execute(
                statement.order_by(count.desc(), Subscription.master_id).limit(limit)
            )
            return [(master_id, followers) for master_id, followers in rows]

    async def statuses(self, follower_id: int, master_ids: list[int]) -> dict[int, str]:
        """The caller's subscription status with each of `master_ids` that they follow."""
        if not master_ids:
            return {}
        async with self._sessions() as session:
            rows = await session.execute(
                select(Subscription.master_id, Subscription.status).where(
                    Subscription.follower_id == follower_id, Subscription.master_id.in_(master_ids)
                )
            )
            return {master_id: status for master_id, status in rows}

    @staticmethod
    async def _locked(session: AsyncSession, follower_id: int, master_id: int) -> Subscription | None:
        return await session.scalar(
            select(Subscription)
            .where(Subscription.follower_id == follower_id, Subscription.master_id == master_id)
            .with_for_update()
        )

    async def _existing(self, session: AsyncSession, follower_id: int, master_id: int) -> Subscription:
        row = await self._locked(session, follower_id, master_id)
        if row is None:
            raise NotFound(NOT_FOLLOWING, field="master_id")
        return row

    async def _refresh(self, row: Subscription) -> None:
        # updated_at was set to the database's now(); read back what was stored.
        async with self._sessions() as session:
            session.add(row)
            await session.refresh(row)
            session.expunge(row)
