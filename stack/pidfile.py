"""DATA_DIR/stack.pids: which launcher owns a data folder, and the processes it started.

A launcher that was killed (SIGKILL, a crash) cannot stop its children, which run in sessions of
their own; they would keep the ports and the data folder. The next start finds them here, by pid and
start time (so a reused pid is never mistaken for one of them), and stops them first. A second
launcher on a data folder whose owner still runs is refused: two Redis or NATS servers on one folder
would corrupt it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

from stack.processes import ManagedProcess, StartupError

FILE_NAME = "stack.pids"
LEFTOVER_STOP_TIMEOUT = 15.0

log = logging.getLogger("stack")


def _created(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _alive(entry: dict[str, Any]) -> psutil.Process | None:
    """The process an entry names, if that very process (same pid and start time) still runs."""
    try:
        process = psutil.Process(int(entry["pid"]))
        if process.create_time() == entry["created"] and process.status() != psutil.STATUS_ZOMBIE:
            return process
    except psutil.Error:
        pass
    return None


class PidFile:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME

    async def claim(self) -> None:
        """Own the data folder: refuse if its owner still runs, stop an earlier owner's leftovers."""
        previous = self._read()
        if previous is not None:
            if _alive(previous["launcher"]) is not None:
                raise StartupError(
                    f"another stack (pid {previous['launcher']['pid']}) runs on {self.path.parent}; "
                    "stop it first, or give this one a DATA_DIR of its own"
                )
            await _stop_leftovers(previous["processes"])
        self._write([])

    def record(self, processes: Iterable[ManagedProcess]) -> None:
        self._write(
            [
                {"name": p.name, "pid": p.pid, "created": _created(p.pid), "signal": int(p.spec.stop_signal)}
                for p in processes
                if p.pid is not None
            ]
        )

    def release(self) -> None:
        self.path.unlink(missing_ok=True)

    def _read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            # No earlier run, or an unreadable file: there is nothing reliable to act on.
            return None

    def _write(self, processes: list[dict[str, Any]]) -> None:
        launcher = {"pid": os.getpid(), "created": _created(os.getpid())}
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"launcher": launcher, "processes": processes}))
        temporary.replace(self.path)  # atomic: a reader never sees half a file


async def _stop_leftovers(entries: list[dict[str, Any]]) -> None:
    leftovers = [(process, entry) for entry in entries if (process := _alive(entry)) is not None]
    if not leftovers:
        return
    names = ", ".join(f"{entry['name']} (pid {process.pid})" for process, entry in leftovers)
    log.warning("stopping leftovers of an earlier run: %s", names)
    for process, entry in leftovers:
        try:
            process.send_signal(signal.Signals(int(entry["signal"])))
        except psutil.Error:
            pass
    _, still_running = await asyncio.to_thread(
        psutil.wait_procs, [process for process, _ in leftovers], timeout=LEFTOVER_STOP_TIMEOUT
    )
    for process in still_running:
        try:
            process.kill()
        except psutil.Error:
            pass
