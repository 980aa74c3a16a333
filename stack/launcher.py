"""The order of the stack: each stage starts only once the one before it serves, and stops after it.

    backing   PostgreSQL, Redis, NATS (each unless its URL variable names an external server)
    migrate   `python -m copytrade.core.migrate`, once, to completion
    services  the gRPC services of apps.APPS, ready when their health Check says SERVING
    gateway   `python -m gateway --out DATA_DIR/envoy`, then Envoy, ready when every cluster is healthy

The processes of one stage start together and stop together: they do not depend on each other, and
on two cores starting four Python services one by one would double the wait.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

from copytrade.core import scheduling
from copytrade.core.settings import Settings
from stack import apps, embedded, probes
from stack.context import EXTERNAL_URL_VARIABLES, StackContext, external_servers, settings_from_env
from stack.pidfile import PidFile
from stack.processes import ManagedProcess, ProcessSpec, StartupError, gather_or_cancel, stop_all

STAGES = ("backing", "migrate", "services", "gateway")
BACKING = tuple(EXTERNAL_URL_VARIABLES)
_DEFAULT_PORTS = {"postgres": 5432, "redis": 6379, "nats": 4222}

log = logging.getLogger("stack")


def process_names(until: str = STAGES[-1]) -> list[str]:
    """Every process and step the stack runs up to a stage, in start order (external servers included)."""
    names = {
        "backing": list(BACKING),
        "migrate": ["migrate"],
        "services": [app.name for app in apps.APPS],
        "gateway": ["gateway-config", "envoy"],
    }
    return [name for stage in STAGES[: STAGES.index(until) + 1] for name in names[stage]]


# The stack's own default: everything it runs shares this machine's cores.
_FANOUT_SCHED_POLICY = "idle" if scheduling.supported() else "normal"


class LocalStack:
    """The platform as local processes: `async with LocalStack(env) as stack: ...`.

    env is laid over os.environ for every child; give it free ports and a temp DATA_DIR to run beside
    another stack (stack.free_port_env). DATABASE_URL, REDIS_URL or NATS_URL in it (or in os.environ)
    name an external server that is used instead of the embedded one; set to "" they ask for the
    embedded one whatever os.environ says. `until` stops after a stage, e.g. "backing" for only the
    servers.

    Run as root, the embedded PostgreSQL runs as an unprivileged user, which must be able to traverse
    every parent of DATA_DIR. Avoid pytest's tmp_path there: each new pytest session resets
    /tmp/pytest-of-root to 0700; tempfile.mkdtemp() is fine.
    """

    def __init__(self, env: Mapping[str, str] | None = None, *, until: str = STAGES[-1]) -> None:
        if until not in STAGES:
            raise ValueError(f"until must be one of {', '.join(STAGES)}, not {until!r}")
        caller = {**os.environ, **(env or {})}
        # An empty URL variable asks for the embedded server, like an unset one.
        for variable in EXTERNAL_URL_VARIABLES.values():
            if not caller.get(variable):
                caller.pop(variable, None)
        self.external = external_servers(caller)
        settings = settings_from_env(caller)
        own = embedded.embedded_urls(settings)
        child_env = {
            **caller,
            **{var: self.external.get(name, own[name]) for name, var in EXTERNAL_URL_VARIABLES.items()},
            # Absolute, because the children do not all run in the caller's working directory.
            "DATA_DIR": str(settings.data_dir.resolve()),
            # Logs reach the file as they are written, so a failure's tail is current.
            "PYTHONUNBUFFERED": "1",
            # The orders read model is projected by a process of its own (apps.orders_projection).
            "ORDERS_PROJECTION_IN_PROCESS": "false",
            # Everything shares this machine's cores: the fan-out gives way to the accept path
            # (copytrade/core/scheduling.py), unless the caller says otherwise.
            "FANOUT_SCHED_POLICY": caller.get("FANOUT_SCHED_POLICY") or _FANOUT_SCHED_POLICY,
        }
        # Ports for extra replicas of a service (REPLICATOR_REPLICAS=2 ...), where none is given.
        child_env.update(apps.replica_port_env(child_env))
        self.context = StackContext(settings_from_env(child_env), child_env)
        self.until = until
        self._stages: list[list[ManagedProcess]] = []
        self._pidfile = PidFile(self.context.data_dir)
        self._owns_data_dir = False

    # --- what runs where ------------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self.context.settings

    @property
    def env(self) -> Mapping[str, str]:
        """The environment every child got: use it to start one more process against this stack."""
        return self.context.env

    @property
    def data_dir(self) -> Path:
        return self.context.data_dir

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    @property
    def redis_url(self) -> str:
        return self.settings.redis_url

    @property
    def nats_url(self) -> str:
        return self.settings.nats_url

    def grpc_target(self, service: str) -> str:
        return self.settings.grpc_target(service)

    @property
    def envoy_target(self) -> str:
        """Envoy's listener as a gRPC target (native gRPC, grpc-web and REST share it)."""
        return f"127.0.0.1:{self.settings.envoy_port}"

    @property
    def envoy_url(self) -> str:
        return f"http://{self.envoy_target}"

    @property
    def envoy_admin_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.envoy_admin_port}"

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        """The running processes by name, in start order."""
        return {process.name: process for stage in self._stages for process in stage}

    def process(self, name: str) -> ManagedProcess:
        """One process of the stack by name (as in `processes`)."""
        try:
            return self.processes[name]
        except KeyError:
            raise KeyError(f"no process {name!r} in this stack; it runs {', '.join(self.processes)}") from None

    async def kill(self, name: str) -> int | None:
        """kill -9 one process by name (a crash, for fault tests); it stays down until restart(name).

        Returns its exit code. The rest of the stack is left as it is.
        """
        process = self.process(name)
        code = await process.kill()
        self._pidfile.record(self.processes.values())
        return code

    def signal(self, name: str, sig: signal.Signals) -> None:
        """Send one process a signal, e.g. SIGSTOP then SIGCONT to freeze it for a while."""
        self.process(name).send_signal(sig)

    async def restart(self, name: str, *, kill: bool = False) -> ManagedProcess:
        """Start one process again with the same spec and wait until it serves.

        A process still running is stopped first: its stop signal, or SIGKILL with kill=True.
        """
        process = self.process(name)
        if process.running:
            await (process.kill() if kill else process.stop())
        began = time.monotonic()
        try:
            await process.start()
        finally:
            self._pidfile.record(self.processes.values())
        await process.wait_ready()
        log.info("restarted: %s (%.1fs)", name, time.monotonic() - began)
        return process

    def table(self) -> str:
        rows = [("NAME", "PID", "ADDRESS", "LOG")]
        for name, url in self.external.items():
            rows.append((name, "-", f"external {_redact(url)}", "-"))
        for process in self.processes.values():
            rows.append((process.name, str(process.pid), process.spec.address, str(process.log_path)))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
            for row in rows
        )

    # --- start and stop -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> Self:
        """Start every stage up to `until`; on any failure (or cancellation) stop what started, and raise."""
        self.context.log_dir.mkdir(parents=True, exist_ok=True)
        await self._pidfile.claim()
        self._owns_data_dir = True
        try:
            for stage in STAGES[: STAGES.index(self.until) + 1]:
                await getattr(self, f"_start_{stage}")()
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        """Stop the stages in reverse order; within a stage, all processes at once."""
        while self._stages:
            stage = self._stages.pop()
            log.info("stopping %s", ", ".join(process.name for process in stage))
            await stop_all(stage)
            if self._owns_data_dir:
                self._pidfile.record(self.processes.values())
        if self._owns_data_dir:
            self._pidfile.release()
            self._owns_data_dir = False

    async def wait_for_exit(self) -> ManagedProcess:
        """Return the first running process that exits (for a supervisor: none should)."""
        waiters = {asyncio.ensure_future(process.wait()): process for process in self.processes.values()}
        if not waiters:
            raise RuntimeError("no process is running")
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return waiters[done.pop()]

    # --- the stages -----------------------------------------------------------------------------------

    async def _start_backing(self) -> None:
        ctx = self.context
        for name, url in self.external.items():
            try:
                await asyncio.wait_for(probes.tcp_reachable(url, _DEFAULT_PORTS[name]), timeout=5)
            except (OSError, TimeoutError) as exc:
                var = EXTERNAL_URL_VARIABLES[name]
                raise StartupError(f"{var}={_redact(url)} is not reachable: {exc or 'timed out'}") from None
            log.info("using external %s at %s", name, _redact(url))
        specs: list[ProcessSpec] = []
        if "postgres" not in self.external:
            user = await embedded.prepare_postgres(ctx)
            specs.append(embedded.postgres_spec(ctx, user))
        if "redis" not in self.external:
            specs.append(embedded.redis_spec(ctx))
        if "nats" not in self.external:
            specs.append(embedded.nats_spec(ctx))
        await self._launch(specs)
        if "postgres" not in self.external:
            await embedded.create_database(ctx.settings)

    async def _start_migrate(self) -> None:
        await self._run_once(apps.migrate_spec(self.context), apps.MIGRATE_TIMEOUT)

    async def _start_services(self) -> None:
        await self._launch(apps.service_specs(self.context))

    async def _start_gateway(self) -> None:
        await self._run_once(apps.gateway_config_spec(self.context), apps.GATEWAY_CONFIG_TIMEOUT)
        await self._launch([apps.envoy_spec(self.context)])

    async def _launch(self, specs: list[ProcessSpec]) -> None:
        if not specs:
            return
        processes = [ManagedProcess(spec, self.context.log_path(spec.name)) for spec in specs]
        # Recorded before starting, so a failure half-way still stops the ones that did start.
        self._stages.append(processes)
        began = time.monotonic()
        log.info("starting %s", ", ".join(spec.name for spec in specs))
        try:
            for process in processes:
                await process.start()
        finally:
            # Recorded as soon as they run, so a launcher killed while they start leaves findable leftovers.
            self._pidfile.record(self.processes.values())
        await gather_or_cancel([process.wait_ready() for process in processes])
        log.info("ready: %s (%.1fs)", ", ".join(spec.name for spec in specs), time.monotonic() - began)

    async def _run_once(self, spec: ProcessSpec, timeout: float) -> None:
        began = time.monotonic()
        log.info("running %s", spec.name)
        await ManagedProcess(spec, self.context.log_path(spec.name)).run_to_completion(timeout)
        log.info("done: %s (%.1fs)", spec.name, time.monotonic() - began)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
