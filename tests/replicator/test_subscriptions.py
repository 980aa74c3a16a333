"""ReplicatorService's copy subscriptions over real gRPC, with the real auth service as directory."""

import asyncio
from decimal import Decimal

import grpc
import pytest

from copytrade.auth.v1 import auth_pb2
from copytrade.core import jetstream
from copytrade.core.tokens import issue_access_token
from copytrade.replicator.v1 import replicator_pb2 as pb
from services.replicator.subscriptions import SubscriptionRepository

Code = grpc.StatusCode


class User:
    def __init__(self, record: auth_pb2.RegisterResponse, settings) -> None:
        self.id = record.id
        self.username = record.username
        self.role = record.role
        token, _ = issue_access_token(settings, record.id, record.role)
        self.auth = (("authorization", f"Bearer {token}"),)


@pytest.fixture
def make_user(auth_stub, replicator_settings, unique):
    async def make(role: str, name: str | None = None) -> User:
        username = name or unique(role[0].lower())
        record = await auth_stub.Register(
            auth_pb2.RegisterRequest(
                email=f"{username}@example.com", username=username, password="Password123!", role=role
            )
        )
        return User(record, replicator_settings)

    return make


async def expect_error(call, code, field=None):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == code, raised.value.details()
    if field is not None:
        assert raised.value.details().startswith(f"{field}:"), raised.value.details()
    return raised.value


async def follow(stub, user, **fields):
    return await stub.Follow(pb.FollowRequest(**fields), metadata=user.auth)


async def test_the_seeds_body_follows_at_a_fixed_ratio(replicator_stub, make_user):
    master, follower = await make_user("MASTER"), await make_user("FOLLOWER")
    reply = await follow(
        replicator_stub, follower, master_id=master.id, copy_strategy="FIXED_RATIO", ratio=1.0
    )
    assert reply.created
    sub = reply.subscription
    assert (sub.follower_id, sub.master_id) == (follower.id, master.id)
    assert (sub.follower_username, sub.master_username) == (follower.username, master.username)
    assert (sub.copy_strategy, sub.ratio, sub.percentage, sub.fixed_quantity) == ("FIXED_RATIO", "1.0", "", 0)
    assert sub.status == "ACTIVE" and sub.max_quantity == 0
    assert sub.created_at.endswith("+00:00")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"copy_strategy": "fixed_ratio", "ratio": 0.1}, ("FIXED_RATIO", "0.1", "", 0)),
        ({"copy_strategy": "PERCENTAGE", "percentage": 12.5}, ("PERCENTAGE", "", "12.5", 0)),
        ({"copy_strategy": "FIXED_QUANTITY", "fixed_quantity": 25}, ("FIXED_QUANTITY", "", "", 25)),
        ({"ratio": 2.5, "max_quantity": 500}, ("FIXED_RATIO", "2.5", "", 0)),
    ],
)
async def test_follow_with_each_strategy(replicator, replicator_stub, make_user, fields, expected):
    master, follower = await make_user("MASTER"), await make_user("FOLLOWER")
    sub = (await follow(replicator_stub, follower, master_id=master.id, **fields)).subscription
    assert (sub.copy_strategy, sub.ratio, sub.percentage, sub.fixed_quantity) == expected
    assert sub.max_quantity == fields.get("max_quantity", 0)
    [stored] = await replicator.subscriptions.active_subscriptions(master.id)
    # Exact decimals in the database: 0.1 is 0.1, not the double nearest to it.
    assert stored.ratio == (Decimal(expected[1]) if expected[1] else None)
    assert stored.percentage == (Decimal(expected[2]) if expected[2] else None)


async def test_following_again_updates_and_resumes_the_subscription(replicator_stub, make_user):
    master, follower = await make_user("MASTER"), await make_user("FOLLOWER")
    first = (await follow(replicator_stub, follower, master_id=master.id, ratio=1.0)).subscription
    same = await follow(replicator_stub, follower, master_id=master.id, ratio=1.0)
    assert not same.created and same.subscription == first
    await replicator_stub.PauseFollowing(
        pb.PauseFollowingRequest(master_id=master.id), metadata=follower.auth
    )
    again = await follow(
        replicator_stub, follower, master_id=master.id, copy_strategy="PERCENTAGE", percentage=5
    )
    assert not again.created
    sub = again.subscription
    assert sub.id == first.id and sub.created_at == first.created_at
    assert (sub.copy_strategy, sub.ratio, sub.percentage, sub.status) == ("PERCENTAGE", "", "5.0", "ACTIVE")
    assert sub.updated_at > first.updated_at


