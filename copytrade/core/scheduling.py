"""The CPU scheduling policy of the processes that do fan-out work (FANOUT_SCHED_POLICY).

On one machine the accept path (Envoy, auth, orders, Redis, PostgreSQL) and the fan-out (the
replicator, the broker gateway, the orders projection) share the same cores, and a 100-copy fan-out
is a burst of ~100 ms of CPU across several processes. Under CFS/EEVDF a master order arriving in
such a burst waited for a core at every hop of its path: at 20 master orders/s x 100 followers its
accepted p99 was 56-80 ms although PlaceOrder's own work is ~3 ms. SCHED_IDLE (Linux) makes the
fan-out processes give way at once whenever an accept-path process wakes up, and take every cycle
it leaves, which under that load is almost all of them: accepted p99 23-38 ms, and the fan-outs
kept up as before (`make bench`, README Performance). SCHED_BATCH, which only stops them from
preempting others on wake-up, measured 69 ms.

The policy is set on the process's first thread before any other starts (gRPC's, the tracer's, the
executor's), and threads inherit it. It only orders processes that compete for the same run queue:
in containers with CPU shares of their own it changes nothing, and it is off unless asked for
(the local stack asks for idle). The flip side of idle: any busy normal process on the machine
(a build, a bcrypt storm) holds the fan-out back until it sleeps.
"""

from __future__ import annotations

import os

from copytrade.core.settings import SettingsError


def apply(policy: str) -> None:
    """Put the calling thread (and every thread it starts afterwards) under `policy`."""
    if policy == "normal":
        return
    if not supported():
        raise SettingsError(f"FANOUT_SCHED_POLICY={policy} needs Linux; set it to normal on this system")
    number = os.SCHED_IDLE if policy == "idle" else os.SCHED_BATCH
    # Lowering one's own priority needs no privilege.
    os.sched_setscheduler(0, number, os.sched_param(0))


def supported() -> bool:
    return hasattr(os, "sched_setscheduler")


def current(pid: int = 0) -> str:
    """The policy of `pid`'s main thread (0: the calling thread): normal, batch or idle."""
    number = os.sched_getscheduler(pid)
    return {os.SCHED_OTHER: "normal", os.SCHED_BATCH: "batch", os.SCHED_IDLE: "idle"}.get(number, str(number))
