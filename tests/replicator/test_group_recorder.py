"""services/replicator/pipeline/recording.py: several fan-outs' results in one statement."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from services.replicator.pipeline.recording import GroupRecorder


@dataclass(frozen=True)
class Item:
    id: int


@dataclass(frozen=True)
class Row:
    id: int
    statement: int


class Database:
    """Writes batches one at a time when told to, and says what each statement carried."""

    def __init__(self) -> None:
        self.statements: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failing: set[int] = set()  # statement numbers that fail

    async def write(self, items: list[Item]) -> list[Row]:
        self.statements.append([item.id for item in items])
        number = len(self.statements)
        await self.gate.wait()
        if number in self.failing:
            raise ConnectionError("the database went away")
        return [Row(item.id, number) for item in items]


async def _started(recorder: GroupRecorder, items: list[Item]) -> asyncio.Task:
    task = asyncio.create_task(recorder.record(items))
    await asyncio.sleep(0)
    return task


async def test_what_arrives_while_a_statement_runs_goes_into_the_next_one_and_each_gets_its_own_rows():
    db = Database()
    recorder = GroupRecorder(db.write, in_flight=1)
    db.gate.clear()
    first = await _started(recorder, [Item(1)])
    waiting = [await _started(recorder, [Item(10 + n), Item(20 + n)]) for n in range(3)]
    db.gate.set()
    assert await first == [Row(1, 1)]
    assert [await task for task in waiting] == [[Row(10 + n, 2), Row(20 + n, 2)] for n in range(3)]
    assert db.statements == [[1], [10, 20, 11, 21, 12, 22]]


async def test_alone_a_batch_is_written_at_once():
    db = Database()
    recorder = GroupRecorder(db.write)
    assert await recorder.record([Item(1), Item(2)]) == [Row(1, 1), Row(2, 1)]
    assert await recorder.record([]) == []
    assert db.statements == [[1, 2]]


async def test_an_order_handed_in_by_two_callers_in_one_statement_is_returned_to_the_first_only():
    db = Database()
    recorder = GroupRecorder(db.write, in_flight=1)
    db.gate.clear()
    await _started(recorder, [Item(0)])
    one = await _started(recorder, [Item(5), Item(6)])
    two = await _started(recorder, [Item(5)])
    db.gate.set()
    assert await one == [Row(5, 2), Row(6, 2)]
    assert await two == []


async def test_a_failed_statement_fails_its_callers_and_the_next_one_is_still_written():
    db = Database()
    recorder = GroupRecorder(db.write, in_flight=1)
    db.gate.clear()
    db.failing = {2}
    first = await _started(recorder, [Item(0)])
    failing = [await _started(recorder, [Item(n)]) for n in (1, 2)]
    db.gate.set()
    assert await first == [Row(0, 1)]
    for task in failing:
        with pytest.raises(ConnectionError, match="went away"):
            await task
    assert await recorder.record([Item(3)]) == [Row(3, 3)]
    assert db.statements == [[0], [1, 2], [3]]


async def test_a_caller_that_stops_waiting_still_has_its_results_written():
    db = Database()
    recorder = GroupRecorder(db.write, in_flight=1)
    db.gate.clear()
    task = await _started(recorder, [Item(7)])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    db.gate.set()
    await recorder.close()
    assert db.statements == [[7]]


async def test_a_statement_carries_at_most_max_results_unless_one_batch_is_larger():
    db = Database()
    recorder = GroupRecorder(db.write, in_flight=1, max_results=3)
    db.gate.clear()
    sizes = (1, 2, 2, 5)
    tasks = [await _started(recorder, [Item(10 * n + k) for k in range(size)]) for n, size in enumerate(sizes)]
    db.gate.set()
    await asyncio.gather(*tasks)
    assert db.statements == [[0], [10, 11], [20, 21], [30, 31, 32, 33, 34]]
