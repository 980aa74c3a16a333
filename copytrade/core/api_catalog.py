"""Every gRPC service the platform's protos declare, found in the generated package."""

from __future__ import annotations

import importlib
import pkgutil

_API_PACKAGES = ("auth", "orders", "replicator", "broker", "platform", "events")
# Service-to-service APIs that must never be reachable from outside: ExecuteFanout places orders in
# any follower's account, so only the replicator, on the internal network, may call it. Envoy
# neither routes nor transcodes them, and the gateway's reflection does not list them. The user
# directory hands out emails and broker client codes, which only the platform's services may read.
INTERNAL_SERVICES = frozenset(
    {"copytrade.broker.v1.BrokerGatewayService", "copytrade.auth.v1.UserDirectoryService"}
)


def all_service_names() -> list[str]:
    names: list[str] = []
    for package in _API_PACKAGES:
        try:
            v1 = importlib.import_module(f"copytrade.{package}.v1")
        except ModuleNotFoundError:
            continue
        for module in pkgutil.iter_modules(v1.__path__):
            if module.name.endswith("_pb2"):
                descriptor = importlib.import_module(f"{v1.__name__}.{module.name}").DESCRIPTOR
                names.extend(service.full_name for service in descriptor.services_by_name.values())
    return sorted(names)


def public_service_names() -> list[str]:
    return [name for name in all_service_names() if name not in INTERNAL_SERVICES]
