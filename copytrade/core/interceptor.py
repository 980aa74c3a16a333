"""The one server interceptor every service runs: authentication, caller identity, error mapping.

Each RPC handler is wrapped so that, before it runs, the bearer token is verified (signature,
issuer, audience, expiry, revocation) and the caller is put in `current_principal`, a SERVICE token
is refused outside the internal services, and the request is decoded and screened (a text field that
is not UTF-8 or holds a NUL is INVALID_ARGUMENT naming the field); and so that a
`ServiceError` it raises becomes the matching gRPC status with the field named, while any other
exception is logged with a reference and answered as INTERNAL without leaking internals.

Envoy verifies tokens too, but services re-verify: gRPC clients on the internal network, tools
using a service's own port, and a misrouted request must not get past a service unauthenticated.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from sqlalchemy.exc import DBAPIError

from copytrade.core import errors
from copytrade.core.api_catalog import INTERNAL_SERVICES
from copytrade.core.settings import Settings
from copytrade.core.tokens import InvalidToken, Principal, bearer_token, verify_access_token

# Health checks and reflection are always open: Envoy and grpcurl use them without a token.
ALWAYS_PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "current_principal", default=None
)

RevocationCheck = Callable[[Principal], Awaitable[bool]]
log = structlog.get_logger("copytrade.rpc")


def caller() -> Principal:
    """The authenticated caller of the current RPC."""
    principal = current_principal.get()
    if principal is None:
        raise errors.Unauthenticated("this call needs a valid access token")
    return principal


def metadata_value(context: grpc.aio.ServicerContext, key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value if isinstance(value, str) else value.decode("latin-1")
    return None


def client_address(context: grpc.aio.ServicerContext) -> str:
    """The caller's network address: the one Envoy saw, else the gRPC peer.

    Envoy overwrites `x-envoy-external-address` with the downstream peer on every request (the
    gateway marks no address as internal), so a client cannot forge it to dodge per-address login
    throttling; X-Forwarded-For, by contrast, keeps whatever the client sent.
    """
    external = metadata_value(context, "x-envoy-external-address")
    if external:
        return external.strip()
    peer = context.peer() or "unknown"
    # "ipv4:127.0.0.1:5555" -> "127.0.0.1"
    kind, _, rest = peer.partition(":")
    return rest.rsplit(":", 1)[0] if kind in ("ipv4", "ipv6") else peer


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        settings: Settings,
        *,
        public_methods: frozenset[str] = frozenset(),
        is_revoked: RevocationCheck | None = None,
    ) -> None:
        self._settings = settings
        self._public = public_methods
        self._is_revoked = is_revoked

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        if method.startswith(ALWAYS_PUBLIC_PREFIXES):
            return handler
        needs_token = method not in self._public
        # The request is decoded inside the wrapper, after the token check: a request grpc cannot
        # decode (a text field that is not UTF-8, which Envoy's transcoder passes on from a URL)
        # must be INVALID_ARGUMENT naming the field, not the UNKNOWN grpc answers by itself.
        decode = _decoder(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, needs_token, decode, handler.unary_unary),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                # types-grpcio types a handler as a sync iterator; under grpc.aio it is an async generator.
                self._wrap_stream(method, needs_token, decode, handler.unary_stream),  # type: ignore[arg-type]
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        # The platform declares no client-streaming RPCs; refuse rather than run one unchecked.
        return grpc.unary_unary_rpc_method_handler(_refuse_unsupported)

    async def _authenticate(self, context: grpc.aio.ServicerContext) -> Principal:
        try:
            principal = verify_access_token(self._settings, bearer_token(metadata_value(context, "authorization")))
        except InvalidToken as exc:
            raise errors.Unauthenticated(str(exc)) from None
        if self._is_revoked is not None and await self._is_revoked(principal):
            raise errors.Unauthenticated("token has been revoked")
        return principal

    async def _enter(
        self, method: str, needs_token: bool, decode: Callable[[Any], Any], raw: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        """Authenticates the caller, then decodes and screens the request, which it returns."""
        structlog.contextvars.bind_contextvars(rpc=method)
        principal = await self._authenticate(context) if needs_token else await self._optional_principal(context)
        if principal is not None and principal.is_service and _service_of(method) not in INTERNAL_SERVICES:
            # A service token is minted by the platform for its internal APIs (subject 0, no user);
            # on a public API it would act as a user nobody is.
            raise errors.PermissionDenied("service tokens are accepted by the platform's internal services only")
        current_principal.set(principal)
        if principal is not None:
            structlog.contextvars.bind_contextvars(user_id=principal.user_id)
        request = decode(raw)
        if not (principal is not None and principal.is_service):
            # PostgreSQL text cannot hold NUL, and no name, symbol, key or secret has one: refuse it
            # here, naming the field, instead of failing in the database as an INTERNAL error.
            field = _field_with_nul(request)
            if field is not None:
                raise errors.InvalidArgument("must not contain NUL characters", field=field)
        return request

    async def _optional_principal(self, context: grpc.aio.ServicerContext) -> Principal | None:
        # Public methods still learn who is calling when a valid token comes along (Logout, say).
        if metadata_value(context, "authorization") is None:
            return None
        try:
            return await self._authenticate(context)
        except errors.Unauthenticated:
            return None

    def _wrap_unary(
        self, method: str, needs_token: bool, decode: Callable[[Any], Any], behaviour: Callable[..., Awaitable[Any]]
    ):
        async def handle(raw: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                request = await self._enter(method, needs_token, decode, raw, context)
                result = behaviour(request, context)
                return await result if inspect.isawaitable(result) else result
            except Exception as exc:  # noqa: BLE001 - mapped to a status below
                await _answer_error(exc, method, context)

        return handle

    def _wrap_stream(
        self, method: str, needs_token: bool, decode: Callable[[Any], Any], behaviour: Callable[..., AsyncIterator[Any]]
    ):
        async def handle(raw: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                request = await self._enter(method, needs_token, decode, raw, context)
                async for message in behaviour(request, context):
                    yield message
            except Exception as exc:  # noqa: BLE001 - mapped to a status below
                await _answer_error(exc, method, context)

        return handle


def _service_of(method: str) -> str:
    # "/copytrade.orders.v1.OrderService/PlaceOrder" -> "copytrade.orders.v1.OrderService"
    return method.lstrip("/").partition("/")[0]


def _decoder(deserializer: Callable[[bytes], Any] | None) -> Callable[[Any], Any]:
    if deserializer is None:
        return lambda raw: raw

    def decode(raw: Any) -> Any:
        try:
            return deserializer(raw)
        except DecodeError:
            message_type = getattr(deserializer, "__self__", None)
            descriptor = getattr(message_type, "DESCRIPTOR", None)
            field = _field_not_utf8(descriptor, raw) if isinstance(descriptor, Descriptor) else None
            if field is not None:
                raise errors.InvalidArgument("is not valid UTF-8 text", field=field) from None
            raise errors.InvalidArgument("the request is not a well-formed message") from None

    return decode


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _field_not_utf8(descriptor: Descriptor, data: bytes, prefix: str = "") -> str | None:
    """The (dotted) name of the first string field in `data` that is not UTF-8, read off the wire."""
    pos = 0
    try:
        while pos < len(data):
            key, pos = _varint(data, pos)
            number, wire_type = key >> 3, key & 7
            if wire_type == 0:
                _, pos = _varint(data, pos)
            elif wire_type == 1:
                pos += 8
            elif wire_type == 5:
                pos += 4
            elif wire_type == 2:
                length, pos = _varint(data, pos)
                chunk, pos = data[pos : pos + length], pos + length
                field = descriptor.fields_by_number.get(number)
                if field is None:
                    continue
                if field.type == FieldDescriptor.TYPE_STRING:
                    try:
                        chunk.decode("utf-8")
                    except UnicodeDecodeError:
                        return prefix + field.name
                elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
                    inner = _field_not_utf8(field.message_type, chunk, f"{prefix}{field.name}.")
                    if inner is not None:
                        return inner
            else:
                return None
    except (IndexError, ValueError):
        return None
    return None


def _field_with_nul(message: Any, prefix: str = "") -> str | None:
    """The (dotted) name of the first string field holding a NUL character, if any."""
    if not isinstance(message, Message):
        return None
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING:
            if any("\x00" in text for text in ((value,) if isinstance(value, str) else value)):
                return prefix + field.name
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                items = value.items()
                if any("\x00" in str(k) or isinstance(v, str) and "\x00" in v for k, v in items):
                    return prefix + field.name
                continue
            for inner in (value,) if isinstance(value, Message) else value:
                found = _field_with_nul(inner, f"{prefix}{field.name}.")
                if found is not None:
                    return found
    return None


async def _answer_error(exc: BaseException, method: str, context: grpc.aio.ServicerContext) -> None:
    if isinstance(exc, (asyncio.CancelledError, grpc.aio.AbortError)):
        raise exc
    if isinstance(exc, errors.ServiceError):
        status = exc.to_status()
        await context.abort(status.code, status.details, status.trailing_metadata)
    if isinstance(exc, NotImplementedError):
        # The generated base servicer's answer for an RPC that is declared but not built yet.
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        # PostgreSQL restarted under a pooled connection: the pool has dropped it, a retry works.
        log.warning("database connection lost during rpc", rpc=method)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the database connection was lost; try again")
    reference = uuid.uuid4().hex[:12]
    log.exception("unhandled error in rpc", rpc=method, reference=reference)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (reference {reference})")


async def _refuse_unsupported(request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, "client-streaming calls are not supported")
