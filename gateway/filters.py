"""The HTTP filter chain, in the order Envoy runs it, and the JSON shape of Envoy's own replies.

The order matters (ENVOY_GRPC_NOTES 1.2): the transcoder rewrites a REST request to its gRPC path
(`POST /copytrade.auth.v1.AuthService/GetMe`), so jwt_authn and the rate limit, which come after it,
see one path per method whether the caller spoke REST, gRPC or gRPC-Web. Putting jwt_authn first
would let a REST path slip past rules written for gRPC paths.
"""

from __future__ import annotations

from pathlib import Path

from gateway.services import ServiceRoute

JWT_PROVIDER = "copytrade"
MAX_REQUEST_BODY_BYTES = 1 << 20
# Unary responses are buffered whole by the transcoder; gRPC's default message limit is 4 MiB too.
MAX_RESPONSE_BODY_BYTES = 4 << 20
# What anyone may call without a token: signing up, logging in, refreshing, the platform's health and
# the API docs (`/openapi.json`, `/docs`).
PUBLIC_METHODS = (
    "/copytrade.auth.v1.AuthService/Register",
    "/copytrade.auth.v1.AuthService/Login",
    "/copytrade.auth.v1.AuthService/LoginWithHttpBody",
    "/copytrade.auth.v1.AuthService/Refresh",
    "/copytrade.platform.v1.PlatformService/GetHealth",
    "/copytrade.platform.v1.PlatformService/GetApiDocs",
)
# Only gRPC paths: jwt_authn runs after the transcoder, so REST paths such as /docs never reach it.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

# google.rpc.Code for the HTTP statuses Envoy answers with itself, so a REST client reads Envoy's
# errors and the services' errors (converted by the transcoder) in one shape.
_LOCAL_REPLY_CODES = {
    400: 3,  # INVALID_ARGUMENT: body or query the transcoder cannot parse
    401: 16,  # UNAUTHENTICATED: missing, invalid or expired token
    403: 7,  # PERMISSION_DENIED: token for another audience
    404: 5,  # NOT_FOUND: no such REST endpoint
    408: 4,  # DEADLINE_EXCEEDED: request headers too slow
    413: 8,  # RESOURCE_EXHAUSTED: body over the limit
    429: 8,  # RESOURCE_EXHAUSTED: rate limited
    431: 8,  # RESOURCE_EXHAUSTED: headers over the limit
    500: 13,  # INTERNAL
    502: 14,  # UNAVAILABLE: upstream reset
    503: 14,  # UNAVAILABLE: no healthy upstream
    504: 4,  # DEADLINE_EXCEEDED: upstream timeout
}
_UNKNOWN = 2


def _typed(type_name: str, **fields: object) -> dict[str, object]:
    return {"@type": f"type.googleapis.com/{type_name}", **fields}


def _percent(value: int, runtime_key: str) -> dict[str, object]:
    return {"runtime_key": runtime_key, "default_value": {"numerator": value, "denominator": "HUNDRED"}}


