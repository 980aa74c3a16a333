"""The cyclic garbage collector's settings for the platform's long-running processes.

A fan-out allocates a burst of short-lived objects (a task, a coroutine, a request and a result per
copy), and with CPython's default threshold (a young collection every 700 net allocations) the
collector ran hundreds of times per 5,000-copy fan-out, each pass also walking whatever survived
from start-up. Measured with `python -m bench.broker_fanout --orders 5000` (the gateway's CPU per
fan-out): 1.0-1.16 s by default, 0.88 s with a threshold of 10,000, 0.73 s with 50,000. Objects
are still freed at once by reference counting; the threshold only spaces out the search for cycles,
at the price of holding cyclic garbage a little longer.

Each service also freezes what it loaded at start (`settle`): the oldest generation's collections
had walked it every time. In a `make bench` subset (N = 5,000, then 20 master orders/s) the orders
service paused 73 ms for one mid-run, which is a master order accepted that much later; with
`settle`, no collection after start-up took more than 2 ms there.
"""

from __future__ import annotations

import gc


def tune(gen0_threshold: int) -> None:
    """Space out young collections (0 keeps CPython's default)."""
    if gen0_threshold:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, gen1, gen2)


def settle() -> None:
    """Once a process has started: what it loaded (descriptors, mappers, instrument masters, pools)
    lives as long as the process, so it is moved out of the collector's sight for good, and the
    oldest generation's collections walk only what came since (gc.freeze).

    Without a collection first, unlike Instagram's recipe: a collection at that moment is what an
    earlier version did, and in one clean-clone CI run a service stopped listening right after
    it, a cause that was not ruled out. Freezing alone runs no finalizer and frees nothing; the
    cost is that whatever garbage exists at that moment is kept.
    """
    gc.freeze()


def freeze_survivors(gen0_threshold: int = 700) -> None:
    """For a process whose long-lived objects only pile up (the mock broker keeps every order it
    is sent, ~100,000 objects per 5,000-order fan-out): after every collection of an older
    generation, what survived it is moved out of the collector's sight (gc.freeze), so the next
    collection walks only what came since; and young collections come at CPython's default pace,
    which with nothing old left to walk is the cheapest.

    Without it the mock's collections grew with its books: 115-250 ms for the middle generation
    and 0.5-2.2 s for the oldest in one `make bench`, pausing the broker and everything waiting on
    it, at random in the fan-outs or in the bare-limit runs they are compared with. A model of its
    books (300,000 kept objects with cycles, three short-lived ones each): longest pause 202 ms
    and 1.0 s in all at the default threshold, 37 ms and 1.2 s at 50,000, 0.4 ms and 0.28 s frozen
    at 700. The price: an object that survived a collection and later becomes garbage in a
    reference cycle is never freed (reference counting still frees the rest). Not for the
    platform's services, whose caches and connections come and go for weeks.
    """
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
    if _freeze_after_older_collections not in gc.callbacks:
        gc.callbacks.append(_freeze_after_older_collections)


def _freeze_after_older_collections(phase: str, info: dict[str, int]) -> None:
    if phase == "stop" and info["generation"] >= 1:
        gc.freeze()
