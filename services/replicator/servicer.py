"""ReplicatorService: followers follow, pause, resume and unfollow masters; masters see followers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import grpc

from copytrade.auth.v1 import auth_pb2
from copytrade.core.errors import InvalidArgument, NotFound, PermissionDenied
from copytrade.core.interceptor import caller
from copytrade.replicator.v1 import replicator_pb2, replicator_pb2_grpc
from services.replicator import paging, validation
from services.replicator.directory import UserDirectory
from services.replicator.masters import MasterCatalog
from services.replicator.models import Subscription
from services.replicator.subscriptions import SubscriptionRepository


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _decimal(value: Decimal | None) -> str:
    """A decimal string with no trailing zeros past the first decimal place: "1.0", "0.25", "12.5"."""
    if value is None:
        return ""
    text = format(value.normalize(), "f")
    return text if "." in text else f"{text}.0"


def subscription_message(row: Subscription, users: dict[int, auth_pb2.User]) -> replicator_pb2.Subscription:
    follower, master = users.get(row.follower_id), users.get(row.master_id)
    return replicator_pb2.Subscription(
        id=row.id,
        follower_id=row.follower_id,
        follower_username=follower.username if follower else "",
        master_id=row.master_id,
        master_username=master.username if master else "",
        copy_strategy=row.copy_strategy,
        ratio=_decimal(row.ratio),
        percentage=_decimal(row.percentage),
        fixed_quantity=row.fixed_quantity or 0,
        max_quantity=row.max_quantity or 0,
        status=row.status,
        created_at=_time(row.created_at),
        updated_at=_time(row.updated_at),
    )


def _follower_caller() -> int:
    principal = caller()
    if principal.role != "FOLLOWER":
        raise PermissionDenied("only FOLLOWER accounts follow masters")
    return principal.user_id


class ReplicatorServicer(replicator_pb2_grpc.ReplicatorServiceServicer):
    def __init__(self, subscriptions: SubscriptionRepository, directory: UserDirectory) -> None:
        self._subscriptions = subscriptions
        self._directory = directory
        self._masters = MasterCatalog(subscriptions, directory)

    async def Follow(self, request: replicator_pb2.FollowRequest, context: grpc.aio.ServicerContext):
        follower_id = _follower_caller()
        master_id = validation.master_id(request.master_id)
        if master_id == follower_id:
            raise InvalidArgument("you cannot follow yourself", field="master_id")
        settings = validation.copy_settings(
            copy_strategy=validation.strategy(request.copy_strategy, default="FIXED_RATIO"),
            ratio=request.ratio,
            percentage=request.percentage,
            fixed_quantity=request.fixed_quantity,
            max_quantity=request.max_quantity,
        )
        users = await self._directory.users([master_id, follower_id])
        master = users.get(master_id)
        if master is None or not master.is_active:
            raise NotFound(f"there is no active user {master_id}", field="master_id")
        if master.role != "MASTER":
            raise InvalidArgument(
                f"user {master_id} is not a MASTER; only masters can be followed", field="master_id"
            )
        row, created = await self._subscriptions.follow(follower_id, master_id, settings)
        return replicator_pb2.FollowResponse(subscription=subscription_message(row, users), created=created)

    async def UpdateFollow(
        self, request: replicator_pb2.UpdateFollowRequest, context: grpc.aio.ServicerContext
    ):
        follower_id = caller().user_id
        master_id = validation.master_id(request.master_id)
        new_strategy = validation.strategy(request.copy_strategy) if request.copy_strategy.strip() else None
        new_cap = request.max_quantity if request.HasField("max_quantity") else None

        def change(row: Subscription) -> validation.Settings:
            strategy = new_strategy or row.copy_strategy
            given = request.ratio or request.percentage or request.fixed_quantity
            if strategy == row.copy_strategy and not given:
                # Only the cap changes: keep the parameter as stored.
                keep = validation.Settings(
                    row.copy_strategy, row.ratio, row.percentage, row.fixed_quantity, row.max_quantity
                )
                cap = keep.max_quantity if new_cap is None else validation.cap(new_cap)
                return validation.Settings(
                    keep.copy_strategy, keep.ratio, keep.percentage, keep.fixed_quantity, cap
                )
            return validation.copy_settings(
                copy_strategy=strategy,
                ratio=request.ratio,
                percentage=request.percentage,
                fixed_quantity=request.fixed_quantity,
                max_quantity=(row.max_quantity or 0) if new_cap is None else new_cap,
            )

        row = await self._subscriptions.update(follower_id, master_id, change)
        return replicator_pb2.UpdateFollowResponse(subscription=await self._message(row))

    async def Unfollow(self, request: replicator_pb2.UnfollowRequest, context: grpc.aio.ServicerContext):
        await self._subscriptions.remove(caller().user_id, validation.master_id(request.master_id))
        return replicator_pb2.UnfollowResponse()

    async def PauseFollowing(
        self, request: replicator_pb2.PauseFollowingRequest, context: grpc.aio.ServicerContext
    ):
        row = await self._subscriptions.set_status(
            caller().user_id, validation.master_id(request.master_id), "PAUSED"
        )
        return replicator_pb2.PauseFollowingResponse(subscription=await self._message(row))

    async def ResumeFollowing(
        self, request: replicator_pb2.ResumeFollowingRequest, context: grpc.aio.ServicerContext
    ):
        row = await self._subscriptions.set_status(
            caller().user_id, validation.master_id(request.master_id), "ACTIVE"
        )
        return replicator_pb2.ResumeFollowingResponse(subscription=await self._message(row))

    async def ListMyMasters(
        self, request: replicator_pb2.ListMyMastersRequest, context: grpc.aio.ServicerContext
    ):
        follower_id = caller().user_id
        size = paging.page_size(request.page_size)
        position = paging.decode(request.page_token)
        after = 0 if position is None else paging.field(position, "after", int)
        rows = await self._subscriptions.of_follower(follower_id, after_id=after, limit=size + 1)
        page, token = _page(rows, size, {})
        return replicator_pb2.ListMyMastersResponse(
            subscriptions=await self._messages(page), next_page_token=token
        )

    async def ListFollowers(
        self, request: replicator_pb2.ListFollowersRequest, context: grpc.aio.ServicerContext
    ):
        principal = caller()
        if not principal.is_master:
            raise PermissionDenied("only MASTER accounts have followers")
        size = paging.page_size(request.page_size)
        status = validation.status(request.status)
        position = paging.decode(request.page_token)
        after = 0
        if position is not None:
            after = paging.field(position, "after", int)
            if position.get("status") != status:
                raise InvalidArgument("was issued for a different status", field="page_token")
        rows = await self._subscriptions.of_master(
            principal.user_id, status=status, after_id=after, limit=size + 1
        )
        page, token = _page(rows, size, {"status": status})
        return replicator_pb2.ListFollowersResponse(
            subscriptions=await self._messages(page), next_page_token=token
        )

    async def ListMasters(
        self, request: replicator_pb2.ListMastersRequest, context: grpc.aio.ServicerContext
    ):
        masters, token = await self._masters.page(
            caller().user_id,
            size=paging.page_size(request.page_size),
            token=request.page_token,
            query=request.query,
        )
        return replicator_pb2.ListMastersResponse(masters=masters, next_page_token=token)

    async def _message(self, row: Subscription) -> replicator_pb2.Subscription:
        return (await self._messages([row]))[0]

    async def _messages(self, rows: list[Subscription]) -> list[replicator_pb2.Subscription]:
        users = await self._directory.users([i for row in rows for i in (row.follower_id, row.master_id)])
        return [subscription_message(row, users) for row in rows]


def _page(rows: list[Subscription], size: int, extra: dict) -> tuple[list[Subscription], str]:
    """Rows were read one past the page size: the extra row says another page follows."""
    if len(rows) <= size:
        return rows, ""
    page = rows[:size]
    return page, paging.encode({"after": page[-1].id, **extra})
