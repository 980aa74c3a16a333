"""One master order is one trace: Envoy → orders (PlaceOrder, the outbox's publish) → NATS → the
replicator → the broker gateway's ExecuteFanout → one span per broker call, each the child of the last."""

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

pytestmark = pytest.mark.e2e

BROKER = "copytrade.broker.v1.BrokerGatewayService"


async def test_a_master_order_is_one_trace_from_envoy_to_each_broker_call(collector, replicated):
    receiver, _ = collector

    def replication():
        return receiver.find(
            lambda s: (
                s.name == "replicate master order"
                and s.attributes.get("copytrade.master_order_id") == replicated.order_id
            )
        )

    [replicate] = await receiver.wait_for(replication)
    spans = receiver.traces[replicate.trace_id]

    def one(service: str, name: str):
        found = [s for s in spans if s.service == service and s.name == name]
        assert len(found) == 1, (service, name, sorted((s.service, s.name) for s in spans))
        return found[0]

    def complete():
        names = {(s.service, s.name) for s in spans}
        places = [s for s in spans if s.name == "broker.place_order"]
        return (
            {"envoy", "orders", "replicator", "broker_gateway"} <= {s.service for s in spans}
            and len(places) == 2
            and (("broker_gateway", f"{BROKER}/ExecuteFanout") in names)
        )

    await receiver.wait_for(complete)
    place_order = one("orders", "copytrade.orders.v1.OrderService/PlaceOrder")
    assert place_order.kind == Span.SPAN_KIND_SERVER
    # Envoy started the trace: its span is the root, and orders' PlaceOrder its child.
    [ingress] = [s for s in spans if s.service == "envoy"]
    assert ingress.parent_id == "" and place_order.parent_id == ingress.span_id

    publish = one("orders", "orders.accepted publish")
    assert (publish.kind, publish.parent_id) == (Span.SPAN_KIND_PRODUCER, place_order.span_id)
    assert (replicate.service, replicate.kind) == ("replicator", Span.SPAN_KIND_CONSUMER)
    assert replicate.parent_id == publish.span_id

    fanout_call = one("replicator", f"{BROKER}/ExecuteFanout")
    assert (fanout_call.kind, fanout_call.parent_id) == (Span.SPAN_KIND_CLIENT, replicate.span_id)
    fanout = one("broker_gateway", f"{BROKER}/ExecuteFanout")
    assert (fanout.kind, fanout.parent_id) == (Span.SPAN_KIND_SERVER, fanout_call.span_id)

    places = [s for s in spans if s.name == "broker.place_order"]
    assert len(places) == 2, places
    assert {s.parent_id for s in places} == {fanout.span_id}
    assert {s.attributes["broker.dialect"] for s in places} == {"XTS", "IIFL_CAPITAL_V1"}
    assert {s.attributes["broker.outcome"] for s in places} == {"placed"}
    assert all(s.kind == Span.SPAN_KIND_CLIENT and s.attributes["broker.order_id"] for s in places)
    assert len({s.attributes["broker.account_id"] for s in places}) == 2
