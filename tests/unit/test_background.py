"""copytrade/core/background.py: stopping a service's background task."""

import asyncio

import pytest

from copytrade.core import background


async def test_a_task_whose_loop_lost_the_cancellation_is_still_stopped():
    lost = 0

    async def loop_that_swallows_one_cancel() -> None:
        nonlocal lost
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if lost:
                    raise
                lost += 1  # as a library that turned the cancel into an error a retry loop caught

    task = asyncio.create_task(loop_that_swallows_one_cancel())
    await asyncio.sleep(0.02)
    stopping = asyncio.create_task(background.stop(task))
    await asyncio.wait({stopping}, timeout=5)  # not wait_for: its own cancel would end the wait
    assert stopping.done(), "stop() waited on a task that had lost its cancellation"
    assert task.cancelled() and lost == 1


async def test_a_task_that_failed_raises_its_error_and_none_is_nothing():
    async def fail() -> None:
        raise RuntimeError("broken")

    task = asyncio.create_task(fail())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="broken"):
        await background.stop(task)
    await background.stop(None)
