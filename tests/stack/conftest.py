from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backing import scratch_dir


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A temp folder for a stack's DATA_DIR, outside pytest's own temp root (see scratch_dir)."""
    folder = scratch_dir("copytrade-stack-test-")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
