"""The README's operator guide, run as written: every bash block of its section, in order, in one
shell, against a fresh local stack. Only the default ports (and, since an external database outlives
a run, the REST tour's user and account names) are swapped for this stack's."""

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.flows import eventually, place_market_buy
from tests.support.stack import package_stack

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
PASSWORD = "Password123!"


def guide_blocks() -> list[str]:
    text = README.read_text()
    start = text.index("\n## Operator guide\n")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```bash\n(.*?)```", text[start:end], flags=re.DOTALL)


def for_this_stack(script: str, settings, names: dict[str, str]) -> str:
    ports = {
        8000: settings.envoy_port,
        9901: settings.envoy_admin_port,
        18801: settings.mock_iifl_port,
        18222: settings.nats_monitor_port,
        50051: settings.auth_grpc_port,
        50052: settings.orders_grpc_port,
        50053: settings.replicator_grpc_port,
        50054: settings.broker_gateway_grpc_port,
        19101: settings.auth_metrics_port,
        19102: settings.orders_metrics_port,
        19103: settings.replicator_metrics_port,
        19104: settings.broker_gateway_metrics_port,
        19105: settings.orders_projection_metrics_port,
    }
    script = re.sub(r"\b(\d{4,5})\b", lambda m: str(ports.get(int(m.group(1)), m.group(1))), script)
    for default, name in names.items():
        script = re.sub(rf"\b{default}\b", name, script)
    return script


@pytest.fixture(scope="module")
async def stack(backing):
    async with package_stack(backing, "operator") as running:
        yield running


async def test_the_operator_guide_works_as_written(stack, unique):
    names = {"master_trader": unique("master"), "follower1": unique("follower"), "FOLLOW001": unique("F")}
    settings = stack.settings
    mock_url = f"http://127.0.0.1:{settings.mock_iifl_port}"
    async with httpx.AsyncClient(base_url=stack.envoy_url, timeout=30) as rest, httpx.AsyncClient(
        base_url=mock_url
    ) as mock:
        # The REST tour's users: a master, and a follower with a linked IIFL Capital account.
        tokens = {}
        for role, name in (("MASTER", names["master_trader"]), ("FOLLOWER", names["follower1"])):
            body = {"email": f"{name}@example.com", "username": name, "password": PASSWORD, "role": role}
            assert (await rest.post("/api/users/register", json=body)).status_code == 200
            grant = await rest.post("/api/users/login", data={"username": name, "password": PASSWORD})
            tokens[role] = {"Authorization": f"Bearer {grant.json()['access_token']}"}
            if role == "MASTER":
                master_id = grant.json()["user"]["id"]
        account = (
            await mock.post("/_mock/accounts", json={"dialect": "iifl_v1", "client_id": names["FOLLOW001"]})
        ).json()
        linked = await rest.post(
            "/api/broker/accounts",
            json={
                "dialect": "IIFL_CAPITAL_V1",
                "client_code": names["FOLLOW001"],
                "app_key": account["app_key"],
                "app_secret": account["app_secret"],
                "auth_code": account["auth_code"],
            },
            headers=tokens["FOLLOWER"],
        )
        assert linked.status_code == 200 and linked.json()["account"]["status"] == "LINKED", linked.text
        followed = await rest.post(
            "/api/masters/follow",
            json={"master_id": int(master_id), "copy_strategy": "FIXED_QUANTITY", "fixed_quantity": 1},
            headers=tokens["FOLLOWER"],
        )
        assert followed.status_code == 200, followed.text

        async def place_and_settle() -> dict:
            order_id = await place_market_buy(rest, tokens["MASTER"], "RELIANCE", 1)

            async def report():
                return (await rest.get(f"/api/orders/{order_id}/replication", headers=tokens["MASTER"])).json()

            def settled(answer) -> bool:
                # Complete, and for the one follower (an empty report is trivially complete).
                summary = answer.get("summary", {})
                return summary.get("complete") is True and summary.get("followers_targeted") == "1"

            return await eventually(report, settled, timeout=30)

        first = await place_and_settle()
        assert first["summary"]["placed"] == "1", first

        script = "\n".join(for_this_stack(block, settings, names) for block in guide_blocks())
        environment = {**os.environ, **stack.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        done = await asyncio.to_thread(
            subprocess.run,
            ["bash", "-euo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=README.parent,
            env=environment,
        )
        assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
        output = done.stdout
        assert output.count('"status": "SERVING"') == 4, output
        assert '"status":"NEEDS_RELOGIN"' in output, output  # the lapsed session, as the follower sees it
        assert 'reason="NEEDS_RELOGIN"' in output, output
        assert output.rstrip().endswith("}") and '"summary"' in output, output

        # After the guide's relink, the follower's next copy is placed again.
        account_now = await rest.get("/api/broker/accounts/me", headers=tokens["FOLLOWER"])
        assert account_now.json()["account"]["status"] == "LINKED", account_now.text
        assert (await place_and_settle())["summary"]["placed"] == "1"
