"""The generated bootstrap: accepted by Envoy 1.40, shaped as the gateway needs, built from what protos/ holds."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import descriptor_pb2

from copytrade.core.api_catalog import INTERNAL_SERVICES
from copytrade.core.settings import PROJECT_ROOT, Settings
from gateway import process
from gateway.config import BIND_HOST_ENV, write_config
from gateway.errors import ConfigError
from gateway.services import DiscoveryError, discover
from tests.gateway.conftest import SECRET, build_descriptor

ALL_PROTOS = sorted(
    str(p.relative_to(PROJECT_ROOT / "protos")) for p in (PROJECT_ROOT / "protos").rglob("*.proto")
)


@pytest.fixture(scope="module")
def full_descriptor(tmp_path_factory) -> Path:
    """Every .proto in protos/, as `make gen` builds build/api.binpb."""
    return build_descriptor(tmp_path_factory.mktemp("full"), ALL_PROTOS)


@pytest.fixture(scope="module")
def written(full_descriptor, tmp_path_factory) -> Path:
    return write_config(
        Settings(jwt_secret=SECRET), tmp_path_factory.mktemp("out"), descriptor=full_descriptor
    )


def manager(config: Path) -> dict:
    bootstrap = yaml.safe_load(config.read_text())
    return bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def test_envoy_accepts_the_generated_config(written):
    process.validate_config(written)


def test_envoy_rejects_a_broken_config(written, tmp_path):
    # The check above would pass vacuously if validate_config never failed.
    broken = tmp_path / "envoy.yaml"
    broken.write_text(written.read_text().replace("STRICT_DNS", "NO_SUCH_TYPE"))
    with pytest.raises(process.EnvoyError, match="NO_SUCH_TYPE"):
        process.validate_config(broken)


def test_filters_run_in_the_required_order(written):
    assert [f["name"] for f in manager(written)["http_filters"]] == [
        "envoy.filters.http.lua",
        "envoy.filters.http.grpc_web",
        "envoy.filters.http.cors",
        "envoy.filters.http.buffer",
        "envoy.filters.http.grpc_json_transcoder",
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.router",
    ]


def test_every_service_in_protos_is_transcoded_and_routed_to_its_cluster(written, full_descriptor):
    expected_cluster = {
        "auth": "auth",
        "platform": "auth",
        "orders": "orders",
        "replicator": "replicator",
        "broker": "broker_gateway",
    }
    hcm = manager(written)
    transcoder = next(f for f in hcm["http_filters"] if f["name"].endswith("grpc_json_transcoder"))[
        "typed_config"
    ]
    entries = hcm["route_config"]["virtual_hosts"][0]["routes"]
    routes = {r["match"].get("prefix"): r["route"]["cluster"] for r in entries if "route" in r}
    refused = {r["match"].get("prefix"): r["direct_response"]["status"] for r in entries if "direct_response" in r}
    services = [
        f"{file.package}.{service.name}"
        for file in descriptor_pb2.FileDescriptorSet.FromString(full_descriptor.read_bytes()).file
        if file.package.startswith("copytrade.")
        for service in file.service
        if f"{file.package}.{service.name}" not in INTERNAL_SERVICES
    ]
    assert sorted(transcoder["services"]) == sorted(services)
    # Internal APIs are neither transcoded nor routed: Envoy answers them itself, since the
    # catch-all would otherwise carry them to auth, which serves the user directory.
    for internal in INTERNAL_SERVICES:
        assert f"/{internal}/" not in routes
        assert refused[f"/{internal}/"] == 404
    for service in services:
        assert routes[f"/{service}/"] == expected_cluster[service.split(".")[1]]
    assert routes["/grpc.reflection."] == routes["/grpc.health.v1.Health/"] == "auth"


def test_clusters_are_http2_strict_dns_and_health_checked(written):
    clusters = {c["name"]: c for c in yaml.safe_load(written.read_text())["static_resources"]["clusters"]}
    assert set(clusters) == {"auth", "orders", "replicator", "broker_gateway"}
    for cluster in clusters.values():
        assert cluster["type"] == "STRICT_DNS"
        options = cluster["typed_extension_protocol_options"][
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        ]
        assert options["explicit_http_config"]["http2_protocol_options"]["connection_keepalive"] == {
            "interval": "30s",
            "timeout": "5s",
        }
        check = cluster["health_checks"][0]
        assert (check["interval"], check["no_traffic_interval"]) == ("2s", "2s")
    assert (
        clusters["auth"]["health_checks"][0]["grpc_health_check"]["service_name"]
        == "copytrade.auth.v1.AuthService"
    )


def test_server_stream_routes_never_time_out(written, full_descriptor):
    # Entries Envoy answers itself (internal services) forward nothing, so have no timeouts.
    routes = [r for r in manager(written)["route_config"]["virtual_hosts"][0]["routes"] if "route" in r]
    for route in routes:
        assert route["route"]["timeout"] == "0s"
        assert route["route"]["max_stream_duration"] == {"grpc_timeout_header_max": "0s"}
    streaming = [r.path(m) for r in discover(full_descriptor) for m in r.streaming_methods]
    idle = {r["match"].get("path"): r["route"]["idle_timeout"] for r in routes}
    assert all(idle[path] == "3600s" for path in streaming)


def test_jwks_file_holds_the_secret_privately(written):
    jwks_file = written.parent / "jwks.json"
    assert stat.S_IMODE(jwks_file.stat().st_mode) == 0o600
    (key,) = json.loads(jwks_file.read_text())["keys"]
    assert (key["kty"], key["alg"]) == ("oct", "HS256")
    assert base64.urlsafe_b64decode(key["k"] + "=" * (-len(key["k"]) % 4)) == SECRET.encode()
    assert SECRET not in written.read_text()
    assert key["k"] not in written.read_text()


def test_admin_stays_on_loopback_when_the_listener_binds_everywhere(full_descriptor, tmp_path, monkeypatch):
    monkeypatch.setenv(BIND_HOST_ENV, "0.0.0.0")
    bootstrap = yaml.safe_load(write_config(Settings(), tmp_path, descriptor=full_descriptor).read_text())
    assert bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]["address"] == "0.0.0.0"
    assert bootstrap["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_a_package_without_a_cluster_is_refused(tmp_path):
    unknown = descriptor_pb2.FileDescriptorSet(
        file=[
            descriptor_pb2.FileDescriptorProto(
                name="copytrade/billing/v1/billing.proto",
                package="copytrade.billing.v1",
                service=[descriptor_pb2.ServiceDescriptorProto(name="BillingService")],
            )
        ]
    )
    path = tmp_path / "api.binpb"
    path.write_bytes(unknown.SerializeToString())
    with pytest.raises(DiscoveryError, match="copytrade.billing.v1"):
        discover(path)


def test_a_renamed_public_method_is_refused(tmp_path):
    # auth.proto without Refresh: the jwt rule for it would silently match nothing.
    folder = tmp_path / "protos" / "copytrade" / "auth" / "v1"
    folder.mkdir(parents=True)
    source = (PROJECT_ROOT / "protos" / "copytrade" / "auth" / "v1" / "auth.proto").read_text()
    (folder / "auth.proto").write_text(source.replace("rpc Refresh(", "rpc RefreshTokens("))
    descriptor = build_descriptor(tmp_path, ["copytrade/auth/v1/auth.proto"], tmp_path / "protos")
    with pytest.raises(ConfigError, match="AuthService/Refresh"):
        write_config(Settings(), tmp_path / "out", descriptor=descriptor)


async def test_command_line_writes_the_config(full_descriptor, tmp_path):
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "--out",
        str(tmp_path),
        "--descriptor",
        str(full_descriptor),
        "--validate",
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(command.communicate(), 60)
    assert command.returncode == 0, stderr.decode()
    assert Path(stdout.decode().strip()) == tmp_path / "envoy.yaml"
    assert (tmp_path / "jwks.json").exists()


def test_only_the_public_methods_and_health_and_reflection_skip_the_token(written):
    jwt_filter = next(f for f in manager(written)["http_filters"] if f["name"] == "envoy.filters.http.jwt_authn")
    rules = jwt_filter["typed_config"]["rules"]
    open_rules = [rule["match"] for rule in rules if "requires" not in rule]
    assert open_rules == [
        {"path": "/copytrade.auth.v1.AuthService/Register"},
        {"path": "/copytrade.auth.v1.AuthService/Login"},
        {"path": "/copytrade.auth.v1.AuthService/LoginWithHttpBody"},
        {"path": "/copytrade.auth.v1.AuthService/Refresh"},
        {"path": "/copytrade.platform.v1.PlatformService/GetHealth"},
        # /openapi.json, /docs and /docs/<file>, transcoded to one gRPC path before jwt_authn sees them.
        {"path": "/copytrade.platform.v1.PlatformService/GetApiDocs"},
        {"prefix": "/grpc.health.v1.Health/"},
        {"prefix": "/grpc.reflection."},
    ]
    assert rules[-1] == {"match": {"prefix": "/"}, "requires": {"provider_name": "copytrade"}}


def test_headers_grpc_cannot_carry_are_sanitized_first(written):
    first = manager(written)["http_filters"][0]
    assert first["name"] == "envoy.filters.http.lua"
    code = first["typed_config"]["default_source_code"]["inline_string"]
    assert "function envoy_on_request" in code and '"-bin"' in code and "grpc-web-text" in code
