"""Trace context carried across the platform's hops: NATS headers (through the orders outbox and the
replicator's consumer), gRPC metadata (client and server interceptors), log lines; and nothing at all
when tracing is off."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import grpc
import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from copytrade.core import tracing
from copytrade.core.logging import _add_trace_ids
from copytrade.events.v1 import events_pb2
from services.orders.outbox import OutboxPublisher
from services.replicator.pipeline.consumer import OrdersConsumer

SERVICE = "test.v1.EchoService"


@pytest.fixture
def spans(monkeypatch) -> InMemorySpanExporter:
    """Tracing on, into memory. The global provider is left alone: other tests run with tracing off."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "ENABLED", True)
    monkeypatch.setattr(tracing, "tracer", lambda: provider.get_tracer("test"))
    return exporter


def by_name(exporter: InMemorySpanExporter) -> dict:
    return {span.name: span for span in exporter.get_finished_spans()}


class FakeJetStream:
    def __init__(self) -> None:
        self.published: list[dict] = []

    async def publish(self, subject, payload, timeout, headers):
        self.published.append(headers)


class FakeMsg:
    """What OrdersConsumer reads of a JetStream message."""

    def __init__(self, data: bytes, headers: dict | None) -> None:
        self.data = data
        self.headers = headers
        self.subject = "orders.accepted.7"
        self.metadata = SimpleNamespace(num_delivered=1)
        self.acked = False

    async def ack_sync(self):
        self.acked = True

    async def nak(self, delay=None):
        pass

    async def term(self):
        pass

    async def in_progress(self):
        pass


async def test_a_master_order_keeps_its_trace_through_the_outbox_and_nats(spans):
    with tracing.tracer().start_as_current_span("PlaceOrder", kind=SpanKind.SERVER) as place:
        stored = tracing.current_traceparent()
    assert stored and stored.startswith("00-")

    js = FakeJetStream()
    publisher = OutboxPublisher(sessions=None, js=js)
    await publisher._publish("orders.accepted.7", b"", "order-42", stored)
    headers = js.published[0]
    assert headers["Nats-Msg-Id"] == "order-42"

    seen = {}

    async def handle(event, redelivered):
        seen["ids"] = tracing.current_ids()
        seen["bound"] = structlog.contextvars.get_contextvars().get("master_order_id")
        return True

    event = events_pb2.OrderAccepted(order_id=42, master_user_id=7)
    message = FakeMsg(event.SerializeToString(), headers)
    # In a task of its own, as run() starts it: what it binds stays in that task's context.
    await asyncio.create_task(OrdersConsumer(js=None, handle=handle)._work(message))
    assert message.acked

    finished = by_name(spans)
    publish, replicate = finished["orders.accepted publish"], finished["replicate master order"]
    trace_id = place.get_span_context().trace_id
    assert {publish.context.trace_id, replicate.context.trace_id} == {trace_id}
    assert publish.parent.span_id == place.get_span_context().span_id
    assert publish.kind is SpanKind.PRODUCER
    assert replicate.parent.span_id == publish.context.span_id
    assert replicate.kind is SpanKind.CONSUMER
    assert replicate.attributes["copytrade.master_order_id"] == 42
    # The handler ran inside the replication's span, its log context naming the master order.
    assert seen["ids"] == (format(trace_id, "032x"), format(replicate.context.span_id, "016x"))
    assert seen["bound"] == 42


async def test_grpc_calls_carry_the_trace_both_ways(spans):
    seen: dict[str, tuple[str, str] | None] = {}

    async def unary(request: bytes, context) -> bytes:
        seen["unary"] = tracing.current_ids()
        if request == b"fail":
            await context.abort(grpc.StatusCode.INTERNAL, "boom")
        return request

    async def stream(request: bytes, context):
        seen["stream"] = tracing.current_ids()
        for part in request.split(b","):
            yield part

    handlers = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Echo": grpc.unary_unary_rpc_method_handler(unary),
            "Split": grpc.unary_stream_rpc_method_handler(stream),
        },
    )
    server = grpc.aio.server(interceptors=[tracing.TracingServerInterceptor()])
    server.add_generic_rpc_handlers((handlers,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=tracing.client_interceptors())
    try:
        with tracing.tracer().start_as_current_span("replicate master order") as outer:
            assert await channel.unary_unary(f"/{SERVICE}/Echo")(b"hi") == b"hi"
            parts = [m async for m in channel.unary_stream(f"/{SERVICE}/Split")(b"a,b,c")]
            assert parts == [b"a", b"b", b"c"]
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await channel.unary_unary(f"/{SERVICE}/Echo")(b"fail")
            assert failed.value.code() is grpc.StatusCode.INTERNAL
    finally:
        await channel.close()
        await server.stop(0)

    finished = spans.get_finished_spans()
    trace_id = outer.get_span_context().trace_id
    assert {s.context.trace_id for s in finished} == {trace_id}
    clients = [s for s in finished if s.kind is SpanKind.CLIENT]
    servers = {s.parent.span_id: s for s in finished if s.kind is SpanKind.SERVER}
    assert [c.name for c in clients] == [f"{SERVICE}/Echo", f"{SERVICE}/Split", f"{SERVICE}/Echo"]
    for client in clients:
        assert client.parent.span_id == outer.get_span_context().span_id
        server_span = servers[client.context.span_id]  # each server span is its client span's child
        assert server_span.name == client.name
    # The handlers ran in their server spans.
    assert seen["stream"][1] == format(servers[clients[1].context.span_id].context.span_id, "016x")
    failed_client, failed_server = clients[2], servers[clients[2].context.span_id]
    assert failed_client.status.status_code is StatusCode.ERROR
    assert failed_server.status.status_code is StatusCode.ERROR
    assert failed_server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INTERNAL.value[0]
    assert clients[0].status.status_code is not StatusCode.ERROR


async def test_a_log_line_inside_a_span_names_the_trace(spans):
    assert _add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}
    with tracing.tracer().start_as_current_span("work") as current:
        line = _add_trace_ids(None, "info", {"event": "x"})
    context = current.get_span_context()
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")


async def test_with_tracing_off_nothing_is_added():
    assert tracing.ENABLED is False
    assert tracing.server_interceptors() == [] and tracing.client_interceptors() == []
    assert tracing.inject({"Nats-Msg-Id": "order-1"}) == {"Nats-Msg-Id": "order-1"}
    assert tracing.current_traceparent() is None and tracing.current_ids() is None
    with tracing.span("replicate master order", headers={}) as current:
        assert current is None
    assert _add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}

    # An outbox row stored by a replica that traces still passes its context on.
    js = FakeJetStream()
    traceparent = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    await OutboxPublisher(sessions=None, js=js)._publish("s", b"", "order-1", traceparent)
    assert js.published == [{"Nats-Msg-Id": "order-1", "traceparent": traceparent}]


def test_init_tracing_is_off_without_an_endpoint():
    settings = SimpleNamespace(otel_exporter_otlp_endpoint="")
    assert tracing.init_tracing(settings, "orders") is False
    assert tracing.ENABLED is False
