"""copytrade/core/scheduling.py: the fan-out processes' CPU policy (FANOUT_SCHED_POLICY)."""

import subprocess
import sys

import pytest

from copytrade.core import scheduling
from copytrade.core.settings import Settings

pytestmark = pytest.mark.skipif(not scheduling.supported(), reason="Linux scheduling policies")

# In a child: the policy is per thread, and a test must not leave the test run itself idle.
CHILD = """
import sys, threading
from copytrade.core import scheduling
scheduling.apply(sys.argv[1])
seen = []
thread = threading.Thread(target=lambda: seen.append(scheduling.current()))
thread.start(); thread.join()
print(scheduling.current(), seen[0])
"""


def _run(policy: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, policy], check=False, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("policy", ["idle", "batch"])
def test_a_policy_applies_to_the_process_and_the_threads_it_starts_afterwards(policy):
    assert _run(policy) == [policy, policy]


def test_normal_leaves_the_process_as_it_was():
    assert _run("normal") == ["normal", "normal"]


def test_the_setting_names_itself_when_the_policy_is_unknown():
    assert Settings.model_construct().fanout_sched_policy == "normal"
    with pytest.raises(ValueError, match="fanout_sched_policy"):
        Settings(fanout_sched_policy="realtime")
