"""The cyclic garbage collector's settings for the platform's long-running processes.

A fan-out allocates a burst of short-lived objects (a task, a coroutine, a request and a result per
copy), and with CPython's default threshold (a young collection every 700 net allocations) the
collector ran hundreds of times per 5,000-copy fan-out, each pass also walking whatever survived
from start-up. Measured with `python -m bench.broker_fanout --orders 5000` (the gateway's CPU per
fan-out): 1.0-1.16 s by default, 0.88 s with a threshold of 10,000, 0.73 s with 50,000 (those two
runs also froze the start-up objects, `gc.freeze()`, which was dropped after a clean-clone CI run
in which one service stopped listening right after it; the threshold alone stays). Objects
are still freed at once by reference counting; the threshold only spaces out the search for cycles,
at the price of holding cyclic garbage a little longer.
"""

from __future__ import annotations

import gc


def tune(gen0_threshold: int) -> None:
    """Space out young collections (0 keeps CPython's default)."""
    if gen0_threshold:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, gen1, gen2)

