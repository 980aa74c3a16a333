"""The logs of a real flow: JSON lines, no secret anywhere, and a line about a replicated order that
names the order, its master order, its follower and its trace."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SERVICES = ("auth", "orders", "replicator", "broker_gateway")


def log_files(stack) -> list[Path]:
    files = sorted((stack.data_dir / "logs").glob("*.log"))
    assert {f.stem for f in files} >= {*SERVICES, "envoy", "mock_iifl"}, files
    return files


def json_lines(path: Path) -> list[dict]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
    return lines


async def test_no_password_token_or_broker_secret_reaches_any_log(stack, replicated):
    secrets = replicated.secrets
    # Passwords, access and refresh JWTs of three users, two broker secrets, an auth code, two sessions.
    assert len(secrets) == 3 * 3 + 5, sorted(secrets)
    for path in log_files(stack):
        content = path.read_text(errors="replace")
        leaked = [what for what, value in secrets.items() if value in content]
        assert not leaked, f"{path.name} holds {leaked}"


async def test_a_line_about_a_copy_names_order_master_follower_and_trace(stack, replicated, collector):
    receiver, _ = collector
    # The replicator's span may still be on its way (spans leave every 200 ms).
    [replicate] = await receiver.wait_for(
        lambda: receiver.find(
            lambda s: (
                s.name == "replicate master order"
                and s.attributes.get("copytrade.master_order_id") == replicated.order_id
            )
        )
    )
    gateway = json_lines(stack.data_dir / "logs" / "broker_gateway.log")
    copies = [
        line
        for line in gateway
        if line.get("event") == "copy_placed" and line.get("master_order_id") == replicated.order_id
    ]
    assert {line["follower_id"] for line in copies} == set(replicated.follower_ids), copies
    for line in copies:
        assert isinstance(line["order_id"], int) and line["order_id"] > 0, line
        assert line["trace_id"] == replicate.trace_id, line
        assert line["service"] == "broker_gateway" and line["outcome"] == "PLACEMENT_OUTCOME_PLACED", line

    # The replicator's and the orders service's lines about the order carry its ids and trace too.
    timeline = [
        line
        for line in json_lines(stack.data_dir / "logs" / "replicator.log")
        if line.get("event") == "replication_timeline" and line.get("master_order_id") == replicated.order_id
    ]
    assert timeline and all(line["trace_id"] == replicate.trace_id for line in timeline), timeline
    accepted = [
        line
        for line in json_lines(stack.data_dir / "logs" / "orders.log")
        if line.get("event") == "order_accepted" and line.get("order_id") == replicated.order_id
    ]
    assert len(accepted) == 1, accepted
    assert accepted[0]["master_order_id"] == replicated.order_id
    assert accepted[0]["trace_id"] == replicate.trace_id
