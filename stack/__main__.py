"""`python -m stack`: start the whole platform, show what runs where, stop it all on Ctrl-C or SIGTERM.

Exit code 0 after a requested stop, 1 when a process failed to start or died while running, 2 for
invalid settings.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from stack.launcher import LocalStack
from stack.processes import ManagedProcess, StartupError

log = logging.getLogger("stack")


async def run() -> int:
    try:
        stack = LocalStack()
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    # SIGHUP too: a closed terminal must not leave the servers running without their launcher.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        # Replaces KeyboardInterrupt: a signal only asks for the orderly stop below, never cuts it short.
        loop.add_signal_handler(sig, stop_requested.set)
    stopping = asyncio.create_task(stop_requested.wait())
    starting = asyncio.create_task(stack.start())
    exited: asyncio.Task[ManagedProcess] | None = None
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            log.info("stop requested during start-up")
            starting.cancel()  # start() stops whatever it had started
            await asyncio.gather(starting, return_exceptions=True)
            return 0
        error = starting.exception()
        if isinstance(error, StartupError):
            log.error("start-up failed: %s", error)
            return 1
        if error is not None:
            log.error("start-up failed", exc_info=error)
            return 1
        print(stack.table(), flush=True)
        log.info("running; Ctrl-C stops everything")
        exited = asyncio.create_task(stack.wait_for_exit())
        done, _ = await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if exited in done and not stop_requested.is_set():
            process = exited.result()
            log.error("%s", process.failure(f"exited unexpectedly with code {process.returncode}"))
            return 1
        return 0
    finally:
        for task in (stopping, exited):
            if task is not None:
                task.cancel()
        await stack.stop()
        log.info("stopped")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    # The Envoy readiness check polls over httpx, which logs every request at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
