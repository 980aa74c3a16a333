"""Entry point shared by every service's `python -m services.<name>`."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from copytrade.core import heap, scheduling
from copytrade.core.logging import configure_logging
from copytrade.core.settings import Settings, load_settings
from copytrade.core.tracing import init_tracing


def run_service(
    name: str, serve: Callable[[Settings], Coroutine[Any, Any, None]], *, fanout: bool = False
) -> None:
    """`fanout`: the process does fan-out work, and runs under FANOUT_SCHED_POLICY."""
    settings = load_settings()  # exits naming the bad variable
    if fanout:
        scheduling.apply(settings.fanout_sched_policy)  # before any thread starts: they inherit it
    configure_logging(settings, name)
    init_tracing(settings, name)  # before any server or channel: they add its interceptors
    heap.tune(settings.gc_gen0_threshold)
    # uvloop: measurably faster for grpc.aio streaming (ENVOY_GRPC_NOTES 2.7); uvloop.run avoids
    # the event-loop policies deprecated in Python 3.14.
    uvloop.run(serve(settings))
