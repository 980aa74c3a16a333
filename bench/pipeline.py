"""The whole pipeline's benchmark: master orders through Envoy to every follower's broker account.

    make bench                                   # N = 10, 100, 500, 1,000, 5,000; ~10 minutes
    python -m bench.pipeline --quick             # a small run (what CI runs to keep this working)
    python -m bench.pipeline --sizes 10 500 --orders 5 --skip-sustained

It starts the whole local stack on embedded servers and free ports in a temporary folder (nothing
is shared with a running `make start`), creates one master per N with N followers (strategies
rotating FIXED_QUANTITY, FIXED_RATIO, PERCENTAGE; each follower with its own linked IIFL account),
sets the mock IIFL to uniform 50-150 ms with its per-session rate limits on, and for each N places
--orders master orders through Envoy's REST API and as many through native gRPC, one at a time,
each after the previous fan-out is done. For each it measures:

- accepted: request to response, at the client;
- first at broker: acceptance to the first follower order's arrival at the mock (before the
  mock's drawn latency, which is the broker's own and not ours);
- fan-out: acceptance to the last follower order recorded with its broker result (the
  replicator's follower_orders.updated_at);
- the bare limit: the same N orders fired straight at the same mock by a plain asyncio client in
  its own process, with the gateway's HTTP client (httptools; aiohttp too, for comparison), median
  of --bare-repeat runs.

Then the sustained runs: each of --rates master orders per second for --seconds, round-robin over masters
with --group-size followers each (disjoint groups, so no account exceeds the broker's 10
orders/s), REST and gRPC alternating; the achieved master and follower orders per second and the
acceptance latency under that load. CPU seconds per process and phase, and each process's peak
memory, come from /proc. Results: a table on stdout, bench-results/pipeline.json and
bench-results/pipeline.png. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import aiohttp

from bench import report
from bench.measure import MasterClient, Placed, ProcessMeter, Record, bare_limit, percentile
from bench.population import Builder, Population
from copytrade.core.settings import PROJECT_ROOT
from stack import LocalStack, free_port_env

RESULTS_DIR = PROJECT_ROOT / "bench-results"
BROKER_LATENCY = {"kind": "uniform", "min_ms": 50, "max_ms": 150}
FANOUT_TIMEOUT_SECONDS = 180.0


def _options(args: argparse.Namespace) -> argparse.Namespace:
    if args.quick:
        args.sizes, args.orders, args.bare_repeat = [10, 30], 2, 1
        args.rates, args.seconds, args.groups, args.group_size = [5.0], 2.0, 2, 10
    return args


def _summary(timings: list, orders: int) -> dict:
    return {
        "orders": len(timings),
        "copies": sum(t.followers for t in timings),
        "placed": sum(t.placed for t in timings),
        "accept_p50_ms": percentile([t.accept_ms for t in timings], 50),
        "accept_p99_ms": percentile([t.accept_ms for t in timings], 99),
        "first_at_broker_p50_ms": percentile([t.first_at_broker_ms for t in timings if t.first_at_broker_ms is not None], 50),
        "first_placed_p50_ms": percentile([t.first_placed_ms for t in timings if t.first_placed_ms is not None], 50),
        "fanout_p50_ms": percentile([t.fanout_ms for t in timings], 50),
        "fanout_p99_ms": percentile([t.fanout_ms for t in timings], 99),
        "missing": orders - len(timings),
    }


def _median_ms(runs: list[dict], client: str) -> float:
    walls = sorted(run["wall_seconds"] for run in runs if run["client"] == client)
    return round(walls[len(walls) // 2] * 1000, 1)


async def measure_size(name: str, population: Population, client: MasterClient, record: Record, orders: int) -> dict:
    master = population.masters[name]
    timings = []
    for number in range(orders * 2):
        protocol = "rest" if number % 2 == 0 else "grpc"
        placed = await client.place(master, protocol)
        done = await record.wait_done([placed.master_order_id], FANOUT_TIMEOUT_SECONDS)
        if not done:
            print(f"  {name}: master order {placed.master_order_id} not done in {FANOUT_TIMEOUT_SECONDS} s", flush=True)
        timings.extend(await record.timings([placed]))
        await asyncio.sleep(0.05)
    last = timings[-1] if timings else None
    if last:
        print(f"  {name}: {len(timings)} master orders; last fan-out {last.fanout_ms} ms, "
              f"{last.placed}/{last.followers} placed", flush=True)
    return {
        "rest": _summary([t for t in timings if t.protocol == "rest"], orders),
        "grpc": _summary([t for t in timings if t.protocol == "grpc"], orders),
        "all": _summary(timings, orders * 2),
        "runs": [asdict(t) for t in timings],
    }


async def sustained(population: Population, client: MasterClient, record: Record, args: argparse.Namespace, rate: float) -> dict:
    masters = [population.masters[f"group-{g}"] for g in range(args.groups)]
    count = int(rate * args.seconds)
    print(f"sustained: {count} master orders at {rate}/s over {len(masters)} masters of {args.group_size} followers", flush=True)
    started = time.perf_counter()
    placed: list[Placed] = []

    async def one(index: int) -> None:
        await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
        placed.append(await client.place(masters[index % len(masters)], "rest" if index % 2 == 0 else "grpc"))

    await asyncio.gather(*(one(i) for i in range(count)))
    sent_in = time.perf_counter() - started
    done = await record.wait_done([p.master_order_id for p in placed], FANOUT_TIMEOUT_SECONDS)
    timings = await record.timings(placed)
    first_accepted = min(p.accepted_at for p in placed)
    accepted_at = {p.master_order_id: p.accepted_at for p in placed}
    last_recorded = max((accepted_at[t.master_order_id] + t.fanout_ms / 1000 for t in timings), default=first_accepted)
    span = max(last_recorded - first_accepted, 1e-3)
    copies = sum(t.followers for t in timings)
    achieved = len(timings) / span
    # Kept up: the last master orders' fan-outs took about as long as the first ones'. When the
    # work comes faster than it is done, a backlog grows and each fan-out waits longer than the last.
    in_order = [t.fanout_ms for t in sorted(timings, key=lambda t: t.master_order_id)]
    first = percentile(in_order[: max(1, len(in_order) // 5)], 50) or 0.0
    last = percentile(in_order[-max(1, len(in_order) // 5) :], 50) or 0.0
    return {
        "offered_per_second": rate,
        "kept_up": last <= 2 * first + 200,
        "seconds": args.seconds,
        "sent_in_seconds": round(sent_in, 2),
        "followers_per_master": args.group_size,
        "masters": len(masters),
        "master_orders": count,
        "done": len(done),
        "copies": copies,
        "placed": sum(t.placed for t in timings),
        "master_orders_per_second": round(achieved, 1),
        "follower_orders_per_second": round(copies / span, 0),
        "accept_p50_ms": percentile([p.accept_ms for p in placed], 50),
        "accept_p99_ms": percentile([p.accept_ms for p in placed], 99),
        "fanout_p50_ms": percentile([t.fanout_ms for t in timings], 50),
        "fanout_p99_ms": percentile([t.fanout_ms for t in timings], 99),
        # Each master order's, in the order they were placed: where in the run the slow ones fell.
        "accept_ms": [p.accept_ms for p in sorted(placed, key=lambda p: p.master_order_id)],
    }


async def run(args: argparse.Namespace) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="copytrade-bench-"))
    env = {
        **free_port_env(data_dir),
        # Embedded servers even when the caller's environment names external ones: the figures are
        # the platform's own, and the benchmark's users stay out of anyone's database.
        "DATABASE_URL": "", "REDIS_URL": "", "NATS_URL": "",
        # Only set-up registers users; the cost factor does not touch the measured path.
        "BCRYPT_ROUNDS": "4",
        "LOG_LEVEL": args.log_level,
        "SHUTDOWN_DRAIN_SECONDS": "0",
    }
    sizes = sorted(args.sizes)
    follows = {f"N={n}": range(n) for n in sizes}
    if not args.skip_sustained:
        follows |= {f"group-{g}": range(g * args.group_size, (g + 1) * args.group_size) for g in range(args.groups)}
    followers = max(max(sizes), 0 if args.skip_sustained else args.groups * args.group_size)
    result: dict = {
        "machine": {"cpus": os.cpu_count()},
        "config": {
            "broker_latency": f"uniform {BROKER_LATENCY['min_ms']}-{BROKER_LATENCY['max_ms']} ms",
            "orders_per_protocol": args.orders,
            "quick": args.quick,
        },
        "sizes": [],
        "cpu_seconds": {},
    }
    try:
        async with LocalStack(env) as stack, aiohttp.ClientSession() as http:
            mock_url = f"http://127.0.0.1:{stack.settings.mock_iifl_port}"
            mock_h2_url = f"http://127.0.0.1:{stack.settings.mock_iifl_h2_port}"
            meter = ProcessMeter({name: p.pid for name, p in stack.processes.items() if p.pid})
            async with http.post(f"{mock_url}/_mock/config", json={"latency": {"kind": "zero"}, "rate_limits": {"enabled": False}}) as reply:
                reply.raise_for_status()
            print(f"set-up: {len(follows)} masters, {followers} followers ...", flush=True)
            cpu = meter.cpu()
            population = await Builder(stack, http, f"{int(time.time()) % 100000}").build(followers, follows)
            result["cpu_seconds"]["set-up"] = meter.spent(cpu, cpu := meter.cpu())
            async with http.post(f"{mock_url}/_mock/config", json={"latency": BROKER_LATENCY, "rate_limits": {"enabled": True}}) as reply:
                reply.raise_for_status()
            client = MasterClient(stack.envoy_url, stack.envoy_target)
            record = Record(stack.database_url, mock_url, http)
            await record.open()
            try:
                # One unmeasured order per master warms every path (connections, caches, JIT-free
                # but lazily imported code) as a running platform would be.
                for name in follows:
                    warm = await client.place(population.masters[name], "rest")
                    await record.wait_done([warm.master_order_id], FANOUT_TIMEOUT_SECONDS)
                await asyncio.sleep(1.1)  # the broker's per-session buckets refill
                for n in sizes:
                    print(f"N={n}: {args.orders} master orders via REST and {args.orders} via gRPC ...", flush=True)
                    cpu = meter.cpu()
                    measured = await measure_size(f"N={n}", population, client, record, args.orders)
                    result["cpu_seconds"][f"N={n}"] = meter.spent(cpu, cpu := meter.cpu())
                    print(f"N={n}: bare limit ...", flush=True)
                    bare = bare_limit(n, mock_url, mock_h2_url, args.bare_repeat)
                    result["sizes"].append(
                        {
                            "followers": n,
                            **measured,
                            "bare_limit_ms": _median_ms(bare, "httptools"),
                            "bare_aiohttp_ms": _median_ms(bare, "aiohttp"),
                            "bare_runs": bare,
                        }
                    )
                    await asyncio.sleep(1.1)
                if not args.skip_sustained:
                    result["sustained"] = []
                    for rate in args.rates:
                        cpu = meter.cpu()
                        result["sustained"].append(await sustained(population, client, record, args, rate))
                        result["cpu_seconds"][f"{rate:g}/s x{args.group_size}"] = meter.spent(cpu, meter.cpu())
                        await asyncio.sleep(1.1)
                async with http.get(f"{mock_url}/_mock/inspect") as reply:
                    inspection = await reply.json()
                result["broker"] = {
                    "duplicates": inspection["totals"]["duplicates"],
                    "rate_limited": inspection["stats"]["rate_limited"]["total"],
                }
                result["peak_memory_mb"] = meter.peak_memory_mb()
            finally:
                await record.close()
                await client.close()
    finally:
        if args.keep_data:
            print(f"the stack's data and logs: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500, 1000, 5000])
    parser.add_argument("--orders", type=int, default=20, help="master orders per N and protocol")
    parser.add_argument("--bare-repeat", type=int, default=3)
    parser.add_argument("--rates", type=float, nargs="+", default=[5.0, 10.0, 20.0], help="sustained master orders per second, one run each")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the sustained run")
    parser.add_argument("--groups", type=int, default=10, help="masters in the sustained run")
    parser.add_argument("--group-size", type=int, default=100, help="followers of each of them")
    parser.add_argument("--skip-sustained", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a small run: N = 10 and 30, 2 orders each")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--log-level", default="WARNING", help="the services' (INFO shows each replication's timeline)")
    parser.add_argument("--keep-data", action="store_true", help="keep the stack's folder and logs (printed)")
    args = _options(parser.parse_args())
    # Plain asyncio: the stack runs PostgreSQL as another user, which uvloop subprocesses cannot.
    result = asyncio.run(run(args))
    report.print_table(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline.json").write_text(json.dumps(result, indent=2))
    report.plot(result, args.out / "pipeline.png")
    print(f"\nwritten: {args.out / 'pipeline.json'} and {args.out / 'pipeline.png'}")


if __name__ == "__main__":
    main()
