"""copytrade/core/heap.py: the collector's threshold every service applies."""

import gc

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
