"""The seed's REST tour for users, run with curl exactly as its README prints it, through Envoy."""

import json
import subprocess

import pytest

pytestmark = pytest.mark.e2e


def curl(*args: str) -> tuple[int, dict]:
    """Run curl; return the HTTP status and the JSON body."""
    done = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=30, check=True
    )
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body) if body.strip() else {}


def test_health_is_the_seeds_json_with_real_dependencies(stack):
    status, body = curl(f"{stack.envoy_url}/health")
    assert status == 200
    assert body["status"] == "healthy", body
    assert body["environment"] == "development"
    assert body["version"]
    names = {d["name"]: d["status"] for d in body["dependencies"]}
    assert names == {n: "ok" for n in ("postgres", "redis", "nats", "auth", "orders", "replicator", "broker_gateway")}


def test_register_login_and_me_with_the_seeds_curl_commands(stack, unique):
    master, follower = unique("master_trader"), unique("follower")
    # Step 1 of the seed's tour, with only the names made unique per run.
    status, created = curl(
        "-X", "POST", f"{stack.envoy_url}/api/users/register",
        "-H", "Content-Type: application/json",
        "-d", json.dumps({
            "email": f"{master}@example.com", "username": master, "password": "Password123!",
            "full_name": "Master Trader", "role": "MASTER", "iifl_account_id": "MASTER001",
        }),
    )
    assert status == 200, created
    assert created["username"] == master and created["role"] == "MASTER"
    assert created["balance"] == "10000.00"
    status, created_follower = curl(
        "-X", "POST", f"{stack.envoy_url}/api/users/register",
        "-H", "Content-Type: application/json",
        "-d", json.dumps({
            "email": f"{follower}@example.com", "username": follower, "password": "Password123!",
            "full_name": "Follower One", "role": "FOLLOWER", "iifl_account_id": "FOLLOW001",
        }),
    )
    assert status == 200 and created_follower["role"] == "FOLLOWER"

    # Step 2: the seed logs in with an HTML form, not JSON.
    status, grant = curl(
        "-X", "POST", f"{stack.envoy_url}/api/users/login",
        "-H", "Content-Type: application/x-www-form-urlencoded",
        "-d", f"username={master}&password=Password123!",
    )
    assert status == 200, grant
    assert grant["token_type"] == "bearer"
    token = grant["access_token"]

    status, me = curl(f"{stack.envoy_url}/api/users/me", "-H", f"Authorization: Bearer {token}")
    assert status == 200, me
    assert me["user"]["username"] == master
    assert me["user"]["id"] == created["id"]


def test_login_also_takes_json(stack, registered_user):
    status, grant = curl(
        "-X", "POST", f"{stack.envoy_url}/api/users/login",
        "-H", "Content-Type: application/json",
        "-d", json.dumps({"username": registered_user["username"], "password": "Password123!"}),
    )
    assert status == 200 and grant["access_token"]
