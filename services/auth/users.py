"""Reading and writing users in PostgreSQL."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from copytrade.core.errors import AlreadyExists
from services.auth.models import User
from services.auth.validation import NewUser


class UserRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(self, new: NewUser, hashed_password: str) -> User:
        async with self._sessions() as session:
            await self._ensure_unique(session, new)
            user = User(
                email=new.email,
                username=new.username,
                hashed_password=hashed_password,
                full_name=new.full_name,
                role=new.role,
                iifl_account_id=new.iifl_account_id,
            )
            session.add(user)
            try:
                await session.commit()
            except IntegrityError as exc:
                # Two registrations raced past the check above; say which field collided.
                field = "email" if "email" in str(exc.orig) else "username"
                raise AlreadyExists("is already taken", field=field) from None
            await session.refresh(user)
            return user

    @staticmethod
    async def _ensure_unique(session: AsyncSession, new: NewUser) -> None:
        for field, column, value in (("email", User.email, new.email), ("username", User.username, new.username)):
            taken = await session.scalar(select(User.id).where(func.lower(column) == value.lower()))
            if taken is not None:
                raise AlreadyExists("is already taken", field=field)

    async def by_login_name(self, name: str) -> User | None:
        """A user by username or email, case-insensitively."""
        lowered = name.strip().lower()
        async with self._sessions() as session:
            return await session.scalar(
                select(User).where(or_(func.lower(User.username) == lowered, func.lower(User.email) == lowered))
            )

    async def by_id(self, user_id: int) -> User | None:
        async with self._sessions() as session:
            return await session.get(User, user_id)
