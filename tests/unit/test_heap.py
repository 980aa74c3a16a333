"""copytrade/core/heap.py: the collector's threshold every service applies, and the mock's freezing."""

import gc
import subprocess
import sys

import pytest

from copytrade.core import heap
from copytrade.core.settings import Settings


@pytest.fixture
def restored_gc():
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)


def test_tune_spaces_out_young_collections_and_keeps_the_older_generations(restored_gc):
    gc.set_threshold(700, 10, 10)
    heap.tune(Settings.model_construct().gc_gen0_threshold)
    assert gc.get_threshold() == (50_000, 10, 10)
    heap.tune(0)  # 0: the interpreter's own setting stays
    assert gc.get_threshold() == (50_000, 10, 10)


def test_the_threshold_setting_refuses_a_negative_number():
    with pytest.raises(ValueError, match="gc_gen0_threshold"):
        Settings(gc_gen0_threshold=-1)


# In a child: freezing is for the whole interpreter, and must not touch the test run's own.
SURVIVORS = """
import gc
from copytrade.core import heap

class Order:
    def __init__(self):
        self.me = self  # a cycle: only the collector could ever free it
gc.collect()
gc.set_threshold(1_000, 2, 10)  # before freeze_survivors, which keeps the older generations' pace
kept = []
collected = []
gc.callbacks.append(lambda phase, info: phase == "stop" and collected.append(info["collected"]))
if len(__import__("sys").argv) > 1:
    heap.freeze_survivors()
before = gc.get_freeze_count()
for _ in range(20_000):
    kept.append(Order())
    Order()  # garbage at once, and cyclic
print(
    gc.get_freeze_count() - before,
    len(gc.get_objects(2)),
    sum(isinstance(o, Order) for o in gc.get_objects()),
    sum(collected),
    gc.get_threshold()[0],
)
"""


def _survivors(*flag: str) -> list[int]:
    done = subprocess.run(
        [sys.executable, "-c", SURVIVORS, *flag], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [int(n) for n in done.stdout.split()]


def test_freeze_survivors_moves_what_survived_an_older_collection_out_of_the_collectors_sight():
    frozen, oldest, orders_seen, collected, young = _survivors("freeze")
    # The kept orders went out of sight as they survived; the cyclic garbage was still collected.
    assert frozen >= 15_000
    assert orders_seen <= 20_000 - 15_000
    assert oldest < 1_000
    assert collected >= 15_000
    assert young == 700  # with nothing old to walk, CPython's own pace is the cheapest


def test_without_it_the_survivors_stay_for_every_collection_to_walk():
    frozen, oldest, _, _, _ = _survivors()
    assert frozen == 0
    assert oldest >= 15_000


SETTLE = """
import gc
from copytrade.core import heap

class Loaded:
    def __init__(self):
        self.me = self
loaded = [Loaded() for _ in range(5_000)]  # what a service holds for its whole life
garbage = [Loaded() for _ in range(100)]
del garbage
heap.settle()
later = [Loaded() for _ in range(10)]
print(gc.get_freeze_count(), sum(isinstance(o, Loaded) for o in gc.get_objects()), gc.collect())
"""


def test_settle_moves_what_was_loaded_at_start_out_of_the_collectors_sight_without_collecting():
    done = subprocess.run([sys.executable, "-c", SETTLE], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    frozen, still_seen, collected_after = (int(n) for n in done.stdout.split())
    assert frozen >= 5_100
    assert still_seen == 10  # only what came after
    assert collected_after == 0  # frozen objects are never walked, so never freed by the collector
