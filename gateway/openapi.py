"""The OpenAPI 3 document of the REST API, built from the same descriptor set Envoy transcodes with.

`build_openapi(descriptor_set)` is a pure function: every public service's `google.api.http` rules
(additional bindings included) become paths; path variables, query parameters and bodies are read
from the request messages; responses, error bodies and the bearer scheme follow what the gateway
does (gateway.filters), in proto3 JSON with the .proto field names:

- 64-bit integers are JSON strings in answers; requests may send a string or a number.
- Enum-like fields are strings; money is a decimal string.
- Errors are `google.rpc.Status` JSON (`{"code", "message", "details"}`), from Envoy and services alike.
- Server-streaming methods answer with Server-Sent Events (`data: <message JSON>`).
- A request body bound to `google.api.HttpBody` is raw: the seed's login takes an HTML form or JSON.

Comments in the .proto files (when the set carries source info) become summaries and descriptions.
Internal services (copytrade.core.api_catalog.INTERNAL_SERVICES) are left out, as Envoy leaves them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2

from copytrade.core.api_catalog import INTERNAL_SERVICES
from gateway.filters import MAX_REQUEST_BODY_BYTES, PUBLIC_METHODS

OPENAPI_VERSION = "3.0.3"
SECURITY_SCHEME = "bearerAuth"
HTTP_BODY = ".google.api.HttpBody"
STATUS = ".google.rpc.Status"
_F = descriptor_pb2.FieldDescriptorProto
_INT64_TYPES = {_F.TYPE_INT64, _F.TYPE_SINT64, _F.TYPE_SFIXED64}
_UINT64_TYPES = {_F.TYPE_UINT64, _F.TYPE_FIXED64}
_INT32_TYPES = {_F.TYPE_INT32, _F.TYPE_SINT32, _F.TYPE_SFIXED32}
_UINT32_TYPES = {_F.TYPE_UINT32, _F.TYPE_FIXED32}
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
# Source-info paths: FileDescriptorProto.message_type/enum_type/service, DescriptorProto.field/nested_type/
# enum_type, ServiceDescriptorProto.method, EnumDescriptorProto.value.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM = 2, 3, 4
_SERVICE_METHOD = 2
_VARIABLE = re.compile(r"\{(?P<name>[^}=]+)(?:=(?P<pattern>[^}]*))?\}")
_WELL_KNOWN: dict[str, dict[str, object]] = {
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    ".google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$", "example": "1.5s"},
    ".google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated field paths."},
    ".google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    ".google.protobuf.Value": {},
    ".google.protobuf.ListValue": {"type": "array", "items": {}},
    ".google.protobuf.Empty": {"type": "object"},
    ".google.protobuf.Any": {
        "type": "object",
        "description": "Any message, named by `@type`, with that message's fields beside it.",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
    ".google.protobuf.StringValue": {"type": "string"},
    ".google.protobuf.BytesValue": {"type": "string", "format": "byte"},
    ".google.protobuf.BoolValue": {"type": "boolean"},
    ".google.protobuf.DoubleValue": {"type": "number", "format": "double"},
    ".google.protobuf.FloatValue": {"type": "number", "format": "float"},
    ".google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    ".google.protobuf.UInt32Value": {"type": "integer", "format": "int32", "minimum": 0},
}
# Request bodies bound to google.api.HttpBody are raw bytes to the transcoder; what the method reads
# from them is known only to its code, so it is stated here: the message whose fields the body carries
# and the content types it accepts.
HTTP_BODY_REQUESTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "copytrade.auth.v1.AuthService.LoginWithHttpBody": (
        ".copytrade.auth.v1.LoginRequest",
        ("application/x-www-form-urlencoded", "application/json"),
    ),
}
# And the content types of HttpBody responses.
HTTP_BODY_RESPONSES: dict[str, tuple[str, ...]] = {
    "copytrade.platform.v1.PlatformService.GetApiDocs": (
        "application/json",
        "text/html",
        "text/css",
        "application/javascript",
        "image/png",
    ),
}
# The errors every operation may answer with, beside `default`; 401 only where a token is needed
# or the method checks credentials itself.
_ERRORS = {
    "400": "Invalid argument: a malformed body or parameter, or a value the service refuses "
    "(google.rpc.BadRequest in `details` names the field).",
    "401": "Unauthenticated: no token, or a tampered, expired or revoked one.",
    "403": "Permission denied: the caller's role may not do this.",
    "404": "Not found: no such resource, or one the caller may not see.",
    "409": "Conflict: already exists, or an idempotency key reused for another request.",
    "413": f"Request body over {MAX_REQUEST_BODY_BYTES} bytes.",
    "429": "Rate limited, or too many failed logins.",
}


@dataclass
class _Message:
    proto: descriptor_pb2.DescriptorProto
    full_name: str  # ".pkg.Outer.Inner"
    comment: str
    field_comments: dict[str, str]


@dataclass
class _Enum:
    proto: descriptor_pb2.EnumDescriptorProto
    comment: str


@dataclass
class _Index:
    messages: dict[str, _Message] = field(default_factory=dict)
    enums: dict[str, _Enum] = field(default_factory=dict)


@dataclass(frozen=True)
class _Binding:
    verb: str
    template: str
    body: str
    response_body: str


def build_openapi(
    descriptor_set: descriptor_pb2.FileDescriptorSet,
    *,
    version: str,
    title: str = "Copytrade API",
    public_methods: Iterable[str] = PUBLIC_METHODS,
    internal_services: Iterable[str] = INTERNAL_SERVICES,
) -> dict[str, object]:
    """The OpenAPI 3.0 document (a JSON-ready dict) of every REST route Envoy transcodes."""
    return _Builder(descriptor_set, frozenset(public_methods), frozenset(internal_services)).build(
        title=title, version=version
    )


def descriptor_set_from_modules(modules: Iterable[object]) -> descriptor_pb2.FileDescriptorSet:
    """A FileDescriptorSet (with imports) of generated `_pb2` modules, for when no built set is at hand.

    Generated modules carry no comments, so the document built from this set has no descriptions.
    """
    result = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(file_descriptor) -> None:
        if file_descriptor.name in seen:
            return
        seen.add(file_descriptor.name)
        for dependency in file_descriptor.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file_descriptor.CopyToProto(proto)
        result.file.append(proto)

    for module in modules:
        add(module.DESCRIPTOR)  # type: ignore[attr-defined]
    return result


def _comment(locations: dict[tuple[int, ...], descriptor_pb2.SourceCodeInfo.Location], path: tuple[int, ...]) -> str:
    location = locations.get(path)
    if location is None:
        return ""
    lines = [line.removeprefix(" ") for line in location.leading_comments.splitlines()]
    return "\n".join(lines).strip()


def _index(descriptor_set: descriptor_pb2.FileDescriptorSet) -> _Index:
    index = _Index()
    for file in descriptor_set.file:
        locations = {tuple(loc.path): loc for loc in file.source_code_info.location}
        prefix = f".{file.package}" if file.package else ""

        def add_enum(enum: descriptor_pb2.EnumDescriptorProto, scope: str, path: tuple[int, ...]) -> None:
            index.enums[f"{scope}.{enum.name}"] = _Enum(enum, _comment(locations, path))  # noqa: B023

        def add_message(message: descriptor_pb2.DescriptorProto, scope: str, path: tuple[int, ...]) -> None:
            name = f"{scope}.{message.name}"
            index.messages[name] = _Message(
                message,
                name,
                _comment(locations, path),  # noqa: B023
                {
                    f.name: _comment(locations, (*path, _MESSAGE_FIELD, i))  # noqa: B023
                    for i, f in enumerate(message.field)
                },
            )
            for i, nested in enumerate(message.nested_type):
                add_message(nested, name, (*path, _MESSAGE_NESTED, i))
            for i, enum in enumerate(message.enum_type):
                add_enum(enum, name, (*path, _MESSAGE_ENUM, i))

        for i, message in enumerate(file.message_type):
            add_message(message, prefix, (_FILE_MESSAGE, i))
        for i, enum in enumerate(file.enum_type):
            add_enum(enum, prefix, (_FILE_ENUM, i))
    return index


def _bindings(rule: http_pb2.HttpRule) -> list[_Binding]:
    found = []
    for candidate in (rule, *rule.additional_bindings):
        verb = candidate.WhichOneof("pattern")
        if verb is None:
            continue
        template = candidate.custom.path if verb == "custom" else getattr(candidate, verb)
        method = candidate.custom.kind.lower() if verb == "custom" else verb
        found.append(_Binding(method, template, candidate.body, candidate.response_body))
    return found


def _behaviors(proto: descriptor_pb2.FieldDescriptorProto) -> set[int]:
    return set(proto.options.Extensions[field_behavior_pb2.field_behavior])


class _Builder:
    def __init__(
        self,
        descriptor_set: descriptor_pb2.FileDescriptorSet,
        public_methods: frozenset[str],
        internal_services: frozenset[str],
    ) -> None:
        self._set = descriptor_set
        self._public = public_methods
        self._internal = internal_services
        self._index = _index(descriptor_set)
        self._schemas: dict[str, dict[str, object]] = {}
        # (message full name, "request" | "response") -> component name
        self._names: dict[tuple[str, str], str] = {}
        self._short_names: dict[str, str] = {}

    # -- document ---------------------------------------------------------------------------------

    def build(self, *, title: str, version: str) -> dict[str, object]:
        paths: dict[str, dict[str, object]] = {}
        tags = []
        for file in self._set.file:
            if not file.package.startswith("copytrade."):
                continue
            locations = {tuple(loc.path): loc for loc in file.source_code_info.location}
            for s, service in enumerate(file.service):
                full_service = f"{file.package}.{service.name}"
                if full_service in self._internal:
                    continue
                operations = 0
                for m, method in enumerate(service.method):
                    if not method.options.HasExtension(annotations_pb2.http):
                        continue
                    comment = _comment(locations, (_FILE_SERVICE, s, _SERVICE_METHOD, m))
                    bindings = _bindings(method.options.Extensions[annotations_pb2.http])
                    for n, binding in enumerate(bindings):
                        path, operation = self._operation(full_service, service.name, method, binding, comment, n)
                        if path in paths and binding.verb in paths[path]:
                            raise ValueError(f"two methods bound to {binding.verb.upper()} {path}")
                        paths.setdefault(path, {})[binding.verb] = operation
                        operations += 1
                if operations:
                    tag: dict[str, object] = {"name": service.name}
                    service_comment = _comment(locations, (_FILE_SERVICE, s))
                    if service_comment:
                        tag["description"] = service_comment
                    tags.append(tag)
        return {
            "openapi": OPENAPI_VERSION,
            "info": {"title": title, "version": version, "description": _API_DESCRIPTION},
            "servers": [{"url": "/"}],
            "tags": tags,
            "security": [{SECURITY_SCHEME: []}],
            "paths": dict(sorted(paths.items())),
            "components": {
                "securitySchemes": {
                    SECURITY_SCHEME: {
                        "type": "http",
                        "scheme": "bearer",
                        "bearerFormat": "JWT",
                        "description": "The `access_token` from login or refresh, as `Authorization: Bearer <token>`.",
                    }
                },
                "schemas": dict(sorted(self._schemas.items())),
            },
        }

    def _operation(
        self,
        full_service: str,
        service_name: str,
        method: descriptor_pb2.MethodDescriptorProto,
        binding: _Binding,
        comment: str,
        binding_number: int,
    ) -> tuple[str, dict[str, object]]:
        request = self._index.messages[method.input_type]
        path, path_fields, fixed_fields = self._path(binding.template, request)
        operation: dict[str, object] = {
            "tags": [service_name],
            "operationId": f"{service_name}_{method.name}" + (f"_{binding_number + 1}" if binding_number else ""),
            "x-grpc-method": f"/{full_service}/{method.name}",
        }
        summary = _first_sentence(comment)
        if summary:
            operation["summary"] = summary
        if comment:
            operation["description"] = comment
        public = f"/{full_service}/{method.name}" in self._public
        if public:
            operation["security"] = []

        parameters = [self._path_parameter(request, name) for name in path_fields]
        bound = set(path_fields) | set(fixed_fields)
        if binding.body != "*":
            body_top = {binding.body} if binding.body else set()
            parameters += self._query_parameters(request, bound | body_top)
        if parameters:
            operation["parameters"] = parameters
        if binding.body:
            operation["requestBody"] = self._request_body(f"{full_service}.{method.name}", request, binding.body, bound)
        operation["responses"] = self._responses(f"{full_service}.{method.name}", method, binding, public)
        return path, operation

    # -- paths and parameters ---------------------------------------------------------------------

    def _path(self, template: str, request: _Message) -> tuple[str, list[str], dict[str, str]]:
        path_fields: list[str] = []
        fixed: dict[str, str] = {}

        def replace(match: re.Match[str]) -> str:
            name, pattern = match["name"], match["pattern"]
            if pattern and all(segment not in ("*", "**") for segment in pattern.split("/")):
                # `{file=openapi.json}`: only one value matches, so the path is that literal.
                fixed[name] = pattern
                return pattern
            path_fields.append(name)
            return "{" + name + "}"

        return _VARIABLE.sub(replace, template), path_fields, fixed

    def _field(self, message: _Message, dotted: str) -> tuple[descriptor_pb2.FieldDescriptorProto, _Message]:
        *parents, last = dotted.split(".")
        for name in parents:
            parent = next(f for f in message.proto.field if f.name == name)
            message = self._index.messages[parent.type_name]
        return next(f for f in message.proto.field if f.name == last), message

    def _path_parameter(self, request: _Message, dotted: str) -> dict[str, object]:
        proto, owner = self._field(request, dotted)
        parameter: dict[str, object] = {
            "name": dotted,
            "in": "path",
            "required": True,
            "schema": self._scalar_parameter_schema(proto),
        }
        description = owner.field_comments.get(proto.name)
        if description:
            parameter["description"] = description
        return parameter

    def _query_parameters(self, request: _Message, bound: set[str]) -> list[dict[str, object]]:
        parameters: list[dict[str, object]] = []

        def walk(message: _Message, prefix: str, depth: int, seen: tuple[str, ...]) -> None:
            for proto in message.proto.field:
                name = f"{prefix}{proto.name}"
                if name in bound:
                    continue
                if proto.type == _F.TYPE_MESSAGE and proto.type_name not in _WELL_KNOWN:
                    nested = self._index.messages[proto.type_name]
                    is_map = nested.proto.options.map_entry
                    repeated = proto.label == _F.LABEL_REPEATED
                    # Query strings carry scalars: maps and repeated messages cannot be sent there.
                    if is_map or repeated or depth >= 3 or proto.type_name in seen:
                        continue
                    walk(nested, f"{name}.", depth + 1, (*seen, proto.type_name))
                    continue
                schema = self._scalar_parameter_schema(proto)
                if proto.label == _F.LABEL_REPEATED:
                    schema = {"type": "array", "items": schema}
                parameter: dict[str, object] = {"name": name, "in": "query", "required": False, "schema": schema}
                if proto.label == _F.LABEL_REPEATED:
                    parameter |= {"style": "form", "explode": True}
                description = message.field_comments.get(proto.name)
                if description:
                    parameter["description"] = description
                parameters.append(parameter)

        walk(request, "", 0, (request.full_name,))
        return parameters

    def _scalar_parameter_schema(self, proto: descriptor_pb2.FieldDescriptorProto) -> dict[str, object]:
        # Path and query values are text: a 64-bit integer is written in digits either way.
        if proto.type in _INT64_TYPES:
            return {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
        if proto.type in _UINT64_TYPES:
            return {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}
        return self._field_schema(proto, "request", with_description=False)

    # -- bodies -----------------------------------------------------------------------------------

    def _request_body(self, method: str, request: _Message, body: str, bound: set[str]) -> dict[str, object]:
        if body == "*":
            schema = self._message_schema(request.full_name, "request", exclude=bound)
            required = bool(self._required(request, bound))
            return {"required": required, "content": {"application/json": {"schema": schema}}}
        proto, _ = self._field(request, body)
        if proto.type_name == HTTP_BODY:
            carried = HTTP_BODY_REQUESTS.get(method)
            if carried is None:
                return {"required": True, "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}
            message, content_types = carried
            schema = self._message_schema(message, "request")
            return {"required": True, "content": {content_type: {"schema": schema} for content_type in content_types}}
        return {
            "required": True,
            "content": {"application/json": {"schema": self._field_schema(proto, "request", with_description=False)}},
        }

    def _responses(
        self, method_name: str, method: descriptor_pb2.MethodDescriptorProto, binding: _Binding, public: bool
    ) -> dict[str, object]:
        response = self._index.messages[method.output_type]
        if binding.response_body:
            proto, _ = self._field(response, binding.response_body)
            type_name = proto.type_name
        else:
            type_name = method.output_type
        if type_name != HTTP_BODY:
            schema = (
                self._field_schema(proto, "response", with_description=False)
                if binding.response_body
                else self._message_schema(method.output_type, "response")
            )
        if type_name == HTTP_BODY:
            content_types = HTTP_BODY_RESPONSES.get(method_name, ("*/*",))
            content = {content_type: {"schema": _raw_schema(content_type)} for content_type in content_types}
            ok: dict[str, object] = {"description": "The content, of the type its Content-Type names.", "content": content}
        elif method.server_streaming:
            event = self._names[(type_name, "response")]
            ok = {
                "description": (
                    "A stream of Server-Sent Events, one per message: `data: <JSON>` followed by a blank line, "
                    f"each JSON a `{event}` (see its schema). It stays open until the client closes it; "
                    "errors before the first event are answered as a JSON error with its HTTP status."
                ),
                "content": {"text/event-stream": {"schema": {"type": "string"}, "x-event-schema": schema}},
            }
        else:
            ok = {"description": "OK", "content": {"application/json": {"schema": schema}}}
        status = self._message_schema(STATUS, "response") if STATUS in self._index.messages else {"type": "object"}
        error_content = {"application/json": {"schema": status}}
        responses: dict[str, object] = {"200": ok}
        for code, description in _ERRORS.items():
            if code == "401" and public and not method.name.startswith(("Login", "Refresh")):
                continue
            responses[code] = {"description": description, "content": error_content}
        responses["default"] = {
            "description": "Any other error, as google.rpc.Status JSON (503 while a service is unavailable).",
            "content": error_content,
        }
        return responses

    # -- schemas ----------------------------------------------------------------------------------

    def _required(self, message: _Message, exclude: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
        return [
            f.name
            for f in message.proto.field
            if field_behavior_pb2.REQUIRED in _behaviors(f) and f.name not in exclude
        ]

    def _component_name(self, full_name: str, direction: str) -> str:
        short = full_name.rsplit(".", 1)[1]
        owner = self._short_names.setdefault(short, full_name)
        if owner != full_name:
            # Same short name in two packages: qualify the later one (`broker.v1.Order` -> BrokerV1Order).
            package = full_name.lstrip(".").split(".")[1:-1]
            short = "".join(part[:1].upper() + part[1:] for part in package) + short
        # A message sent in requests is shaped differently from one in answers (64-bit integers may be
        # numbers, required fields are listed): request messages keep their name, anything else used
        # in a request gets `Input`.
        if direction == "request" and not short.endswith("Request"):
            short += "Input"
        return short

    def _message_schema(
        self, full_name: str, direction: str, exclude: set[str] | frozenset[str] = frozenset()
    ) -> dict[str, object]:
        if full_name in _WELL_KNOWN:
            return copy.deepcopy(_WELL_KNOWN[full_name])
        if full_name in (".google.protobuf.Int64Value", ".google.protobuf.UInt64Value"):
            return self._int64_schema(direction, unsigned=full_name.endswith("UInt64Value"))
        message = self._index.messages[full_name]
        if exclude:
            # The body of a method with path variables: the message without the fields the path carries.
            inline = copy.deepcopy(self._object_schema(message, direction))
            properties = inline.get("properties")
            if isinstance(properties, dict):
                for name in exclude:
                    properties.pop(name, None)
            required = inline.get("required")
            if isinstance(required, list):
                inline["required"] = [r for r in required if r not in exclude]
                if not inline["required"]:
                    del inline["required"]
            return inline
        key = (full_name, direction)
        if key not in self._names:
            name = self._component_name(full_name, direction)
            self._names[key] = name
            self._schemas[name] = {}  # reserve first: messages may refer to themselves
            self._schemas[name] = self._object_schema(message, direction)
        return {"$ref": f"#/components/schemas/{self._names[key]}"}

    def _object_schema(self, message: _Message, direction: str) -> dict[str, object]:
        schema: dict[str, object] = {"type": "object"}
        if message.comment:
            schema["description"] = message.comment
        properties = {}
        oneofs: dict[int, list[str]] = {}
        for proto in message.proto.field:
            properties[proto.name] = self._field_schema(proto, direction, owner=message)
            if proto.HasField("oneof_index") and not proto.proto3_optional:
                oneofs.setdefault(proto.oneof_index, []).append(proto.name)
        schema["properties"] = properties
        if oneofs:
            notes = [
                f"`{message.proto.oneof_decl[i].name}`: at most one of " + ", ".join(f"`{n}`" for n in names)
                for i, names in oneofs.items()
            ]
            schema["description"] = "\n\n".join(filter(None, [str(schema.get("description", "")), *notes]))
        if direction == "request":
            required = self._required(message)
            if required:
                schema["required"] = required
        return schema

    def _int64_schema(self, direction: str, *, unsigned: bool) -> dict[str, object]:
        text: dict[str, object] = {"type": "string", "format": "uint64" if unsigned else "int64", "pattern": "^[0-9]+$" if unsigned else "^-?[0-9]+$"}
        if direction == "response":
            return text
        number = {"type": "integer", "format": "int64", "minimum": 0 if unsigned else _INT64_MIN}
        if not unsigned:
            number["maximum"] = _INT64_MAX
        # proto3 JSON: a decimal string, or a JSON number.
        return {"oneOf": [text, number]}

    def _field_schema(
        self,
        proto: descriptor_pb2.FieldDescriptorProto,
        direction: str,
        *,
        owner: _Message | None = None,
        with_description: bool = True,
    ) -> dict[str, object]:
        if proto.type == _F.TYPE_MESSAGE and self._index.messages.get(proto.type_name, None) is not None:
            nested = self._index.messages[proto.type_name]
            if nested.proto.options.map_entry:
                value = next(f for f in nested.proto.field if f.name == "value")
                schema: dict[str, object] = {
                    "type": "object",
                    "additionalProperties": self._single_schema(value, direction),
                }
                return self._annotate(schema, proto, owner, with_description)
        schema = self._single_schema(proto, direction)
        if proto.label == _F.LABEL_REPEATED:
            schema = {"type": "array", "items": schema}
        return self._annotate(schema, proto, owner, with_description)

    def _annotate(
        self,
        schema: dict[str, object],
        proto: descriptor_pb2.FieldDescriptorProto,
        owner: _Message | None,
        with_description: bool,
    ) -> dict[str, object]:
        behaviors = _behaviors(proto)
        extra: dict[str, object] = {}
        if with_description and owner is not None and owner.field_comments.get(proto.name):
            extra["description"] = owner.field_comments[proto.name]
        if field_behavior_pb2.OUTPUT_ONLY in behaviors:
            extra["readOnly"] = True
        if field_behavior_pb2.INPUT_ONLY in behaviors:
            extra["writeOnly"] = True
        if not extra:
            return schema
        if "$ref" in schema:
            # OpenAPI 3.0 ignores siblings of $ref: wrap it.
            return {"allOf": [schema], **extra}
        return {**schema, **extra}

    def _single_schema(self, proto: descriptor_pb2.FieldDescriptorProto, direction: str) -> dict[str, object]:
        kind = proto.type
        if kind in _INT64_TYPES or kind in _UINT64_TYPES:
            return self._int64_schema(direction, unsigned=kind in _UINT64_TYPES)
        if kind in _INT32_TYPES:
            return {"type": "integer", "format": "int32", "minimum": -(1 << 31), "maximum": (1 << 31) - 1}
        if kind in _UINT32_TYPES:
            return {"type": "integer", "format": "int32", "minimum": 0, "maximum": (1 << 32) - 1}
        if kind == _F.TYPE_DOUBLE:
            return {"type": "number", "format": "double"}
        if kind == _F.TYPE_FLOAT:
            return {"type": "number", "format": "float"}
        if kind == _F.TYPE_BOOL:
            return {"type": "boolean"}
        if kind == _F.TYPE_STRING:
            return {"type": "string"}
        if kind == _F.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        if kind == _F.TYPE_ENUM:
            enum = self._index.enums[proto.type_name]
            schema: dict[str, object] = {"type": "string", "enum": [value.name for value in enum.proto.value]}
            if enum.comment:
                schema["description"] = enum.comment
            return schema
        return self._message_schema(proto.type_name, direction)


def _first_sentence(comment: str) -> str:
    paragraph = " ".join(comment.partition("\n\n")[0].split())
    match = re.match(r"(.+?[.:])(\s|$)", paragraph)
    sentence = match.group(1) if match else paragraph
    return sentence if len(sentence) <= 120 else sentence[:117].rstrip() + "..."


def _raw_schema(content_type: str) -> dict[str, object]:
    if content_type == "application/json":
        return {}  # any JSON
    if content_type.startswith("text/") or content_type == "application/javascript":
        return {"type": "string"}
    return {"type": "string", "format": "binary"}


_API_DESCRIPTION = """\
Copytrade's REST API: the gateway transcodes each of these routes to a gRPC method of the same
service (named in `x-grpc-method`); gRPC and gRPC-Web clients reach the same methods on the same port.

- **Auth:** log in (`POST /api/users/login`), then send `Authorization: Bearer <access_token>`.
  Only register, login, refresh, health and these docs are public.
- **JSON:** field names as in the .proto files. 64-bit integers (ids, quantities) are answered as
  strings (`"id": "1"`) and accepted as strings or numbers. Money and prices are decimal strings.
  Enum-like fields (`role`, `side`, `status`...) are strings. Unknown body fields are ignored;
  unknown query parameters are a 400.
- **Errors:** always JSON `{"code": <google.rpc.Code>, "message": "...", "details": [...]}` with the
  matching HTTP status; a `google.rpc.BadRequest` detail names the field at fault.
- **Streams:** `GET /api/orders/watch` is Server-Sent Events.
"""
