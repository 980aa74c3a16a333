"""Which gRPC services the gateway routes, and to which cluster, read from the descriptor set.

The services are discovered rather than listed so that a new service in protos/ is routed as soon as
`make gen` rebuilds build/api.binpb. Only the package decides the cluster: `copytrade.<x>.v<n>`
goes to the cluster that serves package `<x>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2

from copytrade.core.api_catalog import INTERNAL_SERVICES
from gateway.errors import ConfigError

# Package segment -> cluster. Cluster names are the names Settings.grpc_target() knows. The first
# segment listed for a cluster is its home package, whose first service Envoy health-checks.
PACKAGE_CLUSTERS = {
    "auth": "auth",
    # PlatformService (GET /health) runs inside the auth process.
    "platform": "auth",
    "orders": "orders",
    "replicator": "replicator",
    "broker": "broker_gateway",
}
# The cluster that also answers reflection and the gateway-wide health service.
DEFAULT_CLUSTER = "auth"
_PACKAGE = re.compile(r"copytrade\.(?P<segment>[a-z0-9_]+)\.v\d+")


class DiscoveryError(ConfigError):
    """The descriptor set cannot be routed: missing, unreadable, or a package without a cluster."""


@dataclass(frozen=True)
class ServiceRoute:
    """One gRPC service and the cluster that serves it."""

    service: str  # fully qualified, e.g. "copytrade.auth.v1.AuthService"
    cluster: str
    # In the cluster's home package (auth for auth, broker for broker_gateway), not a guest like platform.
    home: bool
    # Server-streaming methods get a route of their own with a longer idle timeout.
    streaming_methods: tuple[str, ...]
    methods: tuple[str, ...]

    @property
    def prefix(self) -> str:
        return f"/{self.service}/"

    def path(self, method: str) -> str:
        return f"/{self.service}/{method}"


def load_descriptor_set(path: Path) -> descriptor_pb2.FileDescriptorSet:
    try:
        return descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
    except FileNotFoundError:
        raise DiscoveryError(f"descriptor set {path} not found; run `make gen` first") from None


def discover(descriptor_path: Path) -> list[ServiceRoute]:
    """Every public `copytrade.*` service in the descriptor set, in file order, with its cluster."""
    routes = []
    for file in load_descriptor_set(descriptor_path).file:
        if not file.service or not file.package.startswith("copytrade."):
            continue
        match = _PACKAGE.fullmatch(file.package)
        segment = match["segment"] if match else None
        cluster = PACKAGE_CLUSTERS.get(segment or "")
        if cluster is None:
            # Failing here beats an Envoy that silently answers 404 for a whole new service.
            raise DiscoveryError(
                f"package {file.package} has no cluster; add its segment to gateway.services.PACKAGE_CLUSTERS"
            )
        for service in file.service:
            if f"{file.package}.{service.name}" in INTERNAL_SERVICES:
                continue
            routes.append(
                ServiceRoute(
                    service=f"{file.package}.{service.name}",
                    cluster=cluster,
                    home=segment == _home_segment(cluster),
                    streaming_methods=tuple(m.name for m in service.method if m.server_streaming),
                    methods=tuple(m.name for m in service.method),
                )
            )
    if not any(route.cluster == DEFAULT_CLUSTER for route in routes):
        raise DiscoveryError(f"no service for the {DEFAULT_CLUSTER} cluster in {descriptor_path}")
    return routes


def _home_segment(cluster: str) -> str:
    return next(segment for segment, owner in PACKAGE_CLUSTERS.items() if owner == cluster)


def cluster_names(routes: list[ServiceRoute]) -> list[str]:
    """The clusters the routes need, in a stable order, the default (reflection) cluster first."""
    names = [DEFAULT_CLUSTER]
    for route in routes:
        if route.cluster not in names:
            names.append(route.cluster)
    return names


def health_service(cluster: str, routes: list[ServiceRoute]) -> str:
    """The service whose health Envoy checks for a cluster: the first one of the package it is named for.

    A process sets this name SERVING once it can take traffic and NOT_SERVING while draining.
    """
    candidates = [r for r in routes if r.cluster == cluster]
    for route in candidates:
        if route.home:
            return route.service
    return candidates[0].service
