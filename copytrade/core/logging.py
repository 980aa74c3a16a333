"""Structured logs: one JSON object per line, with the service name, any bound request fields (the
order, master order and follower ids of the order a line is about) and, with tracing on, the trace id."""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.typing import EventDict, WrappedLogger

from copytrade.core import tracing
from copytrade.core.settings import Settings

# Keys whose values must never reach a log line, whatever a caller binds.
_SECRET_KEYS = frozenset(
    {"password", "token", "access_token", "refresh_token", "authorization", "secret", "jwt_secret", "api_secret",
     "app_secret", "secret_key", "auth_code", "session_token", "credentials"}
)  # fmt: skip


def _redact_secrets(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    for key in event.keys() & _SECRET_KEYS:
        event[key] = "[redacted]"
    return event


def _add_trace_ids(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    # A line logged inside a span names its trace, so the logs of one order join its trace.
    if tracing.ENABLED:
        ids = tracing.current_ids()
        if ids is not None:
            event["trace_id"], event["span_id"] = ids
    return event


def configure_logging(settings: Settings, service: str) -> None:
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        level = logging.INFO
    renderer = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_trace_ids,
            _redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries that use stdlib logging (alembic, asyncio, grpc) go to stderr at WARNING and up.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
