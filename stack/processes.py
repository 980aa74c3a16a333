"""One child process: spawned with its output in a log file, gated on readiness, stopped by pid."""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

# Returns True once the process serves. An exception counts as "not yet" and is kept for the message
# shown if the process never gets there.
Probe = Callable[[], Awaitable[bool]]

LOG_TAIL_LINES = 40


class StartupError(RuntimeError):
    """A process failed to start or to become ready; the message carries the tail of its log."""


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    # Where it serves, for the table; empty for one-shot steps.
    address: str = ""
    ready: Probe | None = None
    ready_timeout: float = 60.0
    stop_signal: signal.Signals = signal.SIGTERM
    # How long a stop waits after stop_signal before SIGKILL.
    stop_timeout: float = 10.0
    # A system user to run as: PostgreSQL refuses to run as root.
    user: str | None = None
    cwd: Path | None = None


class ManagedProcess:
    """A ProcessSpec running: its pid, its log, and the start, readiness and stop of it."""

    def __init__(self, spec: ProcessSpec, log_path: Path) -> None:
        self.spec = spec
        self.log_path = log_path
        self._proc: asyncio.subprocess.Process | None = None
        # Where this run's output begins in the log, which earlier runs' output precedes.
        self._log_start = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._log_start = log.tell()
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.spec.argv)}\n".encode())
            log.flush()
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *self.spec.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    env=dict(self.spec.env),
                    cwd=self.spec.cwd,
                    # Its own session: a terminal's Ctrl-C reaches only the launcher, which then stops
                    # everything in order instead of every process dying at once.
                    start_new_session=True,
                    **_identity(self.spec.user),
                )
            except OSError as exc:
                raise StartupError(f"{self.name}: cannot run {self.spec.argv[0]}: {exc}") from exc

    async def wait_ready(self) -> None:
        """Poll the probe until it passes; fail early if the process exits, late if it never passes."""
        if self.spec.ready is None:
            return
        deadline = time.monotonic() + self.spec.ready_timeout
        delay, last_error = 0.05, "no answer yet"
        while True:
            if not self.running:
                raise self.failure(f"exited with code {self.returncode} while starting")
            try:
                if await asyncio.wait_for(self.spec.ready(), timeout=5):
                    return
                last_error = "not ready yet"
            except Exception as exc:  # noqa: BLE001 - any probe failure means "not yet"
                last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if time.monotonic() >= deadline:
                raise self.failure(f"not ready after {self.spec.ready_timeout:.0f}s ({last_error})")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def wait(self) -> int:
        assert self._proc is not None, "not started"
        return await self._proc.wait()

    async def run_to_completion(self, timeout: float) -> None:
        """For one-shot steps (initdb, migrations): start, wait, and fail unless the exit code is 0."""
        await self.start()
        try:
            code = await asyncio.wait_for(self.wait(), timeout)
        except TimeoutError:
            await self.stop()
            raise self.failure(f"did not finish within {timeout:.0f}s") from None
        except asyncio.CancelledError:
            await self.stop()
            raise
        if code != 0:
            raise self.failure(f"failed with exit code {code}")

    async def stop(self) -> int | None:
        """stop_signal, then SIGKILL after stop_timeout; returns the exit code."""
        if self._proc is None:
            return None
        if self._proc.returncode is None:
            self._signal(self.spec.stop_signal)
            try:
                await asyncio.wait_for(self._proc.wait(), self.spec.stop_timeout)
            except TimeoutError:
                self._signal(signal.SIGKILL)
                await self._proc.wait()
        # Helpers a process forked (PostgreSQL backends, a wrapper's child) share its process group;
        # after an unclean end they could outlive it, so the group goes too.
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self._proc.returncode

    async def kill(self) -> int | None:
        """SIGKILL now, no grace (a crash, as the fault tests inject one); returns the exit code.

        The process group goes too, as in stop(). The same ManagedProcess can start() again after.
        """
        if self._proc is None:
            return None
        if self._proc.returncode is None:
            self._signal(signal.SIGKILL)
        await self._proc.wait()
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self._proc.returncode

    def send_signal(self, sig: signal.Signals) -> None:
        """Send a signal to a running process (e.g. SIGSTOP / SIGCONT to freeze and thaw it)."""
        if self.running:
            self._signal(sig)

    def _signal(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        try:
            self._proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def failure(self, reason: str) -> StartupError:
        return StartupError(
            f"{self.name} {reason}.\n"
            f"--- last lines of {self.log_path} ---\n{self.log_tail()}\n--- end of {self.name} log ---"
        )

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(self._log_start, log.tell() - 64 * 1024))
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.strip("\n").splitlines()[-lines:])


class _Identity(TypedDict, total=False):
    """The keyword arguments of create_subprocess_exec that run a child as another user."""

    user: int
    group: int
    extra_groups: list[int]


def _identity(user: str | None) -> _Identity:
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    # Without group and extra_groups the child would keep root's groups.
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


async def stop_all(processes: Sequence[ManagedProcess]) -> None:
    await asyncio.gather(*(process.stop() for process in processes))


async def gather_or_cancel(coros: Sequence[Awaitable[object]]) -> None:
    """Run together until all are done; the first failure cancels the rest, then propagates."""
    tasks = [asyncio.ensure_future(coro) for coro in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
