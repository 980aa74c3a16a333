"""Envoy's clusters reach every replica a service's gRPC target lists, in the target forms grpcio accepts."""

from __future__ import annotations

import pytest
import yaml

from copytrade.core.settings import PROJECT_ROOT, Settings
from gateway import process
from gateway.config import write_config
from gateway.errors import ConfigError
from gateway.upstreams import target_endpoints
from tests.gateway.conftest import SECRET, build_descriptor


@pytest.mark.parametrize(
    ("target", "endpoints"),
    [
        ("127.0.0.1:50053", [("127.0.0.1", 50053)]),
        ("replicator:50053", [("replicator", 50053)]),
        ("dns:///broker-gateway:50054", [("broker-gateway", 50054)]),
        ("dns://10.0.0.2:53/broker-gateway:50054", [("broker-gateway", 50054)]),
        ("dns:replicator:50053", [("replicator", 50053)]),
        ("ipv4:127.0.0.1:50053,127.0.0.1:41001", [("127.0.0.1", 50053), ("127.0.0.1", 41001)]),
        ("ipv6:[::1]:50053,[::1]:41001", [("::1", 50053), ("::1", 41001)]),
    ],
)
def test_targets_name_their_endpoints(target, endpoints):
    assert target_endpoints(target) == endpoints


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("127.0.0.1:50053,127.0.0.1:41001", "ipv4:host:port,host:port"),
        ("ipv4:127.0.0.1:50053,127.0.0.1", "is not host:port"),
        ("replicator", "is not host:port"),
        ("replicator:99999", "is not host:port"),
    ],
)
def test_a_bad_target_is_refused_with_the_form_it_needs(target, reason):
    with pytest.raises(ConfigError, match=reason):
        target_endpoints(target)


def test_every_replica_is_an_endpoint_of_its_cluster(tmp_path):
    descriptor = build_descriptor(
        tmp_path,
        sorted(str(p.relative_to(PROJECT_ROOT / "protos")) for p in (PROJECT_ROOT / "protos").rglob("*.proto")),
    )
    settings = Settings(
        jwt_secret=SECRET,
        replicator_grpc_target="ipv4:127.0.0.1:50053,127.0.0.1:41001",
        broker_gateway_grpc_target="ipv4:127.0.0.1:50054,127.0.0.1:41002,127.0.0.1:41003",
    )
    written = write_config(settings, tmp_path / "out", descriptor=descriptor)
    process.validate_config(written)  # Envoy itself accepts several endpoints per cluster
    clusters = {c["name"]: c for c in yaml.safe_load(written.read_text())["static_resources"]["clusters"]}

    def ports(name: str) -> list[int]:
        (locality,) = clusters[name]["load_assignment"]["endpoints"]
        return [e["endpoint"]["address"]["socket_address"]["port_value"] for e in locality["lb_endpoints"]]

    assert ports("replicator") == [50053, 41001]
    assert ports("broker_gateway") == [50054, 41002, 41003]
    assert ports("auth") == [50051]
    assert {clusters[name]["lb_policy"] for name in clusters} == {"ROUND_ROBIN"}