async def test_update_follow_changes_only_what_is_given(replicator_stub, make_user):
    master, follower = await make_user("MASTER"), await make_user("FOLLOWER")
    await follow(replicator_stub, follower, master_id=master.id, ratio=1.5, max_quantity=100)
    capped = await replicator_stub.UpdateFollow(
        pb.UpdateFollowRequest(master_id=master.id, max_quantity=40), metadata=follower.auth
    )
    assert (capped.subscription.ratio, capped.subscription.max_quantity) == ("1.5", 40)
    switched = await replicator_stub.UpdateFollow(
        pb.UpdateFollowRequest(master_id=master.id, copy_strategy="FIXED_QUANTITY", fixed_quantity=3),
        metadata=follower.auth,
    )
    sub = switched.subscription
    assert (sub.copy_strategy, sub.ratio, sub.fixed_quantity, sub.max_quantity) == (
        "FIXED_QUANTITY",
        "",
        3,
        40,
    )
    uncapped = await replicator_stub.UpdateFollow(
        pb.UpdateFollowRequest(master_id=master.id, max_quantity=0), metadata=follower.auth
    )
    assert uncapped.subscription.max_quantity == 0
    await expect_error(
        replicator_stub.UpdateFollow(
            pb.UpdateFollowRequest(master_id=master.id, copy_strategy="PERCENTAGE"), metadata=follower.auth
        ),
        Code.INVALID_ARGUMENT,
        "percentage",
    )


async def test_pause_resume_and_unfollow_change_who_the_pipeline_copies_to(
    replicator, replicator_stub, make_user
):
    master = await make_user("MASTER")
    one, two = await make_user("FOLLOWER"), await make_user("FOLLOWER")
    for follower in (one, two):
        await follow(replicator_stub, follower, master_id=master.id, ratio=1.0)
    active = replicator.subscriptions.active_subscriptions
    assert [s.follower_id for s in await active(master.id)] == [one.id, two.id]

    paused = await replicator_stub.PauseFollowing(
        pb.PauseFollowingRequest(master_id=master.id), metadata=one.auth
    )
    assert paused.subscription.status == "PAUSED"
    again = await replicator_stub.PauseFollowing(
        pb.PauseFollowingRequest(master_id=master.id), metadata=one.auth
    )
    assert again.subscription == paused.subscription
    assert [s.follower_id for s in await active(master.id)] == [two.id]

    resumed = await replicator_stub.ResumeFollowing(
        pb.ResumeFollowingRequest(master_id=master.id), metadata=one.auth
    )
    assert resumed.subscription.status == "ACTIVE"
    assert [s.follower_id for s in await active(master.id)] == [one.id, two.id]

    await replicator_stub.Unfollow(pb.UnfollowRequest(master_id=master.id), metadata=two.auth)
    assert [s.follower_id for s in await active(master.id)] == [one.id]
    await expect_error(
        replicator_stub.Unfollow(pb.UnfollowRequest(master_id=master.id), metadata=two.auth),
        Code.NOT_FOUND,
        "master_id",
    )
    for call, request in (
        (replicator_stub.PauseFollowing, pb.PauseFollowingRequest),
        (replicator_stub.ResumeFollowing, pb.ResumeFollowingRequest),
    ):
        await expect_error(call(request(master_id=master.id), metadata=two.auth), Code.NOT_FOUND, "master_id")


