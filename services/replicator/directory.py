"""The auth service's user directory, as the replicator sees it: one channel, a service token."""

from __future__ import annotations

import time

import grpc

from copytrade.auth.v1 import auth_pb2, auth_pb2_grpc
from copytrade.core.errors import InvalidArgument, Unavailable
from copytrade.core.settings import Settings
from copytrade.core.tokens import issue_service_token

CALL_TIMEOUT_SECONDS = 5.0
# The directory answers at most this many ids per call (auth.v1 BatchGetUsersRequest).
BATCH_LIMIT = 1000


class UserDirectory:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.channel = grpc.aio.insecure_channel(settings.grpc_target("auth"))
        self._stub = auth_pb2_grpc.UserDirectoryServiceStub(self.channel)
        self._token = ""
        self._token_renew_at = 0.0

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        # Renewed at half its life, so a token never expires between being read and being checked.
        now = time.monotonic()
        if now >= self._token_renew_at:
            self._token = issue_service_token(self._settings)
            self._token_renew_at = now + self._settings.access_token_ttl_seconds / 2
        return (("authorization", f"Bearer {self._token}"),)

    async def users(self, user_ids: list[int]) -> dict[int, auth_pb2.User]:
        """The users that exist among `user_ids`, by id."""
        found: dict[int, auth_pb2.User] = {}
        ids = list(dict.fromkeys(user_ids))
        for start in range(0, len(ids), BATCH_LIMIT):
            request = auth_pb2.BatchGetUsersRequest(user_ids=ids[start : start + BATCH_LIMIT])
            reply = await self._call(self._stub.BatchGetUsers, request)
            found.update((user.id, user) for user in reply.users)
        return found

    async def masters(self, *, page_size: int, page_token: str, query: str) -> auth_pb2.ListUsersResponse:
        """A page of active masters; `page_token` is the directory's own, carried inside ours."""
        request = auth_pb2.ListUsersRequest(
            role="MASTER", page_size=page_size, page_token=page_token, query=query
        )
        try:
            return await self._stub.ListUsers(
                request, metadata=self._metadata(), timeout=CALL_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                # Only the token can be at fault: the replicator checked the query and sends the role.
                raise InvalidArgument("is not a token this service issued", field="page_token") from None
            raise Unavailable(f"the user directory is unavailable ({exc.code().name})") from None

    async def _call(self, method, request):
        try:
            return await method(request, metadata=self._metadata(), timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            # The caller's request was fine; the directory was not reachable or failed.
            raise Unavailable(f"the user directory is unavailable ({exc.code().name})") from None

    async def close(self) -> None:
        await self.channel.close()
