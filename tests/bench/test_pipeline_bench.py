"""The pipeline benchmark's short mode, so that `make bench` keeps working. Timings are not checked:
only that it measures what it says (every copy placed, once) and writes its table, JSON and plot."""

import json
import subprocess
import sys

from copytrade.core.settings import PROJECT_ROOT


def test_quick_benchmark_runs_end_to_end_and_writes_its_results(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "bench.pipeline", "--quick", "--out", str(tmp_path)],
        cwd=PROJECT_ROOT,
        check=False,  # the failure's output is shown below
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Fan-out of one master order to N followers" in run.stdout

    result = json.loads((tmp_path / "pipeline.json").read_text())
    assert (tmp_path / "pipeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [size["followers"] for size in result["sizes"]] == [10, 30]
    for size in result["sizes"]:
        for via in ("rest", "grpc"):
            row = size[via]
            assert row["orders"] == 2 and row["missing"] == 0, (size["followers"], via)
            # Every copy of every measured master order reached the broker.
            assert row["placed"] == row["copies"] == 2 * size["followers"], (size["followers"], via)
            assert row["fanout_p50_ms"] > 0 and row["first_at_broker_p50_ms"] is not None
        assert size["bare_limit_ms"] > 0 and size["bare_runs"][0]["accepted"] == size["followers"]
    (sustained,) = result["sustained"]
    assert sustained["done"] == sustained["master_orders"] == 10
    assert sustained["placed"] == sustained["copies"] == 100
    assert result["broker"]["duplicates"] == 0
    assert set(result["peak_memory_mb"]) >= {"auth", "orders", "replicator", "broker_gateway", "envoy"}