async def test_another_replicas_cache_is_invalidated_over_nats(
    replicator, replicator_stub, replicator_settings, make_user
):
    """A second replica (own repository, cache and NATS connection) sees a change made via the first."""
    master, follower = await make_user("MASTER"), await make_user("FOLLOWER")
    await follow(replicator_stub, follower, master_id=master.id, ratio=1.0)
    other = SubscriptionRepository(replicator.subscriptions._sessions)
    nats = await jetstream.connect(replicator_settings, "test-replica")
    try:
        await other.cache.listen(nats)
        await nats.flush()
        assert len(await other.active_subscriptions(master.id)) == 1
        await replicator_stub.PauseFollowing(
            pb.PauseFollowingRequest(master_id=master.id), metadata=follower.auth
        )
        for _ in range(100):
            if not await other.active_subscriptions(master.id):
                break
            await asyncio.sleep(0.02)
        assert await other.active_subscriptions(master.id) == []
    finally:
        await other.cache.close()
        await nats.drain()


async def test_lists_show_each_side_only_their_own(replicator_stub, make_user):
    master, other_master = await make_user("MASTER"), await make_user("MASTER")
    one, two = await make_user("FOLLOWER"), await make_user("FOLLOWER")
    await follow(replicator_stub, one, master_id=master.id, ratio=1.0)
    await follow(
        replicator_stub, one, master_id=other_master.id, copy_strategy="FIXED_QUANTITY", fixed_quantity=1
    )
    await follow(replicator_stub, two, master_id=master.id, ratio=0.5)
    await follow(replicator_stub, two, master_id=other_master.id, ratio=2.0)
    await replicator_stub.PauseFollowing(pb.PauseFollowingRequest(master_id=master.id), metadata=two.auth)

    mine = await replicator_stub.ListMyMasters(pb.ListMyMastersRequest(), metadata=one.auth)
    assert [(s.master_id, s.follower_id) for s in mine.subscriptions] == [
        (master.id, one.id),
        (other_master.id, one.id),
    ]

    followers = await replicator_stub.ListFollowers(pb.ListFollowersRequest(), metadata=master.auth)
    assert [(s.follower_id, s.master_id, s.status) for s in followers.subscriptions] == [
        (one.id, master.id, "ACTIVE"),
        (two.id, master.id, "PAUSED"),
    ]
    active = await replicator_stub.ListFollowers(
        pb.ListFollowersRequest(status="active"), metadata=master.auth
    )
    assert [s.follower_id for s in active.subscriptions] == [one.id]

    first = await replicator_stub.ListFollowers(
        pb.ListFollowersRequest(page_size=1), metadata=other_master.auth
    )
    assert [s.follower_id for s in first.subscriptions] == [one.id] and first.next_page_token
    second = await replicator_stub.ListFollowers(
        pb.ListFollowersRequest(page_size=1, page_token=first.next_page_token), metadata=other_master.auth
    )
    assert [s.follower_id for s in second.subscriptions] == [two.id] and not second.next_page_token
    await expect_error(
        replicator_stub.ListFollowers(
            pb.ListFollowersRequest(page_size=1, page_token=first.next_page_token, status="PAUSED"),
            metadata=other_master.auth,
        ),
        Code.INVALID_ARGUMENT,
        "page_token",
    )
    await expect_error(
        replicator_stub.ListFollowers(pb.ListFollowersRequest(), metadata=one.auth), Code.PERMISSION_DENIED
    )


async def test_list_masters_puts_the_most_followed_first(replicator_stub, make_user, unique):
    prefix = unique("lm")
    quiet = await make_user("MASTER", f"{prefix}quiet")
    popular = await make_user("MASTER", f"{prefix}popular")
    liked = await make_user("MASTER", f"{prefix}liked")
    await make_user("FOLLOWER", f"{prefix}follower")
    fans = [await make_user("FOLLOWER") for _ in range(3)]
    for fan in fans:
        await follow(replicator_stub, fan, master_id=popular.id, ratio=1.0)
    await follow(replicator_stub, fans[0], master_id=liked.id, ratio=1.0)

    seen, token = [], ""
    while True:
        page = await replicator_stub.ListMasters(
            pb.ListMastersRequest(page_size=1, page_token=token, query=prefix), metadata=fans[0].auth
        )
        seen.extend(page.masters)
        token = page.next_page_token
        if not token:
            break
    assert [(m.user_id, m.follower_count, m.my_subscription_status) for m in seen] == [
        (popular.id, 3, "ACTIVE"),
        (liked.id, 1, "ACTIVE"),
        (quiet.id, 0, ""),
    ]
    assert seen[0].username == popular.username and seen[0].created_at
    await expect_error(
        replicator_stub.ListMasters(pb.ListMastersRequest(page_token="garbage"), metadata=fans[0].auth),
        Code.INVALID_ARGUMENT,
        "page_token",
    )


