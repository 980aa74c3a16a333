"""The backing stage of the local stack against real servers: reachable, stopped cleanly, data kept."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from pathlib import Path

import asyncpg
import nats
import psutil
import pytest
import redis.asyncio as aioredis

from stack import LocalStack, StartupError, free_port_env

pytestmark = pytest.mark.timeout(120)


def embedded_env(data_dir: Path) -> dict[str, str]:
    """Free ports, and the embedded servers even where CI's environment names external ones."""
    return {**free_port_env(data_dir), "DATABASE_URL": "", "REDIS_URL": "", "NATS_URL": ""}


def _plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _assert_all_gone(pids: list[int], data_dir: Path) -> None:
    for pid in pids:
        assert not psutil.pid_exists(pid), f"pid {pid} still runs"
    # Forked helpers (PostgreSQL's backends and workers) are not in the pid list, but they stay in
    # their server's process group, whose id is the server's pid.
    in_groups = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) in pids:
                in_groups.append(pid)
        except ProcessLookupError:
            pass
    assert in_groups == []
    # And nothing at all may still run on this data folder (each server's argv names it).
    on_data = [
        p.info
        for p in psutil.process_iter(["pid", "cmdline"])
        if str(data_dir) in " ".join(p.info["cmdline"] or ())
    ]
    assert on_data == []


async def _write_everywhere(stack: LocalStack) -> None:
    connection = await asyncpg.connect(_plain_dsn(stack.database_url))
    try:
        await connection.execute("CREATE TABLE kept (id int PRIMARY KEY, note text)")
        await connection.execute("INSERT INTO kept VALUES (1, 'before restart')")
    finally:
        await connection.close()
    client = aioredis.from_url(stack.redis_url)
    try:
        await client.set("kept", "before restart")
    finally:
        await client.aclose()
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="KEPT", subjects=["kept.>"])
        await js.publish("kept.one", b"before restart")
    finally:
        await nc.close()


async def _read_everywhere(stack: LocalStack) -> tuple[str, bytes | None, bytes]:
    connection = await asyncpg.connect(_plain_dsn(stack.database_url))
    try:
        note = await connection.fetchval("SELECT note FROM kept WHERE id = 1")
    finally:
        await connection.close()
    client = aioredis.from_url(stack.redis_url)
    try:
        value = await client.get("kept")
    finally:
        await client.aclose()
    nc = await nats.connect(stack.nats_url)
    try:
        message = await nc.jetstream().get_last_msg("KEPT", "kept.one")
    finally:
        await nc.close()
    return note, value, message.data


async def test_backing_servers_serve_stop_cleanly_and_keep_data(scratch: Path) -> None:
    data_dir = scratch / "data"
    env = embedded_env(data_dir)

    async with LocalStack(env, until="backing") as stack:
        assert list(stack.processes) == ["postgres", "redis", "nats"]
        assert stack.database_url.endswith(f"127.0.0.1:{env['POSTGRES_PORT']}/copytrade")
        await _write_everywhere(stack)
        first_pids = [process.pid for process in stack.processes.values()]
        table = stack.table()
    assert all(str(data_dir / "logs" / f"{name}.log") in table for name in ("postgres", "redis", "nats"))
    _assert_all_gone(first_pids, data_dir)

    # Fresh ports: the data, not the addresses, must carry over.
    env = embedded_env(data_dir)
    async with LocalStack(env, until="backing") as stack:
        assert await _read_everywhere(stack) == ("before restart", b"before restart", b"before restart")
        second_pids = [process.pid for process in stack.processes.values()]
    _assert_all_gone(second_pids, data_dir)


async def test_a_server_that_cannot_start_stops_the_others_and_shows_its_log(scratch: Path) -> None:
    env = embedded_env(scratch / "data")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(env["REDIS_PORT"])))
        taken.listen()
        stack = LocalStack(env, until="backing")
        with pytest.raises(StartupError) as failure:
            await stack.start()
    message = str(failure.value)
    assert message.startswith("redis ")
    assert "Address already in use" in message
    assert str(scratch / "data" / "logs" / "redis.log") in message
    assert stack.processes == {}
    _assert_all_gone([], scratch / "data")


async def test_servers_named_by_url_are_used_not_started(scratch: Path) -> None:
    async with LocalStack(embedded_env(scratch / "first"), until="backing") as first:
        external = {
            "DATABASE_URL": first.database_url,
            "REDIS_URL": first.redis_url,
            "NATS_URL": first.nats_url,
        }
        async with LocalStack({**embedded_env(scratch / "second"), **external}, until="backing") as second:
            assert second.processes == {}
            assert set(second.external) == {"postgres", "redis", "nats"}
            assert second.env["DATABASE_URL"] == first.database_url
            assert "external" in second.table()
        assert not (scratch / "second" / "postgres").exists()


async def test_an_unreachable_external_server_fails_with_its_variable(scratch: Path) -> None:
    env = embedded_env(scratch / "data")
    # A port just freed by free_port_env: nothing listens there.
    env["REDIS_URL"] = f"redis://127.0.0.1:{env['NATS_MONITOR_PORT']}/0"
    with pytest.raises(StartupError, match="REDIS_URL=redis://127.0.0.1:.* is not reachable"):
        await LocalStack(env, until="backing").start()


async def test_a_second_stack_on_the_same_data_folder_is_refused(scratch: Path) -> None:
    env = embedded_env(scratch / "data")
    async with LocalStack(env, until="backing") as first:
        second = LocalStack(embedded_env(scratch / "data"), until="backing")
        with pytest.raises(StartupError, match="another stack .* runs on"):
            await second.start()
        assert all(process.running for process in first.processes.values())
    assert not (scratch / "data" / "stack.pids").exists()


async def test_leftovers_of_a_killed_launcher_are_stopped_at_the_next_start(scratch: Path) -> None:
    data_dir = scratch / "data"
    data_dir.mkdir()
    # What a launcher killed by SIGKILL leaves: its record, naming a process that still runs and is
    # nobody's child any more (sh exits at once, so init adopts the sleep).
    sh = await asyncio.create_subprocess_exec(
        "sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!", stdout=asyncio.subprocess.PIPE
    )
    orphan = psutil.Process(int((await sh.communicate())[0]))
    try:
        record = {
            "launcher": {"pid": sh.pid, "created": 0},  # no longer running
            "processes": [
                {"name": "redis", "pid": orphan.pid, "created": orphan.create_time(), "signal": 15}
            ],
        }
        (data_dir / "stack.pids").write_text(json.dumps(record))
        async with LocalStack(embedded_env(data_dir), until="backing"):
            assert not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            orphan.kill()
