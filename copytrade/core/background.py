"""Background tasks a service runs beside its gRPC server (the outbox publisher, the read model's
consumer, the consumer-lag poller)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def stop(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait until it has finished (its finally blocks run); nothing for None."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
