"""Broker gateway benchmark: ExecuteFanout of N orders to N distinct accounts, against the bare limit.

    python -m bench.broker_fanout                  # N = 500 and 5,000, 3 runs each (make bench-gateway)
    python -m bench.broker_fanout --orders 50 --repeat 1 --gateway-clients aiohttp   # a quick check

For each HTTP client the gateway can use (BROKER_HTTP_CLIENT), it starts the local stack's backing
servers, services and mock IIFL on free ports (or uses DATABASE_URL, REDIS_URL and NATS_URL), links N
IIFL Capital v1 accounts through BrokerAccountService, sets the mock to its default latency (uniform
50-150 ms) with rate limits on, and times ExecuteFanout: wall time to the last result, per-order
latency p50/p99, and the CPU seconds the broker gateway and the mock spent. Next to it, the bare
runs: the same N orders fired straight at the same mock by each candidate client, nothing between.
Results are printed as a table and written to bench-results/broker_fanout.json. Not a test: nothing
here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import grpc
import psutil

from copytrade.broker.v1 import broker_pb2, broker_pb2_grpc
from copytrade.core.settings import PROJECT_ROOT
from copytrade.core.tokens import issue_access_token, issue_service_token
from services.broker_gateway.brokers import bench as bare
from stack import LocalStack, free_port_env

RESULTS = PROJECT_ROOT / "bench-results" / "broker_fanout.json"
DEFAULT_LATENCY = {"kind": "uniform", "min_ms": 50, "max_ms": 150}
SETUP_CONCURRENCY = 100


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def _mock(http: aiohttp.ClientSession, url: str, method: str, path: str, body: dict | None = None) -> dict:
    async with http.request(method, f"{url}/_mock/{path}", json=body) as reply:
        reply.raise_for_status()
        return await reply.json()


async def link_accounts(stack: LocalStack, http: aiohttp.ClientSession, mock_url: str, count: int) -> list[broker_pb2.LinkedAccount]:
    """N v1 accounts, each logged in through the mock's browser-login stand-in and linked."""
    limit = asyncio.Semaphore(SETUP_CONCURRENCY)
    run = f"{int(time.time()) % 1_000_000}"
    async with grpc.aio.insecure_channel(stack.grpc_target("broker_gateway")) as channel:
        stub = broker_pb2_grpc.BrokerAccountServiceStub(channel)

        async def link(index: int) -> broker_pb2.LinkedAccount:
            client_id, user_id = f"BN{run}{index}", int(run) * 100_000 + index + 1
            async with limit:
                code = await _mock(http, mock_url, "POST", "v1/authcode", {"client_id": client_id, "app_secret": "s"})
                token, _ = issue_access_token(stack.settings, user_id, "FOLLOWER")
                reply = await stub.LinkAccount(
                    broker_pb2.LinkAccountRequest(
                        dialect="IIFL_CAPITAL_V1",
                        client_code=client_id,
                        app_key="benchkey",
                        app_secret="s",
                        auth_code=code["auth_code"],
                    ),
                    metadata=(("authorization", f"Bearer {token}"),),
                )
            return reply.account

        return list(await asyncio.gather(*(link(i) for i in range(count))))


def _orders(accounts: list[broker_pb2.LinkedAccount], run: str) -> list[broker_pb2.NewOrder]:
    return [
        broker_pb2.NewOrder(
            account_id=account.id,
            user_id=account.user_id,
            order_id=index + 1,
            instrument=broker_pb2.Instrument(symbol="RELIANCE", exchange=broker_pb2.EXCHANGE_NSE),
            side=broker_pb2.SIDE_BUY,
            order_type=broker_pb2.ORDER_TYPE_LIMIT,
            product=broker_pb2.PRODUCT_MIS,
            quantity=1,
            price="1412.30",
            tag=f"{run}{index}",
        )
        for index, account in enumerate(accounts)
    ]


async def time_fanout(stack: LocalStack, accounts: list[broker_pb2.LinkedAccount], run: str, mock_pid: int) -> dict:
    gateway_pid = stack.processes["broker_gateway"].pid
    assert gateway_pid is not None
    request = broker_pb2.ExecuteFanoutRequest(fanout_id=int(time.time()), orders=_orders(accounts, run))
    metadata = (("authorization", f"Bearer {issue_service_token(stack.settings)}"),)
    latencies: list[int] = []
    async with grpc.aio.insecure_channel(stack.grpc_target("broker_gateway")) as channel:
        stub = broker_pb2_grpc.BrokerGatewayServiceStub(channel)
        gateway_cpu, mock_cpu = _cpu(gateway_pid), _cpu(mock_pid)
        started = time.perf_counter()
        first = None
        summary = None
        messages = 0
        async for message in stub.ExecuteFanout(request, metadata=metadata, timeout=300):
            messages += 1
            if message.results and first is None:
                first = time.perf_counter() - started
            latencies.extend(result.latency_ms for result in message.results)
            if message.HasField("summary"):
                summary = message.summary
        wall = time.perf_counter() - started
        gateway_cpu, mock_cpu = _cpu(gateway_pid) - gateway_cpu, _cpu(mock_pid) - mock_cpu
    latencies.sort()
    assert summary is not None
    return {
        "orders": len(accounts),
        "placed": summary.placed,
        "not_placed": summary.total - summary.placed,
        "wall_seconds": round(wall, 3),
        "first_result_ms": round((first or 0) * 1000, 1),
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "stream_messages": messages,
        "gateway_cpu_seconds": round(gateway_cpu, 3),
        "gateway_cpu_ms_per_order": round(gateway_cpu * 1000 / len(accounts), 3),
        "mock_cpu_seconds": round(mock_cpu, 3),
    }


