"""Traces across the services: one master order is one trace, from Envoy to each broker call.

OpenTelemetry, exported over OTLP/gRPC to OTEL_EXPORTER_OTLP_ENDPOINT (settings.otel_exporter_otlp_endpoint)
when it is set. When it is not, tracing is OFF: no TracerProvider is installed, no interceptor is added
to any server or channel, and the hot paths test `ENABLED` before doing anything, so a copy pays nothing.

The context travels as W3C `traceparent` (and `tracestate`): in gRPC metadata (the interceptors here),
in NATS message headers (`inject`/`extract`), and through the orders outbox table, which stores the
PlaceOrder span's traceparent so the publish that happens later still joins the order's trace.
The OTel SDK reads its usual variables too (OTEL_BSP_SCHEDULE_DELAY, OTEL_TRACES_SAMPLER...).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from copytrade.core.settings import Settings

# Read as `tracing.ENABLED` (module attribute), never imported by name: init_tracing sets it.
ENABLED = False
TRACEPARENT = "traceparent"
# Health checks and reflection run every few seconds; a trace of them is noise.
_UNTRACED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
# Server-side gRPC codes that are the server's fault; the rest answer a caller's mistake.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def init_tracing(settings: Settings, service: str) -> bool:
    """Install the exporting TracerProvider for `service` when an OTLP endpoint is configured.
    Returns whether tracing is on. Safe to call once per process."""
    global ENABLED
    endpoint = settings.otel_exporter_otlp_endpoint.strip()
    if not endpoint:
        return False
    # Imported here: a process with tracing off never loads the SDK or the exporter.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=not endpoint.startswith("https://"))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # the SDK flushes it at interpreter exit
    ENABLED = True
    return True


def tracer() -> trace.Tracer:
    return trace.get_tracer("copytrade")


# --- carrying the context -------------------------------------------------------------------------------


def inject(headers: dict[str, str]) -> dict[str, str]:
    """Add the current span's context to `headers` (NATS headers, gRPC metadata); returns them."""
    if ENABLED:
        propagate.inject(headers)
    return headers


def extract(headers: Mapping[str, str] | None) -> otel_context.Context:
    """The context a message's headers carry (an empty one for none)."""
    return propagate.extract(headers or {})


def current_traceparent() -> str | None:
    """The current span's W3C traceparent, to keep with work that is handed on later (the outbox)."""
    if not ENABLED:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get(TRACEPARENT)


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span in hex, or None outside a recorded span."""
    if not ENABLED:
        return None
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


@contextlib.contextmanager
def span(
    name: str,
    *,
    headers: Mapping[str, str] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span | None]:
    """A span made current for the block, child of the context in `headers` when given, else of the
    current span. With tracing off it yields None and costs a function call."""
    if not ENABLED:
        yield None
        return
    parent = extract(headers) if headers is not None else None
    with tracer().start_as_current_span(name, context=parent, kind=kind, attributes=attributes) as current:
        yield current


# --- gRPC ---------------------------------------------------------------------------------------------


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """For GrpcService: first in the chain, so the service interceptor's own log lines carry the trace."""
    return [TracingServerInterceptor()] if ENABLED else []


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """For a grpc.aio channel to another service: each call is a CLIENT span whose context goes along."""
    return [TracingUnaryClientInterceptor(), TracingStreamClientInterceptor()] if ENABLED else []


def _metadata_carrier(metadata: Any) -> dict[str, str]:
    return {key: value for key, value in metadata or () if isinstance(value, str)}


def _method_name(method: str | bytes) -> str:
    # "/copytrade.orders.v1.OrderService/PlaceOrder" -> "copytrade.orders.v1.OrderService/PlaceOrder"
    return (method.decode() if isinstance(method, bytes) else method).lstrip("/")


def _rpc_attributes(method: str) -> dict[str, str]:
    service, _, name = method.partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def _record_code(current: Span, code: grpc.StatusCode | None, server: bool) -> None:
    if code is None:
        return
    current.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK and (not server or code in _SERVER_ERRORS):
        current.set_status(Status(StatusCode.ERROR, code.name))


class TracingServerInterceptor(grpc.aio.ServerInterceptor):
    """Each RPC a SERVER span, child of the caller's traceparent (Envoy's, or another service's)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is None or details.method.startswith(_UNTRACED_PREFIXES):
            return handler
        method = _method_name(details.method)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _traced_unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                # types-grpcio types a handler as a sync iterator; under grpc.aio it is an async generator.
                _traced_stream(method, handler.unary_stream),  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


@contextlib.contextmanager
def _server_span(method: str, context: grpc.aio.ServicerContext) -> Iterator[Span]:
    parent = extract(_metadata_carrier(context.invocation_metadata()))
    with tracer().start_as_current_span(
        method,
        context=parent,
        kind=SpanKind.SERVER,
        attributes=_rpc_attributes(method),
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except grpc.aio.AbortError:
            _record_code(current, context.code(), server=True)
            raise
        except BaseException as exc:
            current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        else:
            _record_code(current, context.code() or grpc.StatusCode.OK, server=True)


def _traced_unary(method: str, behaviour: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with _server_span(method, context):
            return await behaviour(request, context)

    return handle


def _traced_stream(
    method: str, behaviour: Callable[..., AsyncIterator[Any]]
) -> Callable[..., AsyncIterator[Any]]:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        with _server_span(method, context):
            async for message in behaviour(request, context):
                yield message

    return handle


# Two classes: grpc.aio files an interceptor under the first kind it is an instance of, only.
class TracingUnaryClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, details, request):
        method = _method_name(details.method)
        with tracer().start_as_current_span(
            method, kind=SpanKind.CLIENT, attributes=_rpc_attributes(method), record_exception=False
        ) as current:
            call = await continuation(_with_trace_metadata(details), request)
            # Waiting for the status here keeps the span as long as the call; the call is returned
            # as it is, so the caller reads its answer (or its error) exactly as without tracing.
            _record_code(current, await call.code(), server=False)
            return call


class TracingStreamClientInterceptor(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, details, request):
        method = _method_name(details.method)
        current = tracer().start_span(method, kind=SpanKind.CLIENT, attributes=_rpc_attributes(method))
        token = otel_context.attach(trace.set_span_in_context(current))
        try:
            call = await continuation(_with_trace_metadata(details), request)
        except BaseException:
            current.end()
            raise
        finally:
            otel_context.detach(token)
        return _ended_with_stream(current, call)


def _with_trace_metadata(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    for key, value in _trace_carrier().items():
        metadata[key] = value
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


def _trace_carrier() -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


async def _ended_with_stream(current: Span, call: Any) -> AsyncIterator[Any]:
    try:
        async for message in call:
            yield message
        _record_code(current, grpc.StatusCode.OK, server=False)
    except grpc.aio.AioRpcError as exc:
        _record_code(current, exc.code(), server=False)
        raise
    finally:
        current.end()
