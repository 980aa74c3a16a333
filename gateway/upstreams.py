"""Where requests go: the routes from gRPC paths to clusters, and one cluster per service process."""

from __future__ import annotations

from copytrade.core.api_catalog import INTERNAL_SERVICES
from copytrade.core.settings import Settings
from gateway import filters
from gateway.errors import ConfigError
from gateway.services import DEFAULT_CLUSTER, ServiceRoute, cluster_names, health_service

# Unary calls end long before this; a stalled one is cut instead of holding a stream forever.
UNARY_IDLE_TIMEOUT = "60s"
# Server streams may be quiet between events (no order for a while); HTTP/2 keepalive finds dead peers.
STREAM_IDLE_TIMEOUT = "3600s"


def address(host: str, port: int) -> dict[str, object]:
    return {"socket_address": {"address": host, "port_value": port}}


def clusters(settings: Settings, routes: list[ServiceRoute]) -> list[dict[str, object]]:
    return [
        _cluster(name, settings.grpc_target(name), health_service(name, routes))
        for name in cluster_names(routes)
    ]


def route_config(routes: list[ServiceRoute]) -> dict[str, object]:
    # Internal services get no route, but the catch-all below would still carry their paths to the
    # auth process, which serves one of them (the user directory): answer them here instead.
    entries: list[dict[str, object]] = [
        {"match": {"prefix": f"/{service}/"}, "direct_response": {"status": 404}}
        for service in sorted(INTERNAL_SERVICES)
    ]
    for route in routes:
        # Exact paths of server-streaming methods first: they differ only in how long they may idle.
        entries += [
            {
                "match": {"path": route.path(method)},
                "route": _service_action(route.cluster, STREAM_IDLE_TIMEOUT),
            }
            for method in route.streaming_methods
        ]
        entries.append(
            {"match": {"prefix": route.prefix}, "route": _service_action(route.cluster, UNARY_IDLE_TIMEOUT)}
        )
    entries += [
        {
            "match": {"prefix": "/grpc.reflection."},
            "route": _service_action(DEFAULT_CLUSTER, STREAM_IDLE_TIMEOUT),
            # Reflection is the one bidirectional stream: buffering its request would wait forever.
            "typed_per_filter_config": {"envoy.filters.http.buffer": filters.buffer_disabled()},
        },
        {
            "match": {"prefix": "/grpc.health.v1.Health/"},
            "route": _service_action(DEFAULT_CLUSTER, STREAM_IDLE_TIMEOUT),
        },
        # Every other path. The CORS filter sees the REST path, before the transcoder rewrites it,
        # and acts only on a route that forwards, so REST needs this catch-all. Nothing else reaches
        # it: the transcoder answers unknown REST paths itself (404), and an unknown gRPC method
        # gets UNIMPLEMENTED from the auth process.
        {"match": {"prefix": "/"}, "route": _service_action(DEFAULT_CLUSTER, UNARY_IDLE_TIMEOUT)},
    ]
    return {
        "name": "gateway",
        "virtual_hosts": [
            {
                "name": "copytrade",
                "domains": ["*"],
                "routes": entries,
                "typed_per_filter_config": {"envoy.filters.http.cors": filters.cors_policy()},
            }
        ],
    }


def _service_action(cluster: str, idle_timeout: str) -> dict[str, object]:
    return {
        "cluster": cluster,
        # No overall deadline: server streams would be cut (the default is 15 s). The caller's
        # grpc-timeout still applies, uncapped, and idle_timeout ends stalled streams.
        "timeout": "0s",
        "idle_timeout": idle_timeout,
        "max_stream_duration": {"grpc_timeout_header_max": "0s"},
    }


def target_endpoints(target: str) -> list[tuple[str, int]]:
    """The (host, port) of every server a gRPC target names, in the forms grpcio accepts too:
    `host:port`, `dns:///host:port`, or a list of replicas as `ipv4:host:port,host:port` (`ipv6:`)."""
    scheme, _, rest = target.partition(":")
    if scheme in ("ipv4", "ipv6"):
        addresses = rest.split(",")
    elif scheme == "dns":
        # dns:host:port, dns:///host:port or dns://resolver/host:port: Envoy uses its own resolver.
        addresses = [rest.removeprefix("//").partition("/")[2] if rest.startswith("//") else rest]
    elif "," in target:
        raise ConfigError(f"gRPC target {target!r}: list several servers as ipv4:host:port,host:port")
    else:
        addresses = [target]
    return [_split_address(target, address.strip()) for address in addresses]


def _split_address(target: str, address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"gRPC target {target!r}: {address!r} is not host:port")
    return host.strip("[]"), int(port)


def _cluster(name: str, target: str, health_service_name: str) -> dict[str, object]:
    # Every replica is an endpoint; each is resolved (a compose service name resolves to every
    # container of the service) and balanced round robin, and Envoy health-checks each host.
    endpoints = [{"endpoint": {"address": address(host, port)}} for host, port in target_endpoints(target)]
    return {
        "name": name,
        # Resolves docker service names as well as 127.0.0.1, and follows a container's new address.
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "2s",
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {
                    "http2_protocol_options": {
                        # The services accept a ping every 10 s (grpc.http2.min_recv_ping_interval_without_data_ms);
                        # more often and grpcio would close the connection with too_many_pings.
                        "connection_keepalive": {"interval": "30s", "timeout": "5s"}
                    }
                },
            }
        },
        # Every open server stream holds one request; the default of 1024 would cap watchers per service.
        "circuit_breakers": {"thresholds": [{"max_requests": 10_000}]},
        "health_checks": [
            {
                "timeout": "1s",
                "interval": "2s",
                # The default of 60 s would keep a dead host "healthy" for a minute before its first request.
                "no_traffic_interval": "2s",
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "grpc_health_check": {"service_name": health_service_name},
            }
        ],
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": endpoints}],
        },
    }
