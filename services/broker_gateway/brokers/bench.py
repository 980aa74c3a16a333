"""The bare-client baseline: N orders fired straight at the mock IIFL server, nothing in between.

The platform's own benchmark compares against this: what does one HTTP client cost per order, with
no gRPC, no rate limiter, no placement logic? One order per account (each its own v1 session), all
in flight at once, through the same Transport classes the gateway uses (httptools, aiohttp, httpx
over HTTP/1.1, httpx over h2c).

    python -m services.broker_gateway.brokers.bench --mock http://127.0.0.1:18801 \
        --mock-h2 http://127.0.0.1:18802 --orders 500 --clients aiohttp httpx-h1 httpx-h2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from dataclasses import asdict, dataclass

import aiohttp
import psutil
import uvloop

from services.broker_gateway.brokers.base import Credentials
from services.broker_gateway.brokers.http import NoReply, NotSent, Transport, make_transport
from services.broker_gateway.brokers.iifl_v1 import checksum

CLIENTS = ("httptools", "aiohttp", "httpx-h1", "httpx-h2")
# A LIMIT buy of RELIANCE (NSEEQ 2885, tick 0.10) at its reference price: accepted and filled.
ORDER = {
    "instrumentId": "2885",
    "exchange": "NSEEQ",
    "transactionType": "BUY",
    "quantity": "1",
    "orderComplexity": "REGULAR",
    "product": "INTRADAY",
    "orderType": "LIMIT",
    "validity": "DAY",
    "price": "1412.30",
    "algoId": "BENCH",
}


@dataclass(frozen=True)
class BenchResult:
    client: str
    orders: int
    accepted: int
    errors: int
    wall_seconds: float
    p50_ms: float
    p99_ms: float
    cpu_seconds: float  # this process only: the client's cost
    cpu_ms_per_order: float
    mock_cpu_seconds: float | None  # the mock's, when its pid was given


async def open_sessions(mock_url: str, count: int, prefix: str) -> list[str]:
    """Register `count` v1 accounts through the mock's control API and log each in."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:

        async def one(index: int) -> str:
            client_id = f"{prefix}{index}"
            async with http.post(
                f"{mock_url}/_mock/accounts", json={"dialect": "iifl_v1", "client_id": client_id}
            ) as r:
                account = await r.json()
                if r.status != 201:
                    raise RuntimeError(f"cannot register {client_id}: {account}")
            credentials = Credentials(
                client_id, account["app_key"], account["app_secret"], account["auth_code"]
            )
            async with http.post(
                f"{mock_url}/v1/getusersession", json={"checkSum": checksum(credentials)}
            ) as r:
                session = await r.json()
            if not session.get("userSession"):
                raise RuntimeError(f"cannot log {client_id} in: {session.get('message')}")
            return session["userSession"]

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def _transport(client: str, mock_url: str, mock_h2_url: str, orders: int) -> Transport:
    if client == "aiohttp":
        return make_transport("aiohttp", f"{mock_url}/v1", timeout=60, max_connections=orders)
    if client == "httptools":
        return make_transport("httptools", f"{mock_url}/v1", timeout=60, max_connections=orders)
    if client == "httpx-h1":
        return make_transport("httpx", f"{mock_url}/v1", timeout=60, max_connections=orders)
    if client == "httpx-h2":
        return make_transport("httpx", f"{mock_h2_url}/v1", timeout=60, max_connections=orders, h2c=True)
    raise ValueError(f"client must be one of {CLIENTS}")


async def fire(
    client: str,
    tokens: list[str],
    *,
    mock_url: str,
    mock_h2_url: str,
    mock_pid: int | None = None,
    run: str = "b",
    warm: bool = True,
) -> BenchResult:
    """Place one order per session, all at once; the clock and CPU meter run only while they fly.
    `warm` opens the connections first, as the gateway does before its first fan-out."""
    transport = _transport(client, mock_url, mock_h2_url, len(tokens))
    mock = psutil.Process(mock_pid) if mock_pid else None
    try:
        if warm:
            await transport.warm(len(tokens))
        latencies: list[float] = []
        accepted = errors = 0

        async def one(index: int, token: str) -> None:
            nonlocal accepted, errors
            body = json.dumps([{**ORDER, "orderTag": f"{run}{index}"}]).encode()
            started = time.perf_counter()
            try:
                reply = await transport.request(
                    "POST", "/orders", headers={"Authorization": f"Bearer {token}"}, body=body
                )
            except (NotSent, NoReply):
                errors += 1
                return
            latencies.append(time.perf_counter() - started)
            if reply.status == 200 and b'"Success"' in reply.body:
                accepted += 1
            else:
                errors += 1

        mock_before = sum(mock.cpu_times()[:2]) if mock else 0.0
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(i, token) for i, token in enumerate(tokens)))
        wall = time.perf_counter() - wall_before
        cpu = time.process_time() - cpu_before
        mock_cpu = sum(mock.cpu_times()[:2]) - mock_before if mock else None
    finally:
        await transport.close()
    ordered = sorted(latencies) or [0.0]
    return BenchResult(
        client=client,
        orders=len(tokens),
        accepted=accepted,
        errors=errors,
        wall_seconds=round(wall, 3),
        p50_ms=round(statistics.median(ordered) * 1000, 1),
        p99_ms=round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
        cpu_seconds=round(cpu, 3),
        cpu_ms_per_order=round(cpu * 1000 / len(tokens), 3),
        mock_cpu_seconds=round(mock_cpu, 3) if mock_cpu is not None else None,
    )


async def bench(
    orders: int,
    clients: tuple[str, ...] = CLIENTS,
    *,
    mock_url: str,
    mock_h2_url: str,
    mock_pid: int | None = None,
    warm: bool = True,
) -> list[BenchResult]:
    """Each client fires `orders` orders at fresh sessions (a session's tags must not repeat)."""
    results = []
    for number, client in enumerate(clients):
        # Unique per run: repeats start within the same second (tags stay within 20 characters).
        run = f"b{number}{uuid.uuid4().hex[:8]}"
        tokens = await open_sessions(mock_url, orders, prefix=f"{run}c")
        results.append(
            await fire(
                client,
                tokens,
                mock_url=mock_url,
                mock_h2_url=mock_h2_url,
                mock_pid=mock_pid,
                run=run,
                warm=warm,
            )
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mock", default="http://127.0.0.1:18801", help="the mock's HTTP/1.1 base URL")
    parser.add_argument("--mock-h2", default="http://127.0.0.1:18802", help="the mock's h2c base URL")
    parser.add_argument("--mock-pid", type=int, default=None, help="the mock's pid, to report its CPU too")
    parser.add_argument("--orders", type=int, nargs="+", default=[500])
    parser.add_argument("--clients", nargs="+", choices=CLIENTS, default=list(CLIENTS))
    parser.add_argument("--cold", action="store_true", help="do not open connections before timing")
    args = parser.parse_args()

    async def run() -> None:
        for orders in args.orders:
            results = await bench(
                orders,
                tuple(args.clients),
                mock_url=args.mock,
                mock_h2_url=args.mock_h2,
                mock_pid=args.mock_pid,
                warm=not args.cold,
            )
            for result in results:
                print(json.dumps(asdict(result)))

    # The services run on uvloop (copytrade.core.runner); measure the client on the same loop.
    uvloop.run(run())


if __name__ == "__main__":
    main()
