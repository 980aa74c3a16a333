"""Linked broker accounts in PostgreSQL: who trades through which IIFL account, and its session."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BigInteger, any_, bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import defer
from sqlalchemy.sql import func

from copytrade.core import db
from copytrade.core.errors import AlreadyExists
from services.broker_gateway.models import LinkedAccount

# One array parameter, not an IN list of thousands: the statement's text (and so its prepared plan)
# is the same whatever the fan-out's size.
_IDS = bindparam("ids", type_=ARRAY(BigInteger))


@dataclass(frozen=True, slots=True)
class AccountRow:
    """What a fan-out needs of a linked account, read without the ORM.

    Building thousands of `LinkedAccount`s per fan-out (identity map, instance state) was a
    measurable share of the gateway's CPU; a plain row of the columns it reads is not. The sealed
    credentials are not among them: a fan-out never logs in.
    """

    id: int
    user_id: int
    dialect: str
    client_code: str
    status: str
    status_reason: str
    session_encrypted: str | None
    session_expires_at: datetime | None
    last_login_at: datetime | None
    updated_at: datetime


# A Core select of the table's columns, in AccountRow's field order: rows come back as tuples.
_TABLE = LinkedAccount.__table__
_BY_IDS = select(*(_TABLE.c[field.name] for field in fields(AccountRow))).where(_TABLE.c.id == any_(_IDS))


class AccountRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        # A read that needs no transaction: one round trip instead of BEGIN, SELECT and ROLLBACK.
        self._autocommit = db.autocommit_sessions(sessions)

    async def by_user(self, user_id: int) -> LinkedAccount | None:
        async with self._sessions() as session:
            return await session.scalar(select(LinkedAccount).where(LinkedAccount.user_id == user_id))

    async def by_id(self, account_id: int) -> LinkedAccount | None:
        async with self._sessions() as session:
            return await session.get(LinkedAccount, account_id)

    async def by_ids(self, account_ids: Iterable[int]) -> dict[int, AccountRow]:
        ids = list(set(account_ids))
        # Every fan-out's first step at the gateway, while the replicator writes the rest of it.
        async with self._autocommit() as session:
            result = await session.execute(_BY_IDS, {"ids": ids})
            return {row[0]: AccountRow(*row) for row in result}

    async def by_users(self, user_ids: Iterable[int]) -> list[LinkedAccount]:
        ids = list(set(user_ids))
        async with self._sessions() as session:
            rows = await session.scalars(
                select(LinkedAccount)
                .options(
                    defer(LinkedAccount.credentials_encrypted, raiseload=True),
                    defer(LinkedAccount.session_encrypted, raiseload=True),
                )
                .where(LinkedAccount.user_id == any_(_IDS))
                .order_by(LinkedAccount.user_id),
                {"ids": ids},
            )
            return list(rows)

    async def create(self, account: LinkedAccount) -> LinkedAccount:
        async with self._sessions() as session:
            session.add(account)
            try:
                await session.commit()
            except IntegrityError as exc:
                if "uq_linked_accounts_user_id" in str(exc.orig):
                    raise AlreadyExists(
                        "you already have a linked account; relink it or unlink it first", field="user_id"
                    ) from None
                raise AlreadyExists(
                    "this broker account is already linked to another user", field="client_code"
                ) from None
            await session.refresh(account)
            return account

    async def save_session(
        self,
        account_id: int,
        *,
        sealed_token: str,
        expires_at: datetime | None,
        new_credentials: tuple[str, str] | None = None,
    ) -> LinkedAccount | None:
        """A new broker session (and, on a relink with new keys, the sealed credentials and hint)."""
        values: dict[str, object] = {
            "session_encrypted": sealed_token,
            "session_expires_at": expires_at,
            "status": "LINKED",
            "status_reason": "",
            "last_login_at": func.now(),
            "updated_at": func.now(),
        }
        if new_credentials is not None:
            values["credentials_encrypted"], values["app_key_hint"] = new_credentials
        return await self._update(account_id, values)

    async def mark_needs_relogin(self, account_id: int, reason: str) -> LinkedAccount | None:
        return await self._update(
            account_id,
            {
                "status": "NEEDS_RELOGIN",
                "status_reason": reason[:200],
                "session_encrypted": None,
                "session_expires_at": None,
                "updated_at": func.now(),
            },
        )

    async def delete_for_user(self, user_id: int) -> bool:
        async with self._sessions() as session:
            # A DELETE's result is a CursorResult (it has rowcount); SQLAlchemy types execute() as Result.
            result = cast(
                CursorResult[Any],
                await session.execute(delete(LinkedAccount).where(LinkedAccount.user_id == user_id)),
            )
            await session.commit()
            return bool(result.rowcount)

    async def _update(self, account_id: int, values: dict[str, object]) -> LinkedAccount | None:
        async with self._sessions() as session:
            row = await session.scalar(
                update(LinkedAccount).where(LinkedAccount.id == account_id).values(**values).returning(LinkedAccount)
            )
            await session.commit()
            return row
