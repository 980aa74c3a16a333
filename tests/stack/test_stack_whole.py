"""The whole local stack, as `python -m stack` runs it, on free ports: up, serving through Envoy, down."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from copytrade.core import scheduling
from stack import LocalStack, free_port_env, process_names
from stack.probes import grpc_serving

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def test_the_whole_stack_starts_in_order_serves_and_stops(scratch: Path) -> None:
    # No drain pause: nothing is in flight, and the test should not wait for Envoy to notice.
    # DATABASE_URL, REDIS_URL and NATS_URL, when CI sets them, are used instead of embedded servers.
    env = {**free_port_env(scratch / "data"), "SHUTDOWN_DRAIN_SECONDS": "0"}
    one_shots = {"migrate", "gateway-config"}
    async with LocalStack(env) as stack:
        expected = [name for name in process_names() if name not in one_shots | set(stack.external)]
        assert list(stack.processes) == expected
        assert await grpc_serving(stack.envoy_target)
        for name in ("auth", "orders", "replicator", "broker_gateway"):
            assert await grpc_serving(stack.grpc_target(name))
        for name in one_shots:
            assert (stack.data_dir / "logs" / f"{name}.log").exists()
        if scheduling.supported():
            # The fan-out gives way to the accept path on the machine they share; every thread.
            policies = {
                name: {
                    scheduling.current(thread.id)
                    for thread in psutil.Process(stack.processes[name].pid).threads()
                }
                for name in ("auth", "orders", "replicator", "broker_gateway", "orders_projection", "envoy")
            }
            idle = {"replicator", "broker_gateway", "orders_projection"}
            assert policies == {name: {"idle" if name in idle else "normal"} for name in policies}
        pids = [process.pid for process in stack.processes.values()]
    assert not [pid for pid in pids if psutil.pid_exists(pid)]
    assert not (stack.data_dir / "stack.pids").exists()
