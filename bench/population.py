"""The benchmark's users: masters, and followers that each link their own IIFL account and follow.

Set-up goes straight to each service over gRPC (it is not what is measured) with access tokens
minted from the stack's own signing key, so that 5,000 followers are ready in about a minute.
Every follower links an IIFL Capital v1 account (the mock's browser-login stand-in gives the auth
code) and the strategies rotate: FIXED_QUANTITY, FIXED_RATIO, PERCENTAGE.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

import aiohttp
import grpc

from copytrade.auth.v1 import auth_pb2, auth_pb2_grpc
from copytrade.broker.v1 import broker_pb2, broker_pb2_grpc
from copytrade.core.tokens import issue_access_token
from copytrade.replicator.v1 import replicator_pb2, replicator_pb2_grpc
from stack import LocalStack

PASSWORD = "BenchPassword123!"
CONCURRENCY = 64
class Strategy(TypedDict, total=False):
    """A FollowRequest's copy settings, as its keyword arguments."""

    copy_strategy: str
    fixed_quantity: int
    ratio: float
    percentage: float


STRATEGIES: tuple[Strategy, ...] = (
    {"copy_strategy": "FIXED_QUANTITY", "fixed_quantity": 1},
    {"copy_strategy": "FIXED_RATIO", "ratio": 0.5},
    {"copy_strategy": "PERCENTAGE", "percentage": 1},
)


@dataclass
class User:
    id: int
    role: str
    token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


@dataclass
class Population:
    followers: list[User] = field(default_factory=list)
    masters: dict[str, User] = field(default_factory=dict)  # by name: "N=500", "group-3"


async def _bounded(count: int, step: Callable[[int], Awaitable[None]], progress: str) -> None:
    limit = asyncio.Semaphore(CONCURRENCY)
    done = 0
    started = time.perf_counter()

    async def one(index: int) -> None:
        nonlocal done
        async with limit:
            await step(index)
        done += 1
        if done % 1000 == 0 or done == count:
            print(f"  {progress}: {done}/{count} ({time.perf_counter() - started:.0f} s)", flush=True)

    await asyncio.gather(*(one(i) for i in range(count)))


class Builder:
    def __init__(self, stack: LocalStack, http: aiohttp.ClientSession, run: str) -> None:
        self.stack = stack
        self.http = http
        self.run = run
        self.mock_url = f"http://127.0.0.1:{stack.settings.mock_iifl_port}"

    async def register(self, auth: auth_pb2_grpc.AuthServiceStub, name: str, role: str) -> User:
        reply = await auth.Register(
            auth_pb2.RegisterRequest(
                email=f"{name}@bench.example.com", username=name, password=PASSWORD, role=role
            )
        )
        token, _ = issue_access_token(self.stack.settings, reply.id, role)
        return User(reply.id, role, token)

    async def link(self, accounts: broker_pb2_grpc.BrokerAccountServiceStub, user: User, client_id: str) -> None:
        async with self.http.post(
            f"{self.mock_url}/_mock/v1/authcode", json={"client_id": client_id, "app_secret": "s"}
        ) as reply:
            reply.raise_for_status()
            code = (await reply.json())["auth_code"]
        await accounts.LinkAccount(
            broker_pb2.LinkAccountRequest(
                dialect="IIFL_CAPITAL_V1",
                client_code=client_id,
                app_key="benchkey",
                app_secret="s",
                auth_code=code,
            ),
            metadata=user.metadata,
        )

    async def build(self, followers: int, follows: Mapping[str, Sequence[int]]) -> Population:
        """`followers` followers; follows maps each master's name to the indexes of its followers."""
        population = Population()
        followed_by: dict[int, list[str]] = {}
        for name, indexes in follows.items():
            for index in indexes:
                followed_by.setdefault(index, []).append(name)
        async with (
            grpc.aio.insecure_channel(self.stack.grpc_target("auth")) as auth_channel,
            grpc.aio.insecure_channel(self.stack.grpc_target("broker_gateway")) as broker_channel,
            grpc.aio.insecure_channel(self.stack.grpc_target("replicator")) as replicator_channel,
        ):
            auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
            accounts = broker_pb2_grpc.BrokerAccountServiceStub(broker_channel)
            subscriptions = replicator_pb2_grpc.ReplicatorServiceStub(replicator_channel)
            for name in follows:
                population.masters[name] = await self.register(
                    auth, f"bm{self.run}{name.replace('=', '').replace('-', '')}", "MASTER"
                )
            slots: list[User | None] = [None] * followers

            async def make_follower(index: int) -> None:
                user = await self.register(auth, f"bf{self.run}x{index}", "FOLLOWER")
                await self.link(accounts, user, f"BF{self.run}X{index}")
                for name in followed_by.get(index, ()):
                    await subscriptions.Follow(
                        replicator_pb2.FollowRequest(
                            master_id=population.masters[name].id, **STRATEGIES[index % len(STRATEGIES)]
                        ),
                        metadata=user.metadata,
                    )
                slots[index] = user

            await _bounded(followers, make_follower, "followers registered, linked and following")
            population.followers = [user for user in slots if user is not None]
        return population
