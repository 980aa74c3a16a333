"""Backing servers for the whole test session.

With DATABASE_URL, REDIS_URL and NATS_URL set, tests use those servers (CI's second pass points
them at the machine's own PostgreSQL, Redis and NATS). Otherwise they start the embedded servers
of the local stack on free ports in a temporary folder, exactly as `make start` would.
"""

import itertools
import os
import tempfile
import uuid
from pathlib import Path

import pytest

from copytrade.core.settings import Settings
from stack import free_port_env
from tests.support.backing import backing_servers

RUN_ID = uuid.uuid4().hex[:8]
# One counter for the whole run: a counter per test plus four random hex digits made two tests'
# users collide now and then (hundreds of "m<run>0...." names drawn from 65,536 suffixes).
_NAMES = itertools.count()


@pytest.fixture(scope="session")
async def backing():
    async with backing_servers() as urls:
        yield urls


@pytest.fixture(scope="session")
def base_settings(backing) -> Settings:
    # Free ports for every service, so a test never talks to a stack a developer has running.
    ports = {k.lower(): int(v) for k, v in free_port_env(Path(tempfile.gettempdir())).items() if k.endswith("_PORT")}
    return Settings(
        **ports,
        database_url=backing.database_url,
        redis_url=backing.redis_url,
        nats_url=backing.nats_url,
        # Cost 4 keeps the suite fast; the cost factor does not change behaviour.
        bcrypt_rounds=4,
        # Tests log in from one address many times; the per-address limit has its own test.
        login_failures_per_address=10_000,
        shutdown_drain_seconds=0,
        log_format="console",
    )


@pytest.fixture
def unique():
    """A short name no other test, run or earlier run against an external database has used."""

    def make(prefix: str = "u") -> str:
        return f"{prefix}{RUN_ID}{next(_NAMES)}"

    return make


def pytest_report_header(config):
    external = all(os.environ.get(name) for name in ("DATABASE_URL", "REDIS_URL", "NATS_URL"))
    return f"backing servers: {'external (DATABASE_URL, REDIS_URL, NATS_URL)' if external else 'embedded'}"
