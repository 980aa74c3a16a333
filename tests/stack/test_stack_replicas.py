"""With REPLICATOR_REPLICAS=2 and BROKER_GATEWAY_REPLICAS=2, Envoy's clusters hold every replica and
calls through Envoy are answered by each of them (Envoy's per-host request counts, admin /clusters).

How the replicas share the master orders (one durable JetStream consumer) is tests/faults/test_replicas.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections import defaultdict

import httpx
import pytest
import yaml

from copytrade.core.settings import PROJECT_ROOT
from stack import LocalStack, apps, free_port_env
from tests.e2e.flows import register_and_login
from tests.support.stack import package_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

REPLICATED = ("replicator", "broker_gateway")
CALLS = 20


def hosts(clusters_text: str) -> dict[str, dict[str, dict[str, str]]]:
    """admin /clusters as cluster -> host -> stat -> value (lines `cluster::host:port::stat::value`)."""
    table: dict[str, dict[str, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
    for line in clusters_text.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and ":" in parts[1]:
            table[parts[0]][parts[1]][parts[2]] = parts[3]
    return table


def requests_per_host(table: dict, cluster: str) -> dict[str, int]:
    return {host: int(stats.get("rq_total", 0)) for host, stats in table[cluster].items()}


def gateway_targets(env: dict[str, str]) -> dict[str, str]:
    spec = apps.gateway_config_spec(LocalStack(env).context)
    return {key: value for key, value in spec.env.items() if key.endswith("_GRPC_TARGET")}


def test_the_gateway_config_gets_every_replica_as_its_target(scratch) -> None:
    env = {**free_port_env(scratch), "REPLICATOR_REPLICAS": "2", "BROKER_GATEWAY_REPLICAS": "3"}
    env |= {"REPLICATOR_GRPC_PORT_2": "41002", "BROKER_GATEWAY_GRPC_PORT_2": "41003"}
    env |= {"BROKER_GATEWAY_GRPC_PORT_3": "41004"}
    replicator, gateway = env["REPLICATOR_GRPC_PORT"], env["BROKER_GATEWAY_GRPC_PORT"]
    assert gateway_targets(env) == {
        "REPLICATOR_GRPC_TARGET": f"ipv4:127.0.0.1:{replicator},127.0.0.1:41002",
        "BROKER_GATEWAY_GRPC_TARGET": f"ipv4:127.0.0.1:{gateway},127.0.0.1:41003,127.0.0.1:41004",
    }
    # A target set by the operator is theirs; one replica needs no list.
    explicit = {**env, "REPLICATOR_GRPC_TARGET": "replicator:50053", "BROKER_GATEWAY_REPLICAS": "1"}
    assert gateway_targets(explicit) == {"REPLICATOR_GRPC_TARGET": "replicator:50053"}


@pytest.fixture(scope="module")
async def stack(backing):
    replicas = {"REPLICATOR_REPLICAS": "2", "BROKER_GATEWAY_REPLICAS": "2"}
    # Metrics are not under test here: off, so the replicas need no metrics ports of their own.
    replicas |= {"REPLICATOR_METRICS_PORT": "0", "BROKER_GATEWAY_METRICS_PORT": "0"}
    async with package_stack(backing, "replicas", **replicas) as running:
        yield running


async def test_envoy_balances_public_calls_over_every_replica(stack, unique) -> None:
    expected = {
        name: {
            f"127.0.0.1:{stack.settings.grpc_port(name)}",
            f"127.0.0.1:{stack.env[f'{name.upper()}_GRPC_PORT_2']}",
        }
        for name in REPLICATED
    }
    async with (
        httpx.AsyncClient(base_url=stack.envoy_admin_url, timeout=5) as admin,
        httpx.AsyncClient(base_url=stack.envoy_url, timeout=30) as rest,
    ):
        # Both replicas of each are hosts of its cluster, and pass Envoy's gRPC health checks.
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            table = hosts((await admin.get("/clusters")).text)
            healthy = {
                name: {host for host, stats in table[name].items() if stats.get("health_flags") == "healthy"}
                for name in REPLICATED
            }
            if healthy == expected or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        assert {name: set(table[name]) for name in REPLICATED} == expected
        assert healthy == expected

        user = await register_and_login(rest, unique, "FOLLOWER")
        before = hosts((await admin.get("/clusters")).text)
        for _ in range(CALLS):
            # ListMasters is served by the replicator, GetLinkedAccount by the broker gateway (404: none linked).
            assert (await rest.get("/api/masters", headers=user["headers"])).status_code == 200
            linked = await rest.get("/api/broker/accounts/me", headers=user["headers"])
            assert linked.status_code == 404, linked.text
        after = hosts((await admin.get("/clusters")).text)

    for name in REPLICATED:
        served = {
            host: count - requests_per_host(before, name).get(host, 0)
            for host, count in requests_per_host(after, name).items()
        }
        # Health checks are not requests: the counts are the calls, split between the replicas.
        assert sum(served.values()) == CALLS, (name, served)
        assert all(count >= CALLS // 4 for count in served.values()), (name, served)


async def test_the_compose_envoy_healthcheck_reads_envoy_ready(stack) -> None:
    """docker-compose.yml's Envoy healthcheck command, run against this stack's Envoy admin port."""
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    _, shell, flag, script = compose["services"]["envoy"]["healthcheck"]["test"]

    async def check(admin_port: int) -> int:
        command = script.replace("/9901", f"/{admin_port}")
        run = await asyncio.create_subprocess_exec(shell, flag, command, stderr=asyncio.subprocess.DEVNULL)
        return await asyncio.wait_for(run.wait(), timeout=10)

    assert await check(stack.settings.envoy_admin_port) == 0
    with socket.socket() as unused:  # bound, not listening: an Envoy that is down
        unused.bind(("127.0.0.1", 0))
        assert await check(unused.getsockname()[1]) != 0
