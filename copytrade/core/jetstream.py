"""NATS JetStream: the connection every service uses and the streams the platform relies on.

Streams (see protos/copytrade/events/v1/events.proto for the message bodies):
- ORDERS: `orders.accepted.<master_user_id>`, master orders to replicate (work queue semantics are
  not used: a limits stream keeps history for replays, the replicator's durable consumer tracks what
  is done).
- ORDER_UPDATES: `orders.updates.<user_id>`, every status change of every order.

Both deduplicate on the `Nats-Msg-Id` header within DUPLICATE_WINDOW_SECONDS, so a publish repeated
after a crash (an outbox row sent twice) is stored once. Each is kept on NATS_STREAM_REPLICAS servers
of a NATS cluster (the replicator's durable consumer inherits that).
"""

from __future__ import annotations

import dataclasses

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from copytrade.core.settings import Settings

ORDERS_STREAM = "ORDERS"
ORDER_UPDATES_STREAM = "ORDER_UPDATES"
DUPLICATE_WINDOW_SECONDS = 2 * 60 * 60  # longer than any outbox retry or consumer redelivery
MAX_AGE_SECONDS = 7 * 24 * 60 * 60


def accepted_subject(master_user_id: int) -> str:
    return f"orders.accepted.{master_user_id}"


def updates_subject(user_id: int) -> str:
    return f"orders.updates.{user_id}"


# Core NATS (not a stream): the broker gateway says a user's linked account was linked, relinked or
# unlinked, so that caches of who trades through which account drop that user at once.
ACCOUNT_CHANGED_PREFIX = "broker.accounts.changed."


def account_changed_subject(user_id: int) -> str:
    return f"{ACCOUNT_CHANGED_PREFIX}{user_id}"


STREAMS = (
    StreamConfig(
        name=ORDERS_STREAM,
        subjects=["orders.accepted.*"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        max_age=MAX_AGE_SECONDS,
    ),
    StreamConfig(
        name=ORDER_UPDATES_STREAM,
        subjects=["orders.updates.*"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        max_age=MAX_AGE_SECONDS,
    ),
)


async def connect(settings: Settings, name: str) -> Client:
    """A connection that keeps reconnecting (NATS restarts must not end a service)."""
    return await nats.connect(
        servers=[url.strip() for url in settings.nats_url.split(",")],
        name=f"copytrade-{name}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
    )


async def ensure_streams(js: JetStreamContext, replicas: int = 1) -> None:
    """Create the platform's streams, or bring their configuration up to date; safe to repeat.

    replicas is settings.nats_stream_replicas; changing it later rescales an existing stream.
    """
    for stream in STREAMS:
        config = dataclasses.replace(stream, num_replicas=replicas)
        if config.name is None:  # StreamConfig allows it; every stream of STREAMS has one
            raise ValueError(f"a stream of STREAMS has no name: {config}")
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
        else:
            await js.update_stream(config)
