"""PostgreSQL, Redis and NATS for a test session: external ones from the environment, or embedded."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from stack import LocalStack, free_port_env

URL_VARIABLES = ("DATABASE_URL", "REDIS_URL", "NATS_URL")


@dataclass(frozen=True)
class BackingUrls:
    database_url: str
    redis_url: str
    nats_url: str

    @property
    def env(self) -> dict[str, str]:
        return dict(zip(URL_VARIABLES, (self.database_url, self.redis_url, self.nats_url), strict=True))


def external_urls() -> BackingUrls | None:
    urls = [os.environ.get(name) for name in URL_VARIABLES]
    if all(urls):
        return BackingUrls(*urls)  # type: ignore[arg-type]
    return None


def scratch_dir(prefix: str) -> Path:
    # Not pytest's tmp_path: the embedded PostgreSQL runs as an unprivileged user that must be able
    # to traverse every parent folder, and pytest makes its base folder 0700.
    return Path(tempfile.mkdtemp(prefix=prefix))


@contextlib.asynccontextmanager
async def backing_servers() -> AsyncIterator[BackingUrls]:
    external = external_urls()
    if external is not None:
        yield external
        return
    data_dir = scratch_dir("copytrade-test-backing-")
    env = {**free_port_env(data_dir), **{name: "" for name in URL_VARIABLES}}
    try:
        async with LocalStack(env, until="backing") as servers:
            yield BackingUrls(servers.database_url, servers.redis_url, servers.nats_url)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
