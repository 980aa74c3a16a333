"""The attack suite: the whole stack (services, Envoy) on free ports, attacked as an outsider would.

Every test here fails when the attack it names succeeds. One stack for the package, like tests/e2e.
"""

import httpx
import pytest

from tests.security.actors import Actors
from tests.support.stack import package_stack


@pytest.fixture(scope="package")
async def stack(backing):
    # The secret scan reads every log line, so let the services say as much as they can.
    async with package_stack(backing, "security", LOG_LEVEL="DEBUG") as running:
        # The mock broker's per-session login limits would turn the suite's many relinks into
        # "broker unreachable", and its latency would only slow the suite: it attacks the platform.
        async with httpx.AsyncClient(timeout=10) as client:
            mock = f"http://127.0.0.1:{running.settings.mock_iifl_port}/_mock/config"
            configured = await client.post(mock, json={"rate_limits": {"enabled": False}, "latency": {"kind": "zero"}})
            assert configured.status_code == 200, configured.text
        yield running


@pytest.fixture
async def rest(stack):
    async with httpx.AsyncClient(base_url=stack.envoy_url, timeout=30) as client:
        yield client


@pytest.fixture
def actors(stack, rest, unique) -> Actors:
    return Actors(stack, rest, unique)
