"""Background tasks a service runs beside its gRPC server (the outbox publisher, the read model's
consumer, the consumer-lag poller)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

# How long a cancelled task has to finish before it is cancelled again.
CANCEL_AGAIN_SECONDS = 0.5


async def stop(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait until it has finished (its finally blocks run); nothing for None.

    A cancellation can be lost below a task's loop: Python 3.11's wait_for returns a result that
    came at the same moment as the cancel and drops the cancel, and nats-py turns one into its own
    error, which a retry loop catches. The loop then goes on, and a single cancel waited on forever
    (a CI run hung 300 s in a test's shutdown, polling every 50 ms). So it is cancelled again until
    it has finished.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_AGAIN_SECONDS)
    with contextlib.suppress(asyncio.CancelledError):
        task.result()
