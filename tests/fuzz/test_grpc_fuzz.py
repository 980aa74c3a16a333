"""Generated messages straight at every service's gRPC port: never INTERNAL/UNKNOWN, and all still up.

A short run here (FUZZ_EXAMPLES, default tests.fuzz.support.CI_EXAMPLES per method); `make fuzz`
runs the long one.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from copytrade.core.api_catalog import all_service_names
from gateway.services import PACKAGE_CLUSTERS
from tests.fuzz.grpc_direct import process_of, run_grpc_fuzz
from tests.fuzz.support import examples_per_target, is_full_run


async def test_every_grpc_method_survives_generated_requests(stack, actors, capsys, tallies):
    examples = examples_per_target()
    targets = {name: stack.grpc_target(name) for name in set(PACKAGE_CLUSTERS.values())}
    tally = await asyncio.to_thread(
        run_grpc_fuzz, targets, actors, stack.settings, examples, derandomize=not is_full_run()
    )
    tallies.append(tally)
    with capsys.disabled():
        print("\n" + tally.report())
    assert tally.inputs >= examples * len(all_service_names()), tally.report()
    assert not tally.failures, tally.report()

    # Nothing fell over: every process still runs and every service still answers SERVING.
    stopped = [name for name, process in stack.processes.items() if not process.running]
    assert not stopped, f"stopped during fuzzing: {stopped}"
    for service in all_service_names():
        async with grpc.aio.insecure_channel(stack.grpc_target(process_of(service))) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
