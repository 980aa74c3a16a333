"""Who takes part: masters, and followers each with a linked IIFL account (bench.population's Builder),
and master orders placed straight at the orders service."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import grpc

from bench.measure import ORDER
from bench.population import Builder, User
from copytrade.orders.v1 import orders_pb2, orders_pb2_grpc
from stack import LocalStack


@dataclass
class Cast:
    masters: dict[str, User]
    # follower user id -> the mock IIFL client id of the account it linked
    accounts: dict[int, str]
    # master name -> the follower user ids that follow it
    followers_of: dict[str, list[int]]


async def build(stack: LocalStack, http: aiohttp.ClientSession, followers: int, follows: dict[str, Sequence[int]]) -> Cast:
    """`followers` followers, each linked and following the masters that list its index."""
    run = f"{int(time.time() * 1000) % 10_000_000}"
    population = await Builder(stack, http, run).build(followers, follows)
    if len(population.followers) != followers:
        raise RuntimeError(f"only {len(population.followers)} of {followers} followers were set up")
    accounts = {user.id: f"BF{run}X{index}" for index, user in enumerate(population.followers)}
    followers_of = {
        name: [population.followers[index].id for index in indexes] for name, indexes in follows.items()
    }
    return Cast(population.masters, accounts, followers_of)


class Orders:
    """PlaceOrder at the orders service itself (its own gRPC port, not through Envoy)."""

    def __init__(self, stack: LocalStack) -> None:
        self.channel = grpc.aio.insecure_channel(stack.grpc_target("orders"))
        self.stub = orders_pb2_grpc.OrderServiceStub(self.channel)

    async def place(self, master: User) -> int:
        reply = await self.stub.PlaceOrder(
            orders_pb2.PlaceOrderRequest(**ORDER), metadata=master.metadata, timeout=30
        )
        return reply.order.id

    async def close(self) -> None:
        await self.channel.close()
