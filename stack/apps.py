"""The project's own processes: the migration step, the gRPC services and the Envoy gateway.

A new process is one entry in APPS: its name and a function from the context to its ProcessSpec
(see grpc_service).
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

from stack import probes
from stack.context import WORKING_DIR, StackContext, python_module
from stack.processes import ProcessSpec

SpecBuilder = Callable[[StackContext], ProcessSpec]


class App(NamedTuple):
    name: str
    spec: SpecBuilder


ENVOY_CONFIG_DIR = "envoy"
MIGRATE_TIMEOUT = 180.0
GATEWAY_CONFIG_TIMEOUT = 60.0


def _loopback(host: str) -> str:
    # A wildcard bind is reached on loopback; a specific address is reached where it is.
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _metrics_address(port: int) -> str:
    return f" (metrics :{port}/metrics)" if port else ""


def grpc_service(name: str, module: str | None = None) -> App:
    """A `python -m services.<name>` gRPC server on its <name>_grpc_port, ready when health says SERVING."""

    def build(ctx: StackContext) -> ProcessSpec:
        settings = ctx.settings
        port = settings.grpc_port(name)
        target = f"{_loopback(settings.grpc_bind_host)}:{port}"
        return ProcessSpec(
            name=name,
            argv=python_module(module or f"services.{name}"),
            env=ctx.env,
            address=f"{settings.grpc_bind_host}:{port}" + _metrics_address(settings.metrics_port(name)),
            ready=lambda: probes.grpc_serving(target),
            # The service drains (health NOT_SERVING so Envoy moves away) before its grace period.
            stop_timeout=settings.shutdown_drain_seconds + settings.shutdown_grace_seconds + 5,
            cwd=WORKING_DIR,
        )

    return App(name, build)


def mock_iifl() -> App:
    """The mock IIFL broker (`python -m mock_iifl`), ready when GET /_mock/health answers 200.

    It serves the broker gateway's default base URLs (settings.broker_base_url); the gateway does not
    call it at start, so it starts with the services rather than before them.
    """

    def build(ctx: StackContext) -> ProcessSpec:
        settings = ctx.settings
        port = settings.mock_iifl_port
        return ProcessSpec(
            name="mock_iifl",
            argv=python_module("mock_iifl"),
            env=ctx.env,
            address=f"127.0.0.1:{port} (h2c :{settings.mock_iifl_h2_port})",
            ready=lambda: probes.http_ok("127.0.0.1", port, "/_mock/health"),
            cwd=WORKING_DIR,
        )

    return App("mock_iifl", build)


def orders_projection() -> App:
    """The orders read model's projection (`python -m services.orders.projector`), which the stack
    runs apart from the orders service (ORDERS_PROJECTION_IN_PROCESS=false, set by the launcher) so
    that PlaceOrder's event loop never waits behind a batch of follower-order updates. Ready when
    its metrics answer, which it serves once the projection's consumer is subscribed."""

    def build(ctx: StackContext) -> ProcessSpec:
        port = ctx.settings.metrics_port("orders_projection")
        host = _loopback(ctx.settings.grpc_bind_host)
        return ProcessSpec(
            name="orders_projection",
            argv=python_module("services.orders.projector"),
            env=ctx.env,
            address=f"{host}:{port}/metrics" if port else "",
            ready=(lambda: probes.http_ok(host, port, "/metrics")) if port else None,
            cwd=WORKING_DIR,
        )

    return App("orders_projection", build)


# Started together after the migrations, stopped together before the backing servers.
SERVICES = ("auth", "orders", "replicator", "broker_gateway")
APPS: tuple[App, ...] = (*(grpc_service(name) for name in SERVICES), orders_projection(), mock_iifl())

# Services the stack can run more than once, and the variable that says how many times (default 1).
# Replica 1 is the service as always (its name, its <name>_grpc_port); replica i is named
# "<name>-<i>" and listens on <NAME>_GRPC_PORT_<i> (a free port when unset).
# Replicators share the durable JetStream consumer, so they split the master orders; with more than
# one broker gateway every replicator gets all of them as its BROKER_GATEWAY_GRPC_TARGET (unless that
# is set), a list its channel balances round-robin. Envoy gets every replica of each in its
# <NAME>_GRPC_TARGET (replica_target) and balances them round robin; the other services keep replica 1.
REPLICA_VARIABLES = {"replicator": "REPLICATOR_REPLICAS", "broker_gateway": "BROKER_GATEWAY_REPLICAS"}
MAX_REPLICAS = 8


def replicas(env: Mapping[str, str], name: str) -> int:
    """How many replicas of a service the environment asks for (1 for a service that has no variable)."""
    variable = REPLICA_VARIABLES.get(name)
    raw = (env.get(variable) or "").strip() if variable else ""
    if not raw:
        return 1
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_REPLICAS:
        raise ValueError(f"{variable} must be a whole number from 1 to {MAX_REPLICAS}, not {raw!r}")
    return int(raw)


def replica_port_variable(name: str, index: int) -> str:
    return f"{name.upper()}_GRPC_PORT_{index}"


def replica_metrics_port_variable(name: str, index: int) -> str:
    return f"{name.upper()}_METRICS_PORT_{index}"


