"""The seed's follow step (`POST /api/masters/follow`), run with curl as its README has it, via Envoy."""

import json

import grpc
import pytest

from copytrade.auth.v1 import auth_pb2, auth_pb2_grpc
from tests.e2e.test_grpc_through_envoy import grpcurl
from tests.e2e.test_seed_rest_tour import curl

pytestmark = pytest.mark.e2e
PASSWORD = "Password123!"


def register_and_login(stack, username: str, role: str) -> tuple[dict, str]:
    status, user = curl(
        "-X", "POST", f"{stack.envoy_url}/api/users/register",
        "-H", "Content-Type: application/json",
        "-d", json.dumps({"email": f"{username}@example.com", "username": username, "password": PASSWORD,
                          "role": role}),
    )
    assert status == 200, user
    status, grant = curl(
        "-X", "POST", f"{stack.envoy_url}/api/users/login",
        "-H", "Content-Type: application/x-www-form-urlencoded",
        "-d", f"username={username}&password={PASSWORD}",
    )
    assert status == 200, grant
    return user, grant["access_token"]


def test_the_seeds_follow_curl_through_envoy(stack, unique):
    master, master_token = register_and_login(stack, unique("master_trader"), "MASTER")
    follower, follower_token = register_and_login(stack, unique("follower"), "FOLLOWER")

    # Step 3 of the seed's tour, with the master's real id (a JSON number, as the seed sends it).
    status, followed = curl(
        "-X", "POST", f"{stack.envoy_url}/api/masters/follow",
        "-H", "Content-Type: application/json",
        "-H", f"Authorization: Bearer {follower_token}",
        "-d", json.dumps({"master_id": int(master["id"]), "copy_strategy": "FIXED_RATIO", "ratio": 1.0}),
    )
    assert status == 200, followed
    assert followed["created"] is True
    subscription = followed["subscription"]
    assert subscription["master_id"] == master["id"] and subscription["follower_id"] == follower["id"]
    assert (subscription["copy_strategy"], subscription["ratio"], subscription["status"]) == (
        "FIXED_RATIO", "1.0", "ACTIVE",
    )

    status, mine = curl(
        f"{stack.envoy_url}/api/masters/following", "-H", f"Authorization: Bearer {follower_token}"
    )
    assert status == 200 and [s["master_id"] for s in mine["subscriptions"]] == [master["id"]], mine
    status, theirs = curl(
        f"{stack.envoy_url}/api/masters/me/followers", "-H", f"Authorization: Bearer {master_token}"
    )
    assert status == 200 and [s["follower_id"] for s in theirs["subscriptions"]] == [follower["id"]], theirs

    # A master cannot follow, and a bad ratio is a 400 naming the field, both as JSON.
    status, refused = curl(
        "-X", "POST", f"{stack.envoy_url}/api/masters/follow",
        "-H", f"Authorization: Bearer {master_token}",
        "-d", json.dumps({"master_id": int(master["id"]), "copy_strategy": "FIXED_RATIO", "ratio": 1.0}),
    )
    assert status == 403 and refused["code"] == 7, refused
    status, bad = curl(
        "-X", "POST", f"{stack.envoy_url}/api/masters/follow",
        "-H", f"Authorization: Bearer {follower_token}",
        "-d", json.dumps({"master_id": int(master["id"]), "copy_strategy": "FIXED_RATIO", "ratio": 1000}),
    )
    assert status == 400 and bad["message"].startswith("ratio:"), bad


async def test_the_user_directory_is_not_reachable_through_envoy(stack, logged_in):
    listed = grpcurl("-plaintext", stack.envoy_target, "list")
    assert listed.returncode == 0, listed.stderr
    assert "copytrade.auth.v1.UserDirectoryService" not in listed.stdout.split()
    async with grpc.aio.insecure_channel(stack.envoy_target) as channel:
        stub = auth_pb2_grpc.UserDirectoryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ListUsers(
                auth_pb2.ListUsersRequest(role="MASTER"),
                metadata=(("authorization", f"Bearer {logged_in['access_token']}"),),
            )
    assert raised.value.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND), raised.value
