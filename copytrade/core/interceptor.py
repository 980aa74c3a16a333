"""The one server interceptor every service runs: authentication, caller identity, error mapping.

Each RPC handler is wrapped so that, before it runs, the bearer token is verified (signature,
issuer, audience, expiry, revocation) and the caller is put in `current_principal`; and so that a
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

from copytrade.core import errors
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
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        if method.startswith(ALWAYS_PUBLIC_PREFIXES):
            return handler
        needs_token = method not in self._public
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, needs_token, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, needs_token, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
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

    async def _enter(self, method: str, needs_token: bool, context: grpc.aio.ServicerContext) -> None:
        structlog.contextvars.bind_contextvars(rpc=method)
        principal = await self._authenticate(context) if needs_token else await self._optional_principal(context)
        current_principal.set(principal)
        if principal is not None:
            structlog.contextvars.bind_contextvars(user_id=principal.user_id)

    async def _optional_principal(self, context: grpc.aio.ServicerContext) -> Principal | None:
        # Public methods still learn who is calling when a valid token comes along (Logout, say).
        if metadata_value(context, "authorization") is None:
            return None
        try:
            return await self._authenticate(context)
        except errors.Unauthenticated:
            return None

    def _wrap_unary(self, method: str, needs_token: bool, behaviour: Callable[..., Awaitable[Any]]):
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                await self._enter(method, needs_token, context)
                result = behaviour(request, context)
                return await result if inspect.isawaitable(result) else result
            except Exception as exc:  # noqa: BLE001 - mapped to a status below
                await _answer_error(exc, method, context)

        return handle

    def _wrap_stream(self, method: str, needs_token: bool, behaviour: Callable[..., AsyncIterator[Any]]):
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                await self._enter(method, needs_token, context)
                async for message in behaviour(request, context):
                    yield message
            except Exception as exc:  # noqa: BLE001 - mapped to a status below
                await _answer_error(exc, method, context)

        return handle


async def _answer_error(exc: BaseException, method: str, context: grpc.aio.ServicerContext) -> None:
    if isinstance(exc, (asyncio.CancelledError, grpc.aio.AbortError)):
        raise exc
    if isinstance(exc, errors.ServiceError):
        status = exc.to_status()
        await context.abort(status.code, status.details, status.trailing_metadata)
    if isinstance(exc, NotImplementedError):
        # The generated base servicer's answer for an RPC that is declared but not built yet.
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
    reference = uuid.uuid4().hex[:12]
    log.exception("unhandled error in rpc", rpc=method, reference=reference)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (reference {reference})")


async def _refuse_unsupported(request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, "client-streaming calls are not supported")