# Headers Envoy accepts but a gRPC server does not: grpcio answers INTERNAL ("Illegal header key",
# "Error parsing 'x-bin' metadata: illegal base64 encoding", "... 'grpc-timeout' metadata") before any
# handler runs, so the services cannot turn them into a 4xx. Found by fuzzing (tests/fuzz). This
# filter, first in the chain, drops them:
# - names gRPC metadata cannot carry (anything but 0-9 a-z _ . -, such as `p-%io+t`);
# - every `-bin` (binary) header: no service reads one, and grpcio refuses more base64 than Envoy
#   can check cheaply (`T2` too);
# - from REST requests, every `grpc-*` header: the transcoder builds the gRPC request itself, and a
#   client's `grpc-timeout: 0S` would otherwise be a 504;
# - from gRPC requests, headers only a server or a load balancer may send (`grpc-status`,
#   `grpc-previous-rpc-attempts`, `lb-token`...) and a malformed `grpc-timeout`. A `grpc-encoding`
#   the services cannot decode is answered UNIMPLEMENTED, as the gRPC protocol says.
# And two gRPC requests grpcio would answer INTERNAL are answered here: one whose method is not
# POST (UNIMPLEMENTED), and a gRPC-Web-text body that is not base64, which the grpc_web filter
# answers with HTTP 400 and so grpc-status INTERNAL (no local reply setting can change that):
# INVALID_ARGUMENT.
_SANITIZE_HEADERS_LUA = r"""
local grpc_encodings = {identity = true, gzip = true, deflate = true}
local server_only = {
  ["grpc-status"] = true, ["grpc-message"] = true, ["grpc-previous-rpc-attempts"] = true,
  ["grpc-retry-pushback-ms"] = true, ["lb-token"] = true,
}

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Base64 as the grpc_web filter decodes it: groups of four, padded segments may follow each other,
-- and the bits a padded group leaves over are zero.
local function valid_base64(body)
  if #body % 4 ~= 0 or string.find(body, "[^A-Za-z0-9+/=]") then return false end
  for pad in string.gmatch(body, "()=") do
    local at = (pad - 1) % 4
    if at == 2 then
      if string.sub(body, pad + 1, pad + 1) ~= "=" then return false end
      if (string.find(alphabet, string.sub(body, pad - 1, pad - 1), 1, true) - 1) % 16 ~= 0 then return false end
    elseif at == 3 then
      if string.sub(body, pad - 1, pad - 1) ~= "=" and
         (string.find(alphabet, string.sub(body, pad - 1, pad - 1), 1, true) - 1) % 4 ~= 0 then
        return false
      end
    else
      return false
    end
  end
  return true
end

local function refused(key, value, is_grpc)
  if string.find(key, "[^0-9a-z_.-]") then return true end
  if string.sub(key, -4) == "-bin" then return true end
  if server_only[key] or string.sub(key, 1, 14) == "grpc-internal-" then return true end
  if string.sub(key, 1, 5) == "grpc-" and not is_grpc then return true end
  if key == "grpc-timeout" then
    return string.find(value, "^[0-9]+[HMSmun]$") == nil or #value > 9
  end
  return false
end

function envoy_on_request(request_handle)
  local headers = request_handle:headers()
  local content_type = headers:get("content-type") or ""
  local is_grpc = string.sub(content_type, 1, 16) == "application/grpc"
  if is_grpc and headers:get(":method") ~= "POST" then
    request_handle:respond(
      {[":status"] = "200", ["content-type"] = content_type, ["grpc-status"] = "12",
       ["grpc-message"] = "gRPC calls are POST requests"},
      "")
    return
  end
  local encoding = headers:get("grpc-encoding")
  if is_grpc and encoding ~= nil and not grpc_encodings[encoding] then
    request_handle:respond(
      {[":status"] = "200", ["content-type"] = "application/grpc", ["grpc-status"] = "12",
       ["grpc-message"] = "grpc-encoding " .. string.gsub(encoding, "[^%w%-]", "?") .. " is not supported"},
      "")
    return
  end
  if string.sub(content_type, 1, 26) == "application/grpc-web-text" then
    local body = request_handle:body()
    if body ~= nil and not valid_base64(body:getBytes(0, body:length())) then
      request_handle:respond(
        {[":status"] = "200", ["content-type"] = content_type, ["grpc-status"] = "3",
         ["grpc-message"] = "the gRPC-Web-text body is not base64"},
        "")
      return
    end
  end
  local drop = {}
  for key, value in pairs(headers) do
    if string.sub(key, 1, 1) ~= ":" and refused(key, value, is_grpc) then
      drop[#drop + 1] = key
    end
  end
  for _, key in ipairs(drop) do
    headers:remove(key)
  end
end
"""


def sanitize_headers() -> dict[str, object]:
    return {
        "name": "envoy.filters.http.lua",
        "typed_config": _typed(
            "envoy.extensions.filters.http.lua.v3.Lua",
            default_source_code={"inline_string": _SANITIZE_HEADERS_LUA},
            stat_prefix="sanitize_headers",
        ),
    }


def grpc_web() -> dict[str, object]:
    return {
        "name": "envoy.filters.http.grpc_web",
        "typed_config": _typed("envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"),
    }


def cors() -> dict[str, object]:
    # The policy itself sits on the virtual host (cors_policy below).
    return {
        "name": "envoy.filters.http.cors",
        "typed_config": _typed("envoy.extensions.filters.http.cors.v3.Cors"),
    }


def cors_policy() -> dict[str, object]:
    # Any origin: tokens travel in the Authorization header, never in cookies, and credentials are
    # not allowed, so another site's page cannot act as a logged-in user.
    return _typed(
        "envoy.extensions.filters.http.cors.v3.CorsPolicy",
        allow_origin_string_match=[{"safe_regex": {"regex": ".*"}}],
        allow_methods="GET, POST, PUT, PATCH, DELETE, OPTIONS",
        allow_headers=(
            "authorization, content-type, accept, x-grpc-web, x-user-agent, grpc-timeout, "
            "x-accept-content-transfer-encoding, x-accept-response-streaming, idempotency-key"
        ),
        expose_headers="grpc-status, grpc-message, grpc-status-details-bin, x-request-id",
        max_age="86400",
    )


def request_buffer() -> dict[str, object]:
    # The transcoder enforces max_request_body_size only on bodies it buffers (HttpBody); JSON is
    # converted as it streams in, so a huge body would reach a service. Buffering every request
    # (all our RPCs take a single request message) gives one limit and a 413 for all of them.
    return {
        "name": "envoy.filters.http.buffer",
        "typed_config": _typed(
            "envoy.extensions.filters.http.buffer.v3.Buffer", max_request_bytes=MAX_REQUEST_BODY_BYTES
        ),
    }


def buffer_disabled() -> dict[str, object]:
    return _typed("envoy.extensions.filters.http.buffer.v3.BufferPerRoute", disabled=True)