async def bench_gateway(client: str, sizes: list[int], repeat: int, with_bare: bool) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="copytrade-bench-"))
    env = {**free_port_env(data_dir), "BROKER_HTTP_CLIENT": client, "LOG_LEVEL": "WARNING", "BROKER_WARM_CONNECTIONS": "256"}
    report: dict = {"gateway_client": client, "fanout": [], "bare": []}
    try:
        async with LocalStack(env, until="services") as stack, aiohttp.ClientSession() as http:
            mock_url = f"http://127.0.0.1:{stack.settings.mock_iifl_port}"
            mock_h2_url = f"http://127.0.0.1:{stack.settings.mock_iifl_h2_port}"
            mock_pid = stack.processes["mock_iifl"].pid
            assert mock_pid is not None
            await _mock(http, mock_url, "POST", "config", {"latency": {"kind": "zero"}})
            print(f"[{client}] linking {max(sizes)} accounts ...", flush=True)
            accounts = await link_accounts(stack, http, mock_url, max(sizes))
            await _mock(http, mock_url, "POST", "config", {"latency": DEFAULT_LATENCY, "rate_limits": {"enabled": True}})
            for size in sizes:
                for attempt in range(repeat):
                    # A new tag each run: the same tag in the same session is the broker's dedupe.
                    result = await time_fanout(stack, accounts[:size], f"R{size}x{attempt}t{int(time.time()) % 10000}", mock_pid)
                    report["fanout"].append(result)
                    print(f"[{client}] ExecuteFanout N={size} run {attempt + 1}: {result['wall_seconds']} s, "
                          f"p50 {result['p50_ms']} ms, gateway CPU {result['gateway_cpu_seconds']} s", flush=True)
                    await asyncio.sleep(1.1)  # the per-session order bucket refills
                if with_bare:
                    for bare_result in await bare.bench(size, mock_url=mock_url, mock_h2_url=mock_h2_url, mock_pid=mock_pid):
                        report["bare"].append(bare_result.__dict__ if hasattr(bare_result, "__dict__") else _as_dict(bare_result))
                        print(f"[bare {bare_result.client}] N={size}: {bare_result.wall_seconds} s, "
                              f"p50 {bare_result.p50_ms} ms, client CPU {bare_result.cpu_seconds} s", flush=True)
            inspection = await _mock(http, mock_url, "GET", "inspect")
            report["broker_duplicates"] = inspection["totals"]["duplicates"]
            report["broker_429s"] = inspection["stats"]["rate_limited"]["total"]
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return report


def _as_dict(result) -> dict:
    from dataclasses import asdict

    return asdict(result)


def print_table(reports: list[dict]) -> None:
    print("\nExecuteFanout through the broker gateway (median of runs):")
    print(f"{'client':<9} {'N':>6} {'wall s':>8} {'first ms':>9} {'p50 ms':>8} {'p99 ms':>8} {'gw CPU s':>9} {'ms/order':>9} {'placed':>7}")
    for report in reports:
        sizes = sorted({r["orders"] for r in report["fanout"]})
        for size in sizes:
            runs = [r for r in report["fanout"] if r["orders"] == size]
            mid = sorted(runs, key=lambda r: r["wall_seconds"])[len(runs) // 2]
            print(f"{report['gateway_client']:<9} {size:>6} {mid['wall_seconds']:>8} {mid['first_result_ms']:>9} "
                  f"{mid['p50_ms']:>8} {mid['p99_ms']:>8} {mid['gateway_cpu_seconds']:>9} "
                  f"{mid['gateway_cpu_ms_per_order']:>9} {mid['placed']:>7}")
        print(f"  broker saw {report['broker_duplicates']} duplicate orders and served {report['broker_429s']} 429s")
    bare_rows = [row for report in reports for row in report["bare"]]
    if bare_rows:
        print("\nBare clients straight at the mock (no platform):")
        print(f"{'client':<9} {'N':>6} {'wall s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU s':>7} {'ms/order':>9} {'ok':>6}")
        for row in bare_rows:
            print(f"{row['client']:<9} {row['orders']:>6} {row['wall_seconds']:>8} {row['p50_ms']:>8} "
                  f"{row['p99_ms']:>8} {row['cpu_seconds']:>7} {row['cpu_ms_per_order']:>9} {row['accepted']:>6}")


async def main(args: argparse.Namespace) -> None:
    reports = []
    for number, client in enumerate(args.gateway_clients):
        # The bare runs do not depend on the gateway's client: measure them once.
        reports.append(await bench_gateway(client, args.orders, args.repeat, with_bare=number == 0 and not args.no_bare))
    print_table(reports)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": {"cpus": os.cpu_count()}, "reports": reports}, indent=2))
    print(f"\nwritten to {RESULTS.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--gateway-clients", nargs="+", choices=("httptools", "aiohttp", "httpx"), default=["httptools", "aiohttp", "httpx"]
    )
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-client runs")
    # Plain asyncio: the stack runs PostgreSQL as another user, which uvloop subprocesses cannot.
    asyncio.run(main(parser.parse_args()))
