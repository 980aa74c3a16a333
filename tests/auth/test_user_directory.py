"""UserDirectoryService: service tokens only, batch look-ups, role listing with pages."""

import grpc
import pytest

from copytrade.auth.v1 import auth_pb2, auth_pb2_grpc
from copytrade.core.tokens import issue_access_token, issue_service_token
from tests.auth.test_auth_service import bearer, expect_error, register

Code = grpc.StatusCode


@pytest.fixture(scope="session")
def directory_stub(auth_channel):
    return auth_pb2_grpc.UserDirectoryServiceStub(auth_channel)


@pytest.fixture
def service(base_settings):
    return bearer(issue_service_token(base_settings))


async def test_batch_get_returns_found_users_in_request_order(auth_stub, directory_stub, service, unique):
    master = await register(auth_stub, unique, role="MASTER")
    follower = await register(auth_stub, unique, role="FOLLOWER")
    reply = await directory_stub.BatchGetUsers(
        auth_pb2.BatchGetUsersRequest(user_ids=[follower.id, 987_654_321_000, master.id, follower.id]),
        metadata=service,
    )
    assert [(u.id, u.role) for u in reply.users] == [(follower.id, "FOLLOWER"), (master.id, "MASTER")]


@pytest.mark.parametrize("role", ["MASTER", "FOLLOWER"])
async def test_users_cannot_use_the_directory(base_settings, directory_stub, role):
    token, _ = issue_access_token(base_settings, 1, role)
    await expect_error(
        directory_stub.BatchGetUsers(auth_pb2.BatchGetUsersRequest(user_ids=[1]), metadata=bearer(token)),
        Code.PERMISSION_DENIED,
    )
    await expect_error(
        directory_stub.ListUsers(auth_pb2.ListUsersRequest(role="MASTER"), metadata=bearer(token)),
        Code.PERMISSION_DENIED,
    )


async def test_an_admin_may_use_the_directory(base_settings, directory_stub):
    token, _ = issue_access_token(base_settings, 1, "ADMIN")
    reply = await directory_stub.BatchGetUsers(auth_pb2.BatchGetUsersRequest(), metadata=bearer(token))
    assert list(reply.users) == []


async def test_the_directory_needs_a_token(directory_stub):
    await expect_error(
        directory_stub.ListUsers(auth_pb2.ListUsersRequest(role="MASTER")), Code.UNAUTHENTICATED
    )


async def test_list_users_pages_through_one_role_matching_a_prefix(
    auth_stub, directory_stub, service, unique
):
    prefix = unique("dir")
    masters = [await register(auth_stub, unique, role="MASTER", username=f"{prefix}m{i}") for i in range(3)]
    await register(auth_stub, unique, role="FOLLOWER", username=f"{prefix}f")
    seen, token = [], ""
    while True:
        page = await directory_stub.ListUsers(
            auth_pb2.ListUsersRequest(role="master", page_size=2, page_token=token, query=prefix.upper()),
            metadata=service,
        )
        assert len(page.users) <= 2
        seen.extend(page.users)
        token = page.next_page_token
        if not token:
            break
    assert [u.id for u in seen] == [m.id for m in masters]
    assert {u.role for u in seen} == {"MASTER"}


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"role": ""}, "role"),
        ({"role": "TRADER"}, "role"),
        ({"role": "MASTER", "page_size": -1}, "page_size"),
        ({"role": "MASTER", "page_token": "not-ours"}, "page_token"),
        ({"role": "MASTER", "query": "x" * 101}, "query"),
    ],
)
async def test_list_users_rejects_bad_input_naming_the_field(directory_stub, service, request_fields, field):
    error = await expect_error(
        directory_stub.ListUsers(auth_pb2.ListUsersRequest(**request_fields), metadata=service),
        Code.INVALID_ARGUMENT,
        field,
    )
    assert error.details().startswith(f"{field}:")


async def test_batch_get_rejects_bad_ids(directory_stub, service):
    await expect_error(
        directory_stub.BatchGetUsers(auth_pb2.BatchGetUsersRequest(user_ids=[0]), metadata=service),
        Code.INVALID_ARGUMENT,
        "user_ids",
    )
    await expect_error(
        directory_stub.BatchGetUsers(
            auth_pb2.BatchGetUsersRequest(user_ids=range(1, 1002)), metadata=service
        ),
        Code.INVALID_ARGUMENT,
        "user_ids",
    )