def grpc_json_transcoder(descriptor: Path, routes: list[ServiceRoute]) -> dict[str, object]:
    return {
        "name": "envoy.filters.http.grpc_json_transcoder",
        "typed_config": _typed(
            "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
            proto_descriptor=str(descriptor),
            services=[route.service for route in routes],
            print_options={
                # JSON field names match the .proto files and grpcurl's output.
                "preserve_proto_field_names": True,
                # A stable JSON shape: zero values and empty lists are present, not omitted.
                "always_print_primitive_fields": True,
                # Server streams reach REST clients as Server-Sent Events.
                "stream_sse_style_delimited": True,
            },
            convert_grpc_status=True,
            case_insensitive_enum_parsing=True,
            request_validation_options={
                # A clear 404/400 instead of a 503 from a gRPC server handed plain HTTP.
                "reject_unknown_method": True,
                "reject_unknown_query_parameters": True,
            },
            max_request_body_size=MAX_REQUEST_BODY_BYTES,
            max_response_body_size=MAX_RESPONSE_BODY_BYTES,
        ),
    }


def jwt_authn(*, issuer: str, audience: str, jwks_file: Path) -> dict[str, object]:
    public = [{"match": {"path": path}} for path in PUBLIC_METHODS]
    public += [{"match": {"prefix": prefix}} for prefix in PUBLIC_PREFIXES]
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": _typed(
            "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            providers={
                JWT_PROVIDER: {
                    "issuer": issuer,
                    "audiences": [audience],
                    # A file, so the HS256 secret is not in envoy.yaml (which gets logged and copied).
                    "local_jwks": {"filename": str(jwks_file)},
                    # Keep the token: every service verifies it again (defence in depth).
                    "forward": True,
                    # The header only; a ?access_token= would end up in access logs.
                    "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                    "require_expiration": True,
                }
            },
            # First match wins: the public list, then everything else needs a valid token.
            rules=[*public, {"match": {"prefix": "/"}, "requires": {"provider_name": JWT_PROVIDER}}],
        ),
    }


def local_ratelimit(requests_per_second: int) -> dict[str, object]:
    return {
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": _typed(
            "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            stat_prefix="gateway_rate_limit",
            token_bucket={
                "max_tokens": requests_per_second,
                "tokens_per_fill": requests_per_second,
                "fill_interval": "1s",
            },
            # Both at 100 %, or the filter only counts and never limits.
            filter_enabled=_percent(100, "gateway_rate_limit.enabled"),
            filter_enforced=_percent(100, "gateway_rate_limit.enforced"),
            # gRPC clients get RESOURCE_EXHAUSTED (retry later), not UNAVAILABLE.
            rate_limited_as_resource_exhausted=True,
        ),
    }


def router() -> dict[str, object]:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": _typed("envoy.extensions.filters.http.router.v3.Router"),
    }


def http_filters(
    *,
    descriptor: Path,
    routes: list[ServiceRoute],
    issuer: str,
    audience: str,
    jwks_file: Path,
    requests_per_second: int,
) -> list[dict[str, object]]:
    return [
        sanitize_headers(),
        grpc_web(),
        cors(),
        request_buffer(),
        grpc_json_transcoder(descriptor, routes),
        jwt_authn(issuer=issuer, audience=audience, jwks_file=jwks_file),
        local_ratelimit(requests_per_second),
        router(),
    ]


def local_reply_config() -> dict[str, object]:
    """Envoy's own replies to REST clients as `{"code": <google.rpc.Code>, "message": ..., "details": []}`.

    The shape is the one the transcoder gives the services' errors. gRPC and gRPC-Web callers are
    left alone: Envoy answers them with grpc-status and a plain grpc-message.
    """
    mappers = [
        {
            "filter": {"and_filter": {"filters": [_rest_request(), _status_is(status)]}},
            "body_format_override": _json_status_body(code),
        }
        for status, code in _LOCAL_REPLY_CODES.items()
    ]
    mappers.append({"filter": _rest_request(), "body_format_override": _json_status_body(_UNKNOWN)})
    return {"mappers": mappers}


def _rest_request() -> dict[str, object]:
    # Envoy decides "gRPC or not" from the request as it arrived (seen on 1.40), but these filters see it as it is
    # now: a transcoded REST request already says application/grpc. The transcoder marks it with
    # x-envoy-original-method, a header Envoy strips from what clients send.
    transcoded = {"header_filter": {"header": {"name": "x-envoy-original-method", "present_match": True}}}
    not_grpc = {
        "header_filter": {
            "header": {
                "name": "content-type",
                "string_match": {"prefix": "application/grpc"},
                "invert_match": True,
                "treat_missing_header_as_empty": True,
            }
        }
    }
    return {"or_filter": {"filters": [transcoded, not_grpc]}}


def _status_is(status: int) -> dict[str, object]:
    return {
        "status_code_filter": {
            "comparison": {
                "op": "EQ",
                "value": {"default_value": status, "runtime_key": f"gateway.reply_{status}"},
            }
        }
    }


def _json_status_body(code: int) -> dict[str, object]:
    return {"json_format": {"code": code, "message": "%LOCAL_REPLY_BODY%", "details": []}}
