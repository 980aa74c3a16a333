"""The end-to-end tier: the real stack (services, Envoy) on free ports, driven as a user would."""

import os
import shutil

import httpx
import pytest

from stack import LocalStack, free_port_env
from tests.e2e.flows import PASSWORD
from tests.support.backing import scratch_dir


# Package scope: the stack stops when the end-to-end tests are done. Its replicator consumes every
# master order on the session's shared NATS; left running, it would take the pipeline tests' orders.
@pytest.fixture(scope="package")
async def stack(backing):
    data_dir = scratch_dir("copytrade-test-stack-")
    env = {
        **free_port_env(data_dir),
        # The session's PostgreSQL, Redis and NATS, embedded or external, are this stack's too.
        **backing.env,
        "BCRYPT_ROUNDS": "4",
        "SHUTDOWN_DRAIN_SECONDS": "0",
        # Every test logs in from 127.0.0.1; the per-address throttle has its own unit test.
        "LOGIN_FAILURES_PER_ADDRESS": "10000",
    }
    try:
        async with LocalStack(env) as running:
            yield running
    finally:
        if not os.environ.get("KEEP_STACK_DATA"):
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def rest(stack):
    async with httpx.AsyncClient(base_url=stack.envoy_url, timeout=30) as client:
        yield client


@pytest.fixture
async def registered_user(rest, unique):
    name = unique("e2e")
    body = {"email": f"{name}@example.com", "username": name, "password": PASSWORD, "role": "MASTER"}
    response = await rest.post("/api/users/register", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def logged_in(rest, registered_user):
    response = await rest.post(
        "/api/users/login", data={"username": registered_user["username"], "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return response.json()