def replica_port_env(env: Mapping[str, str]) -> dict[str, str]:
    """A free loopback port for every extra replica whose gRPC or metrics port variable is unset,
    as variables."""
    chosen: dict[str, str] = {}
    sockets = []
    try:
        for name in REPLICA_VARIABLES:
            for index in range(2, replicas(env, name) + 1):
                for variable in (replica_port_variable(name, index), replica_metrics_port_variable(name, index)):
                    if env.get(variable):
                        continue
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    sockets.append(sock)  # held until all are chosen, so no two replicas share a port
                    sock.bind(("127.0.0.1", 0))
                    chosen[variable] = str(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    return chosen


def replica_ports(ctx: StackContext, name: str) -> list[int]:
    """The gRPC port of every replica of a service, replica 1 first."""
    ports = [ctx.settings.grpc_port(name)]
    for index in range(2, replicas(ctx.env, name) + 1):
        variable = replica_port_variable(name, index)
        value = ctx.env.get(variable, "")
        if not value.isdigit() or not 1 <= int(value) <= 65535:
            raise ValueError(f"{variable} must be a port number, not {value!r}")
        ports.append(int(value))
    return ports


def replica_metrics_port(ctx: StackContext, name: str, index: int) -> int:
    """The metrics port of replica `index` (> 1): <NAME>_METRICS_PORT_<i>, or 0 (none) when the
    service's own metrics are off or the variable is unset."""
    if ctx.settings.metrics_port(name) == 0:
        return 0
    variable = replica_metrics_port_variable(name, index)
    value = ctx.env.get(variable, "")
    if value and (not value.isdigit() or not 0 <= int(value) <= 65535):
        raise ValueError(f"{variable} must be a port number, not {value!r}")
    return int(value or 0)


def replica_target(ctx: StackContext, name: str) -> str | None:
    """Every replica of a service as one gRPC target, `ipv4:HOST:P1,HOST:P2`, which grpcio channels
    and the gateway's Envoy clusters both accept; None when it runs once or its target is set."""
    ports = replica_ports(ctx, name)
    if len(ports) < 2 or ctx.env.get(f"{name.upper()}_GRPC_TARGET"):
        return None
    host = _loopback(ctx.settings.grpc_bind_host)
    return "ipv4:" + ",".join(f"{host}:{port}" for port in ports)


def service_specs(ctx: StackContext) -> list[ProcessSpec]:
    """The services stage: every app of APPS, each followed by its extra replicas."""
    gateway_target = replica_target(ctx, "broker_gateway")
    specs: list[ProcessSpec] = []
    for app in APPS:
        ports = replica_ports(ctx, app.name) if app.name in REPLICA_VARIABLES else [None]
        for index, port in enumerate(ports, start=1):
            env = dict(ctx.env)
            updates: dict[str, object] = {}
            if port is not None and index > 1:
                env[f"{app.name.upper()}_GRPC_PORT"] = str(port)
                updates[f"{app.name}_grpc_port"] = port
                metrics_port = replica_metrics_port(ctx, app.name, index)
                env[f"{app.name.upper()}_METRICS_PORT"] = str(metrics_port)
                updates[f"{app.name}_metrics_port"] = metrics_port
            if app.name == "replicator" and gateway_target:
                env["BROKER_GATEWAY_GRPC_TARGET"] = gateway_target
                updates["broker_gateway_grpc_target"] = gateway_target
            replica_ctx = StackContext(ctx.settings.model_copy(update=updates), env) if updates else ctx
            spec = app.spec(replica_ctx)
            if index > 1:
                spec = dataclasses.replace(spec, name=f"{app.name}-{index}")
            specs.append(spec)
    return specs


def migrate_spec(ctx: StackContext) -> ProcessSpec:
    return ProcessSpec(
        name="migrate", argv=python_module("copytrade.core.migrate"), env=ctx.env, cwd=WORKING_DIR
    )


def envoy_config_path(ctx: StackContext) -> Path:
    return ctx.data_dir / ENVOY_CONFIG_DIR / "envoy.yaml"


def gateway_config_spec(ctx: StackContext) -> ProcessSpec:
    # Envoy's cluster of a replicated service lists every replica, so calls through it reach them all.
    targets = {name: replica_target(ctx, name) for name in REPLICA_VARIABLES}
    env = {**ctx.env, **{f"{name.upper()}_GRPC_TARGET": target for name, target in targets.items() if target}}
    return ProcessSpec(
        name="gateway-config",
        argv=python_module("gateway", "--out", str(envoy_config_path(ctx).parent)),
        env=env,
        cwd=WORKING_DIR,
    )


def envoy_spec(ctx: StackContext) -> ProcessSpec:
    # Imported here: only the Envoy step needs the gateway package and its Envoy binary.
    from gateway import process as gateway_process
    from gateway.config import BIND_HOST_ENV

    settings = ctx.settings
    listen_host = ctx.env.get(BIND_HOST_ENV) or "127.0.0.1"
    admin_port = settings.envoy_admin_port

    async def ready() -> bool:
        # One pass of the gateway's own check (admin /ready, then a healthy host in every cluster);
        # the launcher's loop repeats it and reports what Envoy still waited for if it never passes.
        await gateway_process.wait_ready(admin_port, timeout=0)
        return True

    return ProcessSpec(
        name="envoy",
        argv=[
            gateway_process.envoy_binary(),
            "-c", str(envoy_config_path(ctx)),
            "--log-level", "warn",
            # No hot-restart shared memory, so a test's Envoy and a running stack's coexist.
            "--disable-hot-restart",
        ],
        env=ctx.env,
        address=f"{listen_host}:{settings.envoy_port} (admin :{admin_port})",
        ready=ready,
        cwd=WORKING_DIR,
    )  # fmt: skip
