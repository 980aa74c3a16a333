"""Envoy's bootstrap, built as Python data, checked against Envoy's own protos, written as YAML.

Checking with `xds-protos` (`json_format.ParseDict` into `Bootstrap`) catches a misspelt field or a
wrong type here, with a Python traceback, instead of at Envoy's start; `envoy --mode validate`
(gateway.process.validate_config) then checks what only Envoy knows, such as the descriptor set.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from google.protobuf import json_format

from copytrade.core.settings import PROJECT_ROOT, Settings
from gateway import filters, upstreams
from gateway.errors import ConfigError
from gateway.services import ServiceRoute, discover

DEFAULT_DESCRIPTOR = PROJECT_ROOT / "build" / "api.binpb"
CONFIG_FILE = "envoy.yaml"
JWKS_FILE = "jwks.json"
# Where the listener binds; docker sets 0.0.0.0 so other containers and the host can reach it.
BIND_HOST_ENV = "ENVOY_BIND_HOST"
DEFAULT_REQUESTS_PER_SECOND = 2000
# Modules whose messages appear as typed_config; ParseDict resolves an Any only once they are imported.
_EXTENSION_MODULES = (
    "envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2",
    "envoy.extensions.filters.http.lua.v3.lua_pb2",
    "envoy.extensions.filters.http.grpc_web.v3.grpc_web_pb2",
    "envoy.extensions.filters.http.cors.v3.cors_pb2",
    "envoy.extensions.filters.http.buffer.v3.buffer_pb2",
    "envoy.extensions.filters.http.grpc_json_transcoder.v3.transcoder_pb2",
    "envoy.extensions.filters.http.jwt_authn.v3.config_pb2",
    "envoy.extensions.filters.http.local_ratelimit.v3.local_rate_limit_pb2",
    "envoy.extensions.filters.http.router.v3.router_pb2",
    "envoy.extensions.upstreams.http.v3.http_protocol_options_pb2",
    "envoy.extensions.access_loggers.stream.v3.stream_pb2",
    "envoy.extensions.resource_monitors.downstream_connections.v3.downstream_connections_pb2",
    "envoy.config.trace.v3.opentelemetry_pb2",
    "envoy.extensions.transport_sockets.tls.v3.tls_pb2",
)
# The cluster Envoy sends its spans to, when OTEL_EXPORTER_OTLP_ENDPOINT is set.
OTLP_CLUSTER = "opentelemetry_collector"


def write_config(
    settings: Settings,
    out_dir: Path,
    *,
    descriptor: Path | None = None,
    bind_host: str | None = None,
    requests_per_second: int = DEFAULT_REQUESTS_PER_SECOND,
) -> Path:
    """Write `envoy.yaml` and the JWKS it reads into out_dir; return the path of envoy.yaml.

    bind_host defaults to $ENVOY_BIND_HOST, else 127.0.0.1.
    """
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    jwks_file = out_dir / JWKS_FILE
    bootstrap = build_bootstrap(
        settings,
        descriptor=(descriptor or DEFAULT_DESCRIPTOR).resolve(),
        jwks_file=jwks_file,
        bind_host=bind_host or os.environ.get(BIND_HOST_ENV, "127.0.0.1"),
        requests_per_second=requests_per_second,
    )
    validate(bootstrap)
    _write_private(jwks_file, jwks(settings.jwt_secret))
    config_file = out_dir / CONFIG_FILE
    config_file.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
    return config_file


def jwks(secret: str) -> str:
    """The HS256 key set jwt_authn verifies with: the secret as an `oct` key, base64url unpadded."""
    key = base64.urlsafe_b64encode(secret.encode()).rstrip(b"=").decode()
    return json.dumps({"keys": [{"kty": "oct", "alg": "HS256", "k": key}]})


def validate(bootstrap: dict[str, object]) -> bootstrap_pb2.Bootstrap:
    for module in _EXTENSION_MODULES:
        importlib.import_module(module)
    try:
        return json_format.ParseDict(bootstrap, bootstrap_pb2.Bootstrap())
    except json_format.ParseError as exc:
        raise ConfigError(f"not a valid Envoy Bootstrap: {exc}") from exc


def build_bootstrap(
    settings: Settings,
    *,
    descriptor: Path,
    jwks_file: Path,
    bind_host: str,
    requests_per_second: int,
) -> dict[str, object]:
    routes = discover(descriptor)
    known = {route.path(method) for route in routes for method in route.methods}
    renamed = [path for path in filters.PUBLIC_METHODS if path not in known]
    if renamed:
        # A renamed public method would silently start demanding a token (or a new one stay open).
        raise ConfigError(f"public methods not in {descriptor}: {', '.join(renamed)}; update gateway.filters")
    return {
        "node": {"id": "copytrade-gateway", "cluster": "copytrade-gateway"},
        # The admin interface can stop Envoy and dump its config: loopback only, whatever bind_host is.
        "admin": {"address": upstreams.address("127.0.0.1", settings.envoy_admin_port)},
        "static_resources": {
            "listeners": [_listener(settings, routes, descriptor, jwks_file, bind_host, requests_per_second)],
            "clusters": upstreams.clusters(settings, routes) + _otlp_clusters(settings),
        },
        "overload_manager": {
            "resource_monitors": [
                {
                    # Envoy refuses nothing by default; this caps the file descriptors a flood can take.
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.resource_monitors."
                        "downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": 10_000,
                    },
                }
            ]
        },
    }


def _listener(
    settings: Settings,
    routes: list[ServiceRoute],
    descriptor: Path,
    jwks_file: Path,
    bind_host: str,
    requests_per_second: int,
) -> dict[str, object]:
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
        "HttpConnectionManager",
        "stat_prefix": "gateway",
        # HTTP/1.1 and h2c on one port: REST, gRPC and gRPC-Web.
        "codec_type": "AUTO",
        # The services throttle logins per client address. With this Envoy sets
        # x-envoy-external-address to the peer's address; x-forwarded-for keeps what the client sent
        # and, for a loopback peer, gets this host's address appended instead of 127.0.0.1.
        "use_remote_address": True,
        # No peer is internal, so Envoy always strips client-sent x-envoy-* headers and sets
        # x-envoy-external-address itself. An empty list falls back to Envoy's built-in list (on
        # 1.40 too), which counts loopback and RFC 1918 peers, every docker client, as internal and
        # passes their x-envoy-external-address through; older releases did that when unset.
        # 0.0.0.0/32 is no peer's address.
        "internal_address_config": {"cidr_ranges": [{"address_prefix": "0.0.0.0", "prefix_len": 32}]},
        # jwt_authn and the routes match paths: `/a/../b` and `//b` must not look like something else.
        "normalize_path": True,
        "merge_slashes": True,
        "stream_idle_timeout": "300s",
        "request_headers_timeout": "10s",
        "max_request_headers_kb": 32,
        # An HTTP/2 request Envoy's codec refuses (a header value with bytes HTTP/2 forbids, say) resets
        # that stream only, not the client's whole connection with its other calls (found by fuzzing).
        "http2_protocol_options": {"override_stream_error_on_invalid_http_message": True},
        "local_reply_config": filters.local_reply_config(),
        "access_log": [_access_log()],
        **_tracing(settings),
        "route_config": upstreams.route_config(routes),
        "http_filters": filters.http_filters(
            descriptor=descriptor,
            routes=routes,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            jwks_file=jwks_file,
            requests_per_second=requests_per_second,
        ),
    }
    return {
        "name": "gateway",
        "address": upstreams.address(bind_host, settings.envoy_port),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }


def _otlp_endpoint(settings: Settings) -> tuple[str, int, bool] | None:
    """(host, port, tls) of the OTLP/gRPC collector, or None when tracing is off."""
    endpoint = settings.otel_exporter_otlp_endpoint.strip()
    if not endpoint:
        return None
    parsed = urlsplit(endpoint)
    try:
        port = parsed.port or 4317
    except ValueError:
        raise ConfigError(f"OTEL_EXPORTER_OTLP_ENDPOINT {endpoint!r} has no valid port") from None
    if not parsed.hostname:
        raise ConfigError(f"OTEL_EXPORTER_OTLP_ENDPOINT {endpoint!r} has no host")
    return parsed.hostname, port, parsed.scheme == "https"


def _tracing(settings: Settings) -> dict[str, object]:
    """The connection manager's tracing: each request a span (the root of a master order's trace),
    exported over OTLP, its traceparent sent on to the service. Nothing when tracing is off, and an
    incoming traceparent then simply passes through."""
    if _otlp_endpoint(settings) is None:
        return {}
    return {
        "tracing": {
            "provider": {
                "name": "envoy.tracers.opentelemetry",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                    "grpc_service": {"envoy_grpc": {"cluster_name": OTLP_CLUSTER}, "timeout": "1s"},
                    "service_name": "envoy",
                },
            },
            # Envoy's default also samples every request; said here because the services follow it.
            "random_sampling": {"value": 100},
        }
    }


def _otlp_clusters(settings: Settings) -> list[dict[str, object]]:
    endpoint = _otlp_endpoint(settings)
    if endpoint is None:
        return []
    host, port, tls = endpoint
    cluster: dict[str, object] = {
        "name": OTLP_CLUSTER,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "2s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": OTLP_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": upstreams.address(host, port)}}]}],
        },
    }
    if tls:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": host,
            },
        }
    return [cluster]


def _access_log() -> dict[str, object]:
    fields = {
        "time": "%START_TIME%",
        "method": "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)%",
        "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
        "grpc_method": "%REQ(:PATH)%",
        "protocol": "%PROTOCOL%",
        "status": "%RESPONSE_CODE%",
        "grpc_status": "%GRPC_STATUS(NUMBER)%",
        "flags": "%RESPONSE_FLAGS%",
        "details": "%RESPONSE_CODE_DETAILS%",
        "duration_ms": "%DURATION%",
        "cluster": "%UPSTREAM_CLUSTER%",
        "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
        "request_id": "%REQ(X-REQUEST-ID)%",
        # The request's trace (empty with tracing off), to find its spans from an access log line.
        "trace_id": "%TRACE_ID%",
    }
    return {
        "name": "envoy.access_loggers.stdout",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            "log_format": {"json_format": fields},
        },
    }


def _write_private(path: Path, content: str) -> None:
    # Created 0600 from the start, never briefly world-readable, and replaced whole.
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
