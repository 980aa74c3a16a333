"""gateway.openapi: the OpenAPI document built from the protos describes exactly what Envoy transcodes."""

from __future__ import annotations

import json
from pathlib import Path

import grpc_tools
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from copytrade.core.api_catalog import INTERNAL_SERVICES
from copytrade.core.settings import PROJECT_ROOT, VERSION
from gateway import filters
from gateway.openapi import build_openapi, descriptor_set_from_modules
from gateway.services import discover
from tests.gateway.conftest import build_descriptor
from tests.gateway.test_envoy_config import ALL_PROTOS

METHODS = ("get", "post", "put", "patch", "delete")


def with_comments(out: Path) -> descriptor_pb2.FileDescriptorSet:
    """Every proto as `make gen` reads them for the document: with imports and source info (comments)."""
    roots = [PROJECT_ROOT / "protos", PROJECT_ROOT / "third_party" / "googleapis", Path(grpc_tools.__path__[0]) / "_proto"]
    args = ["protoc", *(f"-I{r}" for r in roots), "--include_imports", "--include_source_info",
            f"--descriptor_set_out={out}", *ALL_PROTOS]
    assert protoc.main(args) == 0
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


@pytest.fixture(scope="module")
def descriptor_path(tmp_path_factory):
    return build_descriptor(tmp_path_factory.mktemp("openapi"), ALL_PROTOS)


@pytest.fixture(scope="module")
def descriptor_set(tmp_path_factory) -> descriptor_pb2.FileDescriptorSet:
    return with_comments(tmp_path_factory.mktemp("openapi-comments") / "api.binpb")


@pytest.fixture(scope="module")
def document(descriptor_set) -> dict:
    return build_openapi(descriptor_set, version=VERSION)


def operations(document: dict) -> dict[str, tuple[str, str, dict]]:
    """operationId -> (verb, path, operation)."""
    return {
        op["operationId"]: (verb, path, op)
        for path, item in document["paths"].items()
        for verb, op in item.items()
        if verb in METHODS
    }


def resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_every_transcoded_route_is_documented_and_no_internal_one(document, descriptor_set, descriptor_path):
    routed = {route.service for route in discover(descriptor_path)}
    expected = set()
    for file in descriptor_set.file:
        for service in file.service:
            full = f"{file.package}.{service.name}"
            for method in service.method:
                if method.options.HasExtension(annotations_pb2.http):
                    rule = method.options.Extensions[annotations_pb2.http]
                    for n in range(1 + len(rule.additional_bindings)):
                        if full in routed:
                            expected.add((f"/{full}/{method.name}", n))
    documented = {}
    for _verb, _path, op in operations(document).values():
        documented.setdefault(op["x-grpc-method"], 0)
        documented[op["x-grpc-method"]] += 1
    assert {(m, n) for m, count in documented.items() for n in range(count)} == expected
    assert not any(m.split("/")[1] in INTERNAL_SERVICES for m in documented)
    assert "/api/orders/{order_id}:cancel" in document["paths"]
    assert set(document["paths"]["/api/masters/{master_id}/follow"]) == {"patch", "delete"}


def test_bearer_scheme_and_public_operations_match_the_gateway(document):
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": document["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert document["security"] == [{"bearerAuth": []}]
    public = {op["x-grpc-method"] for _, _, op in operations(document).values() if op.get("security") == []}
    assert public == set(filters.PUBLIC_METHODS)


def test_login_takes_a_form_or_json(document):
    verb, path, op = operations(document)["AuthService_LoginWithHttpBody"]
    assert (verb, path) == ("post", "/api/users/login")
    content = op["requestBody"]["content"]
    assert set(content) == {"application/x-www-form-urlencoded", "application/json"}
    for media in content.values():
        schema = resolve(document, media["schema"])
        assert set(schema["properties"]) == {"username", "password"}
        assert schema["required"] == ["username", "password"]
    token = resolve(document, op["responses"]["200"]["content"]["application/json"]["schema"])
    assert token["properties"]["expires_in"]["type"] == "string"  # int64 answers are strings


def test_watch_orders_is_server_sent_events(document):
    verb, path, op = operations(document)["OrderService_WatchOrders"]
    assert (verb, path) == ("get", "/api/orders/watch")
    assert list(op["responses"]["200"]["content"]) == ["text/event-stream"]
    event = op["responses"]["200"]["content"]["text/event-stream"]["x-event-schema"]
    assert set(resolve(document, event)["properties"]) >= {"cursor", "order_update", "heartbeat", "end"}
    assert {p["name"] for p in op["parameters"]} == {
        "order_id", "include_follower_orders", "resume_after", "heartbeat_seconds"
    }


def test_path_variables_leave_the_body_and_int64_is_a_string_or_a_number(document):
    _, _, cancel = operations(document)["OrderService_CancelOrder"]
    assert [(p["name"], p["in"], p["schema"]["type"]) for p in cancel["parameters"]] == [("order_id", "path", "string")]
    body = cancel["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"keep_follower_orders"}
    _, _, place = operations(document)["OrderService_PlaceOrder"]
    request = resolve(document, place["requestBody"]["content"]["application/json"]["schema"])
    assert {s["type"] for s in request["properties"]["quantity"]["oneOf"]} == {"string", "integer"}
    assert set(request["required"]) == {"symbol", "side", "order_type", "quantity"}
    order = document["components"]["schemas"]["Order"]
    assert order["properties"]["quantity"]["type"] == "string"
    assert order["properties"]["price"]["type"] == "string"  # money: a decimal string


def test_get_methods_take_their_fields_as_query_parameters(document):
    _, _, listing = operations(document)["OrderService_ListMyOrders"]
    assert {p["name"]: p["in"] for p in listing["parameters"]} == {
        "page_size": "query", "page_token": "query", "status": "query", "symbol": "query"
    }
    assert "requestBody" not in listing


def test_errors_are_google_rpc_status(document):
    status = document["components"]["schemas"]["Status"]
    assert set(status["properties"]) == {"code", "message", "details"}
    for _, _, op in operations(document).values():
        assert op["responses"]["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Status"}
        assert "default" in op["responses"]
        assert ("401" in op["responses"]) == (op.get("security") != [] or "Login" in op["operationId"]
                                               or "Refresh" in op["operationId"])


def test_comments_become_descriptions(document):
    _, _, register = operations(document)["AuthService_Register"]
    assert register["summary"] == "Creates a MASTER or FOLLOWER account."
    user = document["components"]["schemas"]["User"]
    assert "lower-cased" in user["properties"]["email"]["description"]


def test_make_gen_writes_this_document(document):
    # build/openapi.json comes from `make gen` (scripts/gen_protos.py), from the same protos.
    written = json.loads((PROJECT_ROOT / "build" / "openapi.json").read_text())
    assert written == json.loads(json.dumps(document)), "build/openapi.json is stale: run `make gen`"


def test_generated_modules_give_the_same_routes_without_comments(document):
    from copytrade.auth.v1 import auth_pb2
    from copytrade.broker.v1 import broker_pb2
    from copytrade.orders.v1 import orders_pb2
    from copytrade.platform.v1 import platform_pb2
    from copytrade.replicator.v1 import replicator_pb2

    bare = build_openapi(
        descriptor_set_from_modules([auth_pb2, orders_pb2, replicator_pb2, broker_pb2, platform_pb2]), version=VERSION
    )
    assert {k: (v, p) for k, (v, p, _) in operations(bare).items()} == {
        k: (v, p) for k, (v, p, _) in operations(document).items()
    }
