"""The whole platform for one test package: services and Envoy on free ports, over the session's
backing servers (embedded or external), its folder removed afterwards (kept with KEEP_STACK_DATA)."""

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from stack import LocalStack, free_port_env
from tests.support.backing import scratch_dir


@asynccontextmanager
async def package_stack(backing, name: str, **env: str) -> AsyncIterator[LocalStack]:
    """`env` adds to (or overrides) the test defaults: fast bcrypt, no drain, no per-address login
    throttle (every test logs in from 127.0.0.1; that throttle has its own test)."""
    data_dir = scratch_dir(f"copytrade-test-{name}-")
    settings = {
        **free_port_env(data_dir),
        **backing.env,
        "BCRYPT_ROUNDS": "4",
        "SHUTDOWN_DRAIN_SECONDS": "0",
        "LOGIN_FAILURES_PER_ADDRESS": "10000",
        **env,
    }
    try:
        async with LocalStack(settings) as running:
            yield running
    finally:
        if not os.environ.get("KEEP_STACK_DATA"):
            shutil.rmtree(data_dir, ignore_errors=True)
