"""The pipeline benchmark's table and plot."""

from __future__ import annotations

from pathlib import Path

# ../shared/seed-README.md: "10 followers in about 300 ms", "500 followers in under 30 seconds".
SEED_CLAIMS_MS = {10: 300.0, 500: 30_000.0}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def print_table(result: dict) -> None:
    print("\nFan-out of one master order to N followers (p50/p99 over the master orders; ms)")
    header = (
        f"{'N':>6} {'via':<5} {'orders':>6} {'accept p50':>10} {'p99':>6} {'1st@broker p50':>14} "
        f"{'fan-out p50':>11} {'p99':>7} {'bare':>7} {'x bare':>6} {'placed':>9}"
    )
    print(header)
    print("-" * len(header))
    for size in result["sizes"]:
        bare = size["bare_limit_ms"]
        for via in ("rest", "grpc", "all"):
            row = size[via]
            ratio = row["fanout_p50_ms"] / bare if bare and row["fanout_p50_ms"] else None
            print(
                f"{size['followers']:>6} {via:<5} {row['orders']:>6} {_fmt(row['accept_p50_ms']):>10} "
                f"{_fmt(row['accept_p99_ms']):>6} {_fmt(row['first_at_broker_p50_ms']):>14} "
                f"{_fmt(row['fanout_p50_ms']):>11} {_fmt(row['fanout_p99_ms']):>7} {_fmt(bare):>7} "
                f"{'-' if ratio is None else f'{ratio:.2f}':>6} {row['placed']:>4}/{row['copies']:<4}"
            )
    for run in result.get("sustained", []):
        print(
            f"\nSustained: {run['offered_per_second']:g} master orders/s offered for {run['seconds']:g} s, "
            f"{run['followers_per_master']} followers each ({'kept up' if run['kept_up'] else 'fell behind'})"
        )
        print(
            f"  achieved {run['master_orders_per_second']} master orders/s, "
            f"{run['follower_orders_per_second']:.0f} follower orders/s; "
            f"accept p50 {_fmt(run['accept_p50_ms'])} ms, p99 {_fmt(run['accept_p99_ms'])} ms; "
            f"fan-out p50 {_fmt(run['fanout_p50_ms'])} ms, p99 {_fmt(run['fanout_p99_ms'])} ms; "
            f"placed {run['placed']}/{run['copies']}"
        )
    print("\nCPU seconds per process (by phase) and peak memory (MB):")
    names = list(result["peak_memory_mb"])
    print(f"{'phase':<14}" + "".join(f"{name[:12]:>13}" for name in names))
    for phase, spent in result["cpu_seconds"].items():
        print(f"{phase:<14}" + "".join(f"{spent.get(name, 0):>13.2f}" for name in names))
    print(f"{'peak MB':<14}" + "".join(f"{result['peak_memory_mb'][name]:>13.0f}" for name in names))


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [s["followers"] for s in result["sizes"]]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for via, marker in (("rest", "o"), ("grpc", "s")):
        ax.plot(sizes, [s[via]["fanout_p50_ms"] for s in result["sizes"]], marker=marker, label=f"Copytrade fan-out p50 ({'REST' if via == 'rest' else 'gRPC'})")
    ax.plot(sizes, [s["bare_limit_ms"] for s in result["sizes"]], "k--", label="bare limit: the gateway's HTTP client straight at the mock")
    ax.plot(sizes, [2 * s["bare_limit_ms"] for s in result["sizes"]], ":", color="grey", label="2x bare limit (target)")
    if all(s.get("bare_aiohttp_ms") for s in result["sizes"]):
        ax.plot(sizes, [s["bare_aiohttp_ms"] for s in result["sizes"]], "-.", color="tab:green", label="bare, with aiohttp")
    ax.scatter(list(SEED_CLAIMS_MS), list(SEED_CLAIMS_MS.values()), marker="x", s=80, color="red", zorder=5, label="seed's claims")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("followers (N)")
    ax.set_ylabel("master order accepted -> last follower order recorded (ms)")
    ax.set_title(f"Fan-out time against N (mock broker {result['config']['broker_latency']})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(result: dict) -> str:
    """The README's tables, from a result file: `python -m bench.report bench-results/pipeline.json`."""
    lines = [
        "| N | via | master orders | accepted p50 / p99 | first copy at broker p50 | fan-out p50 / p99 | bare limit (with aiohttp) | fan-out / bare | copies placed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in result["sizes"]:
        bare = size["bare_limit_ms"]
        aiohttp = f" ({_fmt(size['bare_aiohttp_ms'])} ms)" if size.get("bare_aiohttp_ms") else ""
        for via in ("rest", "grpc"):
            row = size[via]
            lines.append(
                f"| {size['followers']:,} | {via.upper() if via == 'rest' else 'gRPC'} | {row['orders']} "
                f"| {_fmt(row['accept_p50_ms'])} / {_fmt(row['accept_p99_ms'])} ms "
                f"| {_fmt(row['first_at_broker_p50_ms'])} ms "
                f"| **{_fmt(row['fanout_p50_ms'])}** / {_fmt(row['fanout_p99_ms'])} ms | {_fmt(bare)} ms{aiohttp} "
                f"| {row['fanout_p50_ms'] / bare:.2f}x | {row['placed']:,} / {row['copies']:,} |"
            )
    if result.get("sustained"):
        lines += [
            "",
            "| offered | followers each | kept up | achieved master / follower orders per s | accepted p50 / p99 | fan-out p50 / p99 | copies placed |",
            "|---|---|---|---|---|---|---|",
        ]
        for run in result["sustained"]:
            lines.append(
                f"| {run['offered_per_second']:g}/s for {run['seconds']:g} s | {run['followers_per_master']} "
                f"| {'yes' if run['kept_up'] else 'no'} | {run['master_orders_per_second']} / "
                f"{run['follower_orders_per_second']:,.0f} | {_fmt(run['accept_p50_ms'])} / "
                f"{_fmt(run['accept_p99_ms'])} ms | {_fmt(run['fanout_p50_ms'])} / {_fmt(run['fanout_p99_ms'])} ms "
                f"| {run['placed']:,} / {run['copies']:,} |"
            )
    names = list(result["peak_memory_mb"])
    lines += ["", "| phase | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for phase, spent in result["cpu_seconds"].items():
        lines.append(f"| CPU s, {phase} | " + " | ".join(f"{spent.get(n, 0):.1f}" for n in names) + " |")
    lines.append("| peak memory, MB | " + " | ".join(f"{result['peak_memory_mb'][n]:.0f}" for n in names) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import sys

    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
