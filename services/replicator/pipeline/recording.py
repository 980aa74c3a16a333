"""Results of every fan-out under way in this process, recorded together (group commit).

Each fan-out records its results as they stream back, one batch after another. With several
fan-outs under way at once (20 master orders/s x 100 followers keeps five to ten going), each sent
its own small UPDATE: ~10 rows a statement, ~180 statements a second, and more connections at
once than the pool keeps, so the pool opened and closed connections all the time (PostgreSQL forks
a process for each). Here whatever every fan-out has handed in while the previous statement ran
goes in the next one; with nothing else under way a batch is written at once, as before.

Each caller gets back the rows of its own results, and a row the statement returned is given to
one caller only (the first that handed it in), so an order recorded twice in one statement (two
runs of one master order at once) is published once, as two statements would have had it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar


class _Keyed(Protocol):
    @property
    def id(self) -> int: ...


Item = TypeVar("Item", bound=_Keyed)  # a result handed in (services/replicator/pipeline/store.Result)
Row = TypeVar("Row", bound=_Keyed)  # a row the statement returned for it (FollowerOrder)

# Two statements in flight: one is encoded and sent while PostgreSQL runs the other.
STATEMENTS_IN_FLIGHT = 2
# Results per statement at most (a 5,000-copy fan-out's results arrive in a few large batches).
MAX_RESULTS_PER_STATEMENT = 2_000


class GroupRecorder(Generic[Item, Row]):
    def __init__(
        self,
        write: Callable[[list[Item]], Awaitable[list[Row]]],
        *,
        in_flight: int = STATEMENTS_IN_FLIGHT,
        max_results: int = MAX_RESULTS_PER_STATEMENT,
    ) -> None:
        self._write = write
        self._in_flight = in_flight
        self._max_results = max_results
        self._queue: list[tuple[list[Item], asyncio.Future[list[Row]]]] = []
        self._writers: set[asyncio.Task[None]] = set()

    async def record(self, results: list[Item]) -> list[Row]:
        """The rows the statement that carried `results` returned for them."""
        if not results:
            return []
        future: asyncio.Future[list[Row]] = asyncio.get_running_loop().create_future()
        self._queue.append((results, future))
        if len(self._writers) < self._in_flight:
            writer = asyncio.create_task(self._drain(), name="replicator-record")
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # A caller that stops waiting (its fan-out cancelled) leaves its results to be written.
            future.add_done_callback(_retrieve)
            raise

    async def close(self) -> None:
        """Let the statements under way finish (what they carry is then recorded)."""
        while self._writers:
            await asyncio.gather(*self._writers, return_exceptions=True)

    async def _drain(self) -> None:
        while self._queue:
            batch = self._take()
            try:
                rows = await self._write([result for results, _ in batch for result in results])
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as error:  # noqa: BLE001 - every caller in the batch raises it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            by_id = {row.id: row for row in rows}
            for results, future in batch:
                mine = [by_id.pop(result.id) for result in results if result.id in by_id]
                if not future.done():
                    future.set_result(mine)

    def _take(self) -> list[tuple[list[Item], asyncio.Future[list[Row]]]]:
        taken, count = 0, 0
        for results, _ in self._queue:
            if taken and count + len(results) > self._max_results:
                break
            taken += 1
            count += len(results)
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch


def _retrieve(future: asyncio.Future[list[Row]]) -> None:
    # Nobody awaits it any more: its error is the fan-out's redelivery's to meet, not a warning's.
    if not future.cancelled():
        future.exception()