async def test_only_followers_follow(replicator_stub, make_user):
    master, other = await make_user("MASTER"), await make_user("MASTER")
    await expect_error(follow(replicator_stub, master, master_id=other.id, ratio=1.0), Code.PERMISSION_DENIED)


async def test_the_master_must_exist_and_be_a_master(replicator_stub, make_user):
    follower, other_follower = await make_user("FOLLOWER"), await make_user("FOLLOWER")
    await expect_error(
        follow(replicator_stub, follower, master_id=other_follower.id, ratio=1.0),
        Code.INVALID_ARGUMENT,
        "master_id",
    )
    await expect_error(
        follow(replicator_stub, follower, master_id=9_876_543_210, ratio=1.0), Code.NOT_FOUND, "master_id"
    )
    await expect_error(
        follow(replicator_stub, follower, master_id=follower.id, ratio=1.0),
        Code.INVALID_ARGUMENT,
        "master_id",
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"master_id": 0, "ratio": 1.0}, "master_id"),
        ({"copy_strategy": "MIRROR", "ratio": 1.0}, "copy_strategy"),
        ({"copy_strategy": "FIXED_RATIO"}, "ratio"),
        ({"ratio": -1.0}, "ratio"),
        ({"ratio": 100.5}, "ratio"),
        ({"ratio": 0.00001}, "ratio"),
        ({"ratio": float("nan")}, "ratio"),
        ({"ratio": float("inf")}, "ratio"),
        ({"copy_strategy": "PERCENTAGE"}, "percentage"),
        ({"copy_strategy": "PERCENTAGE", "percentage": 101}, "percentage"),
        ({"copy_strategy": "PERCENTAGE", "percentage": 1.234}, "percentage"),
        ({"copy_strategy": "PERCENTAGE", "percentage": 10, "ratio": 1.0}, "ratio"),
        ({"copy_strategy": "FIXED_QUANTITY"}, "fixed_quantity"),
        ({"copy_strategy": "FIXED_QUANTITY", "fixed_quantity": -5}, "fixed_quantity"),
        ({"copy_strategy": "FIXED_QUANTITY", "fixed_quantity": 10**12}, "fixed_quantity"),
        ({"ratio": 1.0, "fixed_quantity": 3}, "fixed_quantity"),
        ({"ratio": 1.0, "max_quantity": -1}, "max_quantity"),
    ],
)
async def test_bad_parameters_are_refused_naming_the_field(replicator_stub, make_user, fields, field):
    master, follower = await make_user("MASTER"), await make_user("FOLLOWER")
    await expect_error(
        follow(replicator_stub, follower, **{"master_id": master.id, **fields}), Code.INVALID_ARGUMENT, field
    )


async def test_calls_need_a_token(replicator_stub):
    await expect_error(replicator_stub.ListMyMasters(pb.ListMyMastersRequest()), Code.UNAUTHENTICATED)


async def test_list_my_masters_pages_oldest_first(replicator_stub, make_user):
    follower = await make_user("FOLLOWER")
    masters = [await make_user("MASTER") for _ in range(3)]
    for master in masters:
        await follow(replicator_stub, follower, master_id=master.id, ratio=1.0)
    seen, token = [], ""
    while True:
        page = await replicator_stub.ListMyMasters(
            pb.ListMyMastersRequest(page_size=2, page_token=token), metadata=follower.auth
        )
        assert len(page.subscriptions) <= 2
        seen.extend(s.master_id for s in page.subscriptions)
        token = page.next_page_token
        if not token:
            break
    assert seen == [m.id for m in masters]
    await expect_error(
        replicator_stub.ListMyMasters(pb.ListMyMastersRequest(page_size=-1), metadata=follower.auth),
        Code.INVALID_ARGUMENT,
        "page_size",
    )
