"""The end-to-end tier: the real stack (services, Envoy) on free ports, driven as a user would."""

import httpx
import pytest

from tests.e2e.flows import PASSWORD
from tests.support.stack import package_stack


# Package scope: the stack stops when the end-to-end tests are done. Its replicator consumes every
# master order on the session's shared NATS; left running, it would take the pipeline tests' orders.
@pytest.fixture(scope="package")
async def stack(backing):
    async with package_stack(backing, "stack") as running:
        yield running


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
