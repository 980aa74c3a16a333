"""Envoy's tracing: configured with OTEL_EXPORTER_OTLP_ENDPOINT (each request the root span of its
trace, exported to the collector over OTLP/gRPC), absent without it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from copytrade.core.settings import PROJECT_ROOT, Settings
from gateway import process
from gateway.config import OTLP_CLUSTER, write_config
from gateway.errors import ConfigError
from tests.gateway.conftest import SECRET, build_descriptor


@pytest.fixture(scope="module")
def descriptor(tmp_path_factory) -> Path:
    protos = sorted(
        str(p.relative_to(PROJECT_ROOT / "protos")) for p in (PROJECT_ROOT / "protos").rglob("*.proto")
    )
    return build_descriptor(tmp_path_factory.mktemp("descriptor"), protos)


def bootstrap(descriptor: Path, out: Path, endpoint: str) -> tuple[Path, dict]:
    config = write_config(
        Settings(jwt_secret=SECRET, otel_exporter_otlp_endpoint=endpoint), out, descriptor=descriptor
    )
    return config, yaml.safe_load(config.read_text())


def manager(loaded: dict) -> dict:
    return loaded["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def test_with_an_endpoint_envoy_starts_each_trace_and_exports_it(descriptor, tmp_path):
    config, loaded = bootstrap(descriptor, tmp_path, "http://127.0.0.1:4317")
    provider = manager(loaded)["tracing"]["provider"]
    assert provider["name"] == "envoy.tracers.opentelemetry"
    assert provider["typed_config"]["service_name"] == "envoy"
    assert provider["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] == OTLP_CLUSTER
    clusters = {c["name"]: c for c in loaded["static_resources"]["clusters"]}
    address = clusters[OTLP_CLUSTER]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"][
        "address"
    ]
    assert address["socket_address"] == {"address": "127.0.0.1", "port_value": 4317}
    assert "transport_socket" not in clusters[OTLP_CLUSTER]
    process.validate_config(config)


def test_an_https_collector_is_reached_over_tls(descriptor, tmp_path):
    config, loaded = bootstrap(descriptor, tmp_path, "https://collector.example.com:4318")
    collector = {c["name"]: c for c in loaded["static_resources"]["clusters"]}[OTLP_CLUSTER]
    assert collector["transport_socket"]["typed_config"]["sni"] == "collector.example.com"
    process.validate_config(config)


def test_without_an_endpoint_there_is_no_tracing(descriptor, tmp_path):
    _, loaded = bootstrap(descriptor, tmp_path, "")
    assert "tracing" not in manager(loaded)
    assert OTLP_CLUSTER not in {c["name"] for c in loaded["static_resources"]["clusters"]}


def test_an_endpoint_without_a_valid_port_is_refused(descriptor, tmp_path):
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        bootstrap(descriptor, tmp_path, "http://127.0.0.1:99999")
