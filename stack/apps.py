"""The project's own processes: the migration step, the gRPC services and the Envoy gateway.

A new process is one entry in APPS: its name and a function from the context to its ProcessSpec
(see grpc_service).
"""

from __future__ import annotations

from collections.abc import Callable
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
            address=f"{settings.grpc_bind_host}:{port}",
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


# Started together after the migrations, stopped together before the backing servers.
SERVICES = ("auth", "orders", "replicator", "broker_gateway")
APPS: tuple[App, ...] = (*(grpc_service(name) for name in SERVICES), mock_iifl())


def migrate_spec(ctx: StackContext) -> ProcessSpec:
    return ProcessSpec(
        name="migrate", argv=python_module("copytrade.core.migrate"), env=ctx.env, cwd=WORKING_DIR
    )


def envoy_config_path(ctx: StackContext) -> Path:
    return ctx.data_dir / ENVOY_CONFIG_DIR / "envoy.yaml"


def gateway_config_spec(ctx: StackContext) -> ProcessSpec:
    return ProcessSpec(
        name="gateway-config",
        argv=python_module("gateway", "--out", str(envoy_config_path(ctx).parent)),
        env=ctx.env,
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
