"""What the pipeline benchmark reads off the running platform: master orders placed through Envoy,
fan-outs timed from the replicator's own record and the mock broker's arrival times, and the CPU
and memory of every process.

All timestamps are wall-clock times of this one machine (the client's, PostgreSQL's now() and the
mock's clock), so they can be subtracted from one another.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypedDict

import aiohttp
import asyncpg
import grpc
import psutil

from bench.population import User
from copytrade.orders.v1 import orders_pb2, orders_pb2_grpc
from services.replicator.pipeline.store import tag_for


class OrderFields(TypedDict):
    """A PlaceOrderRequest's fields: its keyword arguments, and the REST body as they are."""

    symbol: str
    exchange: str
    side: str
    order_type: str
    product: str
    quantity: int
    price: float


# A LIMIT buy of RELIANCE at its reference price, intraday: accepted by the mock and filled there.
ORDER: OrderFields = {
    "symbol": "RELIANCE",
    "exchange": "NSE",
    "side": "BUY",
    "order_type": "LIMIT",
    "product": "MIS",
    "quantity": 10,
    "price": 1412.30,
}
POLL_SECONDS = 0.005


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return round(ordered[rank - 1], 1)


@dataclass
class Placed:
    master_order_id: int
    protocol: str
    accept_ms: float  # request sent to response received
    accepted_at: float  # wall-clock time the response arrived


class MasterClient:
    """Places master orders through Envoy: REST/JSON (the seed's API) or native gRPC."""

    def __init__(self, envoy_url: str, envoy_target: str) -> None:
        self.envoy_url = envoy_url
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        self.channel = grpc.aio.insecure_channel(envoy_target)
        self.orders = orders_pb2_grpc.OrderServiceStub(self.channel)

    async def close(self) -> None:
        await self.http.close()
        await self.channel.close()

    async def place(self, master: User, protocol: str) -> Placed:
        started = time.perf_counter()
        if protocol == "rest":
            async with self.http.post(
                f"{self.envoy_url}/api/orders/place",
                json=ORDER,
                headers={"Authorization": f"Bearer {master.token}"},
            ) as reply:
                body = await reply.json(content_type=None)
                if reply.status != 200:
                    raise RuntimeError(f"REST place order answered {reply.status}: {body}")
                order_id = int(body["order"]["id"])
        else:
            response = await self.orders.PlaceOrder(
                orders_pb2.PlaceOrderRequest(**ORDER), metadata=master.metadata, timeout=30
            )
            order_id = response.order.id
        elapsed = time.perf_counter() - started
        return Placed(order_id, protocol, round(elapsed * 1000, 2), time.time())


@dataclass
class FanoutTiming:
    master_order_id: int
    protocol: str
    followers: int
    placed: int  # SUBMITTED: at the broker
    not_placed: int
    accept_ms: float
    fanout_ms: float  # acceptance to the last follower order recorded with its broker result
    first_at_broker_ms: float | None  # acceptance to the first follower order's arrival at the broker
    first_placed_ms: float | None  # acceptance to the first follower order made by the broker


