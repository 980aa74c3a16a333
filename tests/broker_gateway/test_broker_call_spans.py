"""With tracing on, every placement HTTP call is a CLIENT span naming its dialect and outcome: one per
send, retries included; with tracing off, none."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from copytrade.core import tracing
from services.broker_gateway.brokers import PlacementOutcome
from tests.broker_gateway.test_brokers_support import DIALECTS, spec

pytest_plugins = ("tests.broker_gateway.test_brokers_support",)


@pytest.fixture
def spans(monkeypatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "ENABLED", True)
    monkeypatch.setattr(tracing, "tracer", lambda: provider.get_tracer("test"))
    return exporter


def calls(exporter: InMemorySpanExporter) -> list:
    return [s for s in exporter.get_finished_spans() if s.name == "broker.place_order"]


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_placed_order_is_one_span_with_its_dialect_and_broker_order(brokers, mock, dialect, spans):
    await mock.configure(faults={})
    _, client = await brokers.ready(dialect)
    placed = await client.place(spec(dialect, "SPAN1"))
    assert placed.outcome is PlacementOutcome.PLACED
    [call] = calls(spans)
    assert call.kind is SpanKind.CLIENT
    assert call.attributes["broker.dialect"] == dialect.value
    assert call.attributes["broker.outcome"] == "placed"
    assert call.attributes["broker.order_id"] == placed.broker_order_id
    assert call.status.status_code is not StatusCode.ERROR


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_refusal_is_an_answer_and_a_lost_send_an_error(brokers, mock, dialect, spans):
    await mock.configure(dedupe=False, faults={"rms_reject": 1.0})
    _, client = await brokers.ready(dialect)
    assert (await client.place(spec(dialect, "SPAN2"))).outcome is PlacementOutcome.REJECTED
    [refused] = calls(spans)
    assert refused.attributes["broker.outcome"] == "rejected"
    assert refused.status.status_code is not StatusCode.ERROR

    spans.clear()
    await mock.configure(
        dedupe=False, faults={"http_5xx": 1.0, "placed_before_fault": 0.0, "applies_to": ["place"]}
    )
    _, client = await brokers.ready(dialect, request_timeout=0.3)
    placed = await client.place(spec(dialect, "SPAN3"))
    sends = calls(spans)
    assert len(sends) == placed.attempts > 1  # one span per HTTP call, the retries too
    assert {s.attributes["broker.outcome"] for s in sends} == {"unknown"}
    assert all(s.status.status_code is StatusCode.ERROR for s in sends)
    assert [s.attributes["broker.attempt"] for s in sends] == list(range(1, placed.attempts + 1))


async def test_with_tracing_off_a_placement_makes_no_span(brokers, mock, monkeypatch):
    # A tracer that would record, but tracing off: the placement must not even ask for a span.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "tracer", lambda: provider.get_tracer("test"))
    assert tracing.ENABLED is False
    await mock.configure(faults={})
    _, client = await brokers.ready(DIALECTS[1])
    assert (await client.place(spec(DIALECTS[1], "SPAN4"))).outcome is PlacementOutcome.PLACED
    assert exporter.get_finished_spans() == ()
