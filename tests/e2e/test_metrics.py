"""Every service's /metrics, scraped around one master order, agrees with what happened: the order
placed once, its fan-out run once, each copy counted under its final status, the broker called for
each copy it received; and a throttled login is counted. Deltas, so other tests' traffic does not
matter. Envoy's own metrics stay on its admin port (/stats/prometheus)."""

from collections import Counter

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.flows import PASSWORD, eventually, link_and_follow, place_market_buy, register_and_login

pytestmark = pytest.mark.e2e

SERVICES = ("auth", "orders", "replicator", "broker_gateway")
Samples = dict[tuple[str, frozenset], float]
HANDLED = "copytrade_grpc_server_handled_total"


async def scrape(stack, service: str) -> Samples:
    port = stack.settings.metrics_port(service)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200, (service, response.text)
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def by_label(samples: Samples, name: str, *keys: str) -> Counter:
    """The samples of `name` summed by the given labels."""
    totals: Counter = Counter()
    for (sample, labels), amount in samples.items():
        if sample == name:
            found = dict(labels)
            totals[tuple(found.get(key, "") for key in keys)] += amount
    return totals


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def drained(samples: Samples, labels: dict[str, str]) -> bool:
    """The consumer's gauges are there, and its backlog is empty: everything was delivered.

    Unacknowledged messages are not required to be 0: the durable is shared with every test and,
    against external servers, with earlier runs, whose deliberately unresolvable updates may still
    be waiting for redelivery (up to 10 minutes, services/orders/projection.py MAX_WAITS)."""
    pending = "copytrade_jetstream_consumer_pending_messages"
    ack_pending = "copytrade_jetstream_consumer_ack_pending_messages"
    key = frozenset(labels.items())
    return (pending, key) in samples and (ack_pending, key) in samples and value(samples, pending, **labels) == 0


def grown(before: Counter, after: Counter) -> dict:
    return {key: after[key] - before[key] for key in after if after[key] != before[key]}


async def test_metrics_agree_with_a_replicated_master_order(stack, rest, unique):
    master = await register_and_login(rest, unique, "MASTER")
    strategy = {"copy_strategy": "FIXED_QUANTITY", "fixed_quantity": 2}
    for _ in range(2):
        follower = await register_and_login(rest, unique, "FOLLOWER")
        await link_and_follow(rest, unique, follower, master, strategy)
    # Follows without a linked broker account: the copy fails before any broker call.
    unlinked = await register_and_login(rest, unique, "FOLLOWER")
    followed = await rest.post(
        "/api/masters/follow", json={"master_id": int(master["id"]), **strategy}, headers=unlinked["headers"]
    )
    assert followed.status_code == 200, followed.text

    before = {service: await scrape(stack, service) for service in SERVICES}
    order_id = await place_market_buy(rest, master["headers"], "INFY", 1)

    async def master_view():
        return (await rest.get(f"/api/orders/{order_id}", headers=master["headers"])).json()

    view = await eventually(
        master_view,
        lambda v: len(v.get("follower_orders", [])) == 3
        and all(c["status"] not in ("PENDING", "") for c in v["follower_orders"]),
    )
    outcomes = Counter((c["status"], c.get("status_reason_code", "")) for c in view["follower_orders"])
    assert outcomes == {("SUBMITTED", ""): 2, ("FAILED", "ACCOUNT_NOT_LINKED"): 1}, view

    # The fan-out is observed once its run ends, a moment after the copies are visible.
    fanouts = "copytrade_replication_fanout_seconds_count"
    replicator = await eventually(
        lambda: scrape(stack, "replicator"),
        lambda s: value(s, fanouts) > value(before["replicator"], fanouts),
    )
    assert delta(before["replicator"], replicator, fanouts) == 1
    copies = "copytrade_replication_follower_orders_total"
    statuses = [by_label(s, copies, "status", "reason") for s in (before["replicator"], replicator)]
    assert grown(*statuses) == {("SUBMITTED", ""): 2, ("FAILED", "ACCOUNT_NOT_LINKED"): 1}
    # Only the two copies sent to the broker have a broker latency.
    latencies = "copytrade_replication_follower_order_seconds_count"
    assert delta(before["replicator"], replicator, latencies) == 2

    orders = await scrape(stack, "orders")
    place = {"grpc_service": "copytrade.orders.v1.OrderService", "grpc_method": "PlaceOrder"}
    place["grpc_code"] = "OK"
    assert delta(before["orders"], orders, HANDLED, **place) == 1
    assert delta(before["orders"], orders, "copytrade_grpc_server_handling_seconds_count", **place) == 1

    gateway = await scrape(stack, "broker_gateway")
    broker_calls = "copytrade_broker_calls_total"
    assert delta(before["broker_gateway"], gateway, broker_calls, dialect="xts", call="place") >= 2
    fanout = {
        "grpc_service": "copytrade.broker.v1.BrokerGatewayService",
        "grpc_method": "ExecuteFanout",
        "grpc_code": "OK",
    }
    # A server stream, counted when it ended, with its final code.
    assert delta(before["broker_gateway"], gateway, HANDLED, **fanout) == 1
    breakers = by_label(gateway, "copytrade_broker_circuit_breakers", "dialect", "state")
    assert breakers[("xts", "closed")] >= 2 and breakers[("xts", "open")] == 0, breakers

    # JetStream lag of both durable consumers, refreshed every few seconds: drained once all is done.
    for service, stream, consumer in (
        ("replicator", "ORDERS", "replicator"),
        ("orders_projection", "ORDER_UPDATES", "orders-projection"),
    ):
        labels = {"stream": stream, "consumer": consumer}
        lag = await eventually(
            lambda service=service: scrape(stack, service), lambda s, at=labels: drained(s, at)
        )
        assert drained(lag, labels), (service, {k: v for k, v in lag.items() if "jetstream" in k[0]})


async def test_a_throttled_login_is_counted(stack, rest, registered_user):
    throttled = "copytrade_auth_login_throttled_total"
    before = await scrape(stack, "auth")
    attempts = stack.settings.login_failures_per_username
    for _ in range(attempts):
        wrong = await rest.post(
            "/api/users/login", data={"username": registered_user["username"], "password": PASSWORD + "x"}
        )
        assert wrong.status_code == 401, wrong.text
    refused = await rest.post(
        "/api/users/login", data={"username": registered_user["username"], "password": PASSWORD}
    )
    assert refused.status_code == 429, refused.text
    after = await scrape(stack, "auth")
    assert value(after, throttled, limit="username") - value(before, throttled, limit="username") == 1
    assert value(after, throttled, limit="address") == value(before, throttled, limit="address")
    # The refusal is also an RPC answered RESOURCE_EXHAUSTED.
    exhausted = grown(by_label(before, HANDLED, "grpc_code"), by_label(after, HANDLED, "grpc_code"))
    assert exhausted.get(("RESOURCE_EXHAUSTED",)) == 1, exhausted


async def test_envoy_serves_its_own_metrics_on_its_admin_port(stack):
    async with httpx.AsyncClient(base_url=stack.envoy_admin_url, timeout=10) as admin:
        response = await admin.get("/stats/prometheus")
    assert response.status_code == 200
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"envoy_cluster_upstream_rq", "envoy_cluster_upstream_rq_total"} & names, sorted(names)[:20]