class Record:
    """The replicator's record (replicator.follower_orders, replicator.fanouts) and the mock's."""

    def __init__(self, database_url: str, mock_url: str, http: aiohttp.ClientSession) -> None:
        self.dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
        self.mock_url = mock_url
        self.http = http
        self.pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self.pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=2)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def wait_done(self, master_order_ids: list[int], timeout: float) -> set[int]:
        """Wait until every fan-out is DONE (or the timeout passes); returns those that are."""
        assert self.pool is not None
        deadline = time.monotonic() + timeout
        done: set[int] = set()
        while len(done) < len(master_order_ids) and time.monotonic() < deadline:
            rows = await self.pool.fetch(
                "SELECT master_order_id FROM replicator.fanouts"
                " WHERE master_order_id = ANY($1::bigint[]) AND state = 'DONE'",
                [i for i in master_order_ids if i not in done],
            )
            done.update(row["master_order_id"] for row in rows)
            if len(done) < len(master_order_ids):
                await asyncio.sleep(POLL_SECONDS if len(master_order_ids) == 1 else 0.05)
        return done

    async def timings(self, placed: list[Placed]) -> list[FanoutTiming]:
        assert self.pool is not None
        rows = await self.pool.fetch(
            "SELECT master_order_id, count(*) AS followers,"
            " count(*) FILTER (WHERE status = 'SUBMITTED') AS placed,"
            " extract(epoch FROM max(updated_at)) AS last_recorded"
            " FROM replicator.follower_orders WHERE master_order_id = ANY($1::bigint[])"
            " GROUP BY master_order_id",
            [p.master_order_id for p in placed],
        )
        by_id = {row["master_order_id"]: row for row in rows}
        out = []
        for p in placed:
            row = by_id.get(p.master_order_id)
            if row is None:
                continue
            arrivals = await self.arrivals(p.master_order_id)
            out.append(
                FanoutTiming(
                    master_order_id=p.master_order_id,
                    protocol=p.protocol,
                    followers=row["followers"],
                    placed=row["placed"],
                    not_placed=row["followers"] - row["placed"],
                    accept_ms=p.accept_ms,
                    fanout_ms=round((float(row["last_recorded"]) - p.accepted_at) * 1000, 1),
                    first_at_broker_ms=_since(arrivals.get("first_received_at"), p.accepted_at),
                    first_placed_ms=_since(arrivals.get("first_created_at"), p.accepted_at),
                )
            )
        return out

    async def arrivals(self, master_order_id: int) -> dict:
        # Every copy's tag starts with the master order's part of it (store.tag_for).
        prefix = tag_for(master_order_id, 0)[:-1]
        async with self.http.get(f"{self.mock_url}/_mock/arrivals", params={"tag_prefix": prefix}) as reply:
            reply.raise_for_status()
            return await reply.json()


def _since(iso: str | None, accepted_at: float) -> float | None:
    if not iso:
        return None
    return round((datetime.fromisoformat(iso).timestamp() - accepted_at) * 1000, 1)


class ProcessMeter:
    """CPU seconds per process between two readings, and each process's peak resident memory."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}

    def cpu(self) -> dict[str, float]:
        readings = {}
        for name, process in self.processes.items():
            try:
                # The process and the children it waited for: Envoy and PostgreSQL fork workers.
                times = process.cpu_times()
                total = times.user + times.system + times.children_user + times.children_system
                for child in process.children(recursive=True):
                    child_times = child.cpu_times()
                    total += child_times.user + child_times.system
                readings[name] = total
            except psutil.Error:
                readings[name] = 0.0
        return readings

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {name: round(after[name] - before.get(name, 0.0), 2) for name in after}

    def peak_memory_mb(self) -> dict[str, float]:
        """VmHWM: the high-water mark of resident memory since the process started (children added)."""
        peaks = {}
        for name, process in self.processes.items():
            try:
                total = _vm_hwm_kb(process.pid)
                total += sum(_vm_hwm_kb(child.pid) for child in process.children(recursive=True))
                peaks[name] = round(total / 1024, 1)
            except (psutil.Error, OSError):
                peaks[name] = 0.0
        return peaks


def _vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


BARE_CLIENTS = ("httptools", "aiohttp")


def bare_limit(orders: int, mock_url: str, mock_h2_url: str, repeat: int) -> list[dict]:
    """The same N orders fired straight at the same mock by a plain asyncio client in its own
    process, nothing in between: the floor a fan-out can approach. Each repeat fires them with the
    gateway's own HTTP client (httptools, the cheapest measured, which sets the limit) and with
    aiohttp (for comparison)."""
    runs: list[dict] = []
    for _ in range(repeat):
        finished = subprocess.run(
            [
                sys.executable, "-m", "services.broker_gateway.brokers.bench",
                "--mock", mock_url, "--mock-h2", mock_h2_url,
                "--orders", str(orders), "--clients", *BARE_CLIENTS,
            ],
            check=False, capture_output=True, text=True, timeout=300,
        )
        if finished.returncode != 0:
            raise RuntimeError(f"the bare-limit client failed ({finished.returncode}): {finished.stderr[-2000:]}")
        output = finished.stdout
        runs.extend(json.loads(line) for line in output.splitlines() if line.startswith("{"))
    return runs
