"""The stack the fault scenarios run against, and the knobs they turn on it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import nats
from nats.js.api import ConsumerConfig

from copytrade.core.jetstream import ORDERS_STREAM
from services.replicator.pipeline.consumer import DURABLE as REPLICATOR_DURABLE
from stack import LocalStack, free_port_env

# The replicator's JetStream consumer waits ACK_WAIT_SECONDS (30 s) before it redelivers a master
# order whose replica died without a word. No setting shortens it, so the harness edits the durable
# consumer's ack_wait on the running stack (a consumer property JetStream lets one change). It stays
# above the replicator's heartbeat (in_progress every ack_wait/3 = 10 s of the service's own 30 s), so
# a replica still working keeps its master order; only a dead one loses it, after this long.
DEFAULT_ACK_WAIT_SECONDS = 12.0


def full_suite() -> bool:
    return os.environ.get("FAULTS_FULL", "") not in ("", "0")


def stack_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Free ports, embedded servers (never the machine's shared ones: the suite restarts them)."""
    return {
        **free_port_env(data_dir),
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "NATS_URL": "",
        # Only set-up registers users.
        "BCRYPT_ROUNDS": "4",
        "SHUTDOWN_DRAIN_SECONDS": "0",
        "LOG_LEVEL": os.environ.get("FAULTS_LOG_LEVEL", "INFO"),
        **(extra or {}),
    }


@contextlib.asynccontextmanager
async def fault_stack(extra: Mapping[str, str] | None = None) -> AsyncIterator[LocalStack]:
    """A whole stack in a temp folder (kept when KEEP_STACK_DATA is set, for its logs)."""
    data_dir = Path(tempfile.mkdtemp(prefix="copytrade-faults-"))
    try:
        async with LocalStack(stack_env(data_dir, extra)) as stack:
            ack_wait = await set_ack_wait(stack, float(os.environ.get("FAULTS_ACK_WAIT", DEFAULT_ACK_WAIT_SECONDS)))
            print(f"fault stack: {stack.data_dir}; the replicator consumer's ack_wait is {ack_wait:g} s", flush=True)
            yield stack
    finally:
        if os.environ.get("KEEP_STACK_DATA"):
            print(f"fault stack data and logs kept in {data_dir}", flush=True)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


async def set_ack_wait(stack: LocalStack, seconds: float) -> float:
    """Change the replicator's durable consumer's ack_wait; returns the value JetStream now has."""
    connection = await nats.connect(stack.nats_url, connect_timeout=5)
    try:
        js = connection.jetstream()
        info = await js.consumer_info(ORDERS_STREAM, REPLICATOR_DURABLE)
        config: ConsumerConfig = info.config
        config.ack_wait = seconds
        updated = await js.add_consumer(ORDERS_STREAM, config=config)
        return float(updated.config.ack_wait or 0)
    finally:
        await connection.close()


class Mock:
    """The mock IIFL's control API."""

    def __init__(self, stack: LocalStack, http: aiohttp.ClientSession) -> None:
        self.url = f"http://127.0.0.1:{stack.settings.mock_iifl_port}"
        self.http = http

    async def _json(self, method: str, path: str, body: object = None, **params: str) -> dict:
        async with self.http.request(method, self.url + path, json=body, params=params or None) as reply:
            payload = await reply.json(content_type=None)
            if reply.status >= 300:
                raise RuntimeError(f"{method} {path}: {reply.status} {payload}")
            return payload

    async def configure(self, sections: dict) -> dict:
        return await self._json("POST", "/_mock/config", sections)

    async def inspect(self) -> dict:
        return await self._json("GET", "/_mock/inspect", by_tag="1")

    async def arrivals(self, tag_prefix: str) -> dict:
        return await self._json("GET", "/_mock/arrivals", tag_prefix=tag_prefix)

    async def expire_sessions(self, client_id: str) -> int:
        reply = await self._json("POST", "/_mock/sessions/expire", {"dialect": "iifl_v1", "client_id": client_id})
        return int(reply["expired"])

    async def fault_stats(self) -> dict:
        stats = (await self._json("GET", "/_mock/inspect"))["stats"]
        return {"faults": stats["faults"], "rate_limited": stats["rate_limited"]}

    async def place_behind_the_platforms_back(self, client_id: str, tag: str, app_secret: str = "s") -> dict:
        """A second order with a tag already used, from a fresh login to the account (the mock
        deduplicates a tag within one session only): a duplicate the invariant must catch."""
        code = (await self._json("POST", "/_mock/v1/authcode", {"client_id": client_id, "app_secret": app_secret}))[
            "auth_code"
        ]
        checksum = hashlib.sha256(f"{client_id}{code}{app_secret}".encode()).hexdigest()
        session = (await self._json("POST", "/v1/getusersession", {"checkSum": checksum}))["userSession"]
        item = {
            "instrumentId": "2885",  # RELIANCE, NSEEQ
            "exchange": "NSEEQ",
            "transactionType": "BUY",
            "quantity": "1",
            "orderComplexity": "REGULAR",
            "product": "INTRADAY",
            "orderType": "LIMIT",
            "validity": "DAY",
            "price": "1412.30",
            "orderTag": tag,
        }
        async with self.http.post(
            self.url + "/v1/orders", json=[item], headers={"Authorization": f"Bearer {session}"}
        ) as reply:
            return await reply.json(content_type=None)
