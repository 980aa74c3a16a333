"""UserDirectoryService: user look-ups for the platform's own services, never for end users."""

from __future__ import annotations

import base64
import binascii

import grpc
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from copytrade.auth.v1 import auth_pb2, auth_pb2_grpc
from copytrade.core.errors import InvalidArgument, PermissionDenied
from copytrade.core.interceptor import caller
from services.auth.models import ROLES, User
from services.auth.servicer import user_message

MAX_BATCH = 1000
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_QUERY = 100


def _require_service_caller() -> None:
    principal = caller()
    if not (principal.is_service or principal.is_admin):
        raise PermissionDenied("the user directory is for the platform's services only")


def page_size(value: int) -> int:
    if value < 0:
        raise InvalidArgument("must not be negative", field="page_size")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_after(user_id: int) -> str:
    return base64.urlsafe_b64encode(f"u{user_id}".encode()).decode()


def decode_after(token: str) -> int:
    """The last id of the previous page; ids only grow, so the next page is everything after it."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        if text.startswith("u") and text[1:].isdigit():
            return int(text[1:])
    except (binascii.Error, UnicodeError, ValueError):
        pass
    raise InvalidArgument("is not a token this service issued", field="page_token")


def _prefix_pattern(query: str) -> str:
    escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


class UserDirectoryServicer(auth_pb2_grpc.UserDirectoryServiceServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def BatchGetUsers(self, request: auth_pb2.BatchGetUsersRequest, context: grpc.aio.ServicerContext):
        _require_service_caller()
        ids = list(dict.fromkeys(request.user_ids))
        if len(ids) > MAX_BATCH:
            raise InvalidArgument(f"must hold at most {MAX_BATCH} ids", field="user_ids")
        if any(user_id <= 0 for user_id in ids):
            raise InvalidArgument("must all be positive", field="user_ids")
        if not ids:
            return auth_pb2.BatchGetUsersResponse()
        async with self._sessions() as session:
            found = {user.id: user for user in await session.scalars(select(User).where(User.id.in_(ids)))}
        return auth_pb2.BatchGetUsersResponse(users=[user_message(found[i]) for i in ids if i in found])

    async def ListUsers(self, request: auth_pb2.ListUsersRequest, context: grpc.aio.ServicerContext):
        _require_service_caller()
        role = request.role.strip().upper()
        if role not in ROLES:
            raise InvalidArgument(f"must be one of {', '.join(ROLES)}", field="role")
        size = page_size(request.page_size)
        after = decode_after(request.page_token)
        query = request.query.strip()
        if len(query) > MAX_QUERY:
            raise InvalidArgument(f"must be at most {MAX_QUERY} characters", field="query")
        if "\x00" in query:
            raise InvalidArgument("must not contain NUL characters", field="query")
        statement = select(User).where(User.role == role, User.is_active, User.id > after)
        if query:
            pattern = _prefix_pattern(query)
            statement = statement.where(
                or_(func.lower(User.username).like(pattern), func.lower(User.full_name).like(pattern))
            )
        async with self._sessions() as session:
            # One more than a page tells whether another page follows without a count.
            users = list(await session.scalars(statement.order_by(User.id).limit(size + 1)))
        more = len(users) > size
        users = users[:size]
        return auth_pb2.ListUsersResponse(
            users=[user_message(user) for user in users],
            next_page_token=encode_after(users[-1].id) if more else "",
        )
