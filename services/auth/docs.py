"""PlatformService.GetApiDocs: the OpenAPI document and Swagger UI, served with no internet needed.

Through Envoy: `GET /openapi.json`, `GET /docs` (the Swagger UI page) and `GET /docs/<file>` (Swagger
UI's scripts and styles, from the `swagger-ui-bundle` package installed with the platform). The
document is `build/openapi.json`, which `make gen` builds from the protos together with the code and
Envoy's descriptor set; without it (a checkout where only the Python was generated) it is built from
the generated modules, the same routes and schemas without the comments.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

from google.api import httpbody_pb2
from swagger_ui_bundle import swagger_ui_path

from copytrade.core.errors import NotFound
from copytrade.core.settings import PROJECT_ROOT, VERSION
from copytrade.platform.v1 import platform_pb2

OPENAPI_FILE = "openapi.json"
DEFAULT_DOCUMENT = PROJECT_ROOT / "build" / OPENAPI_FILE
# Swagger UI's files by suffix; its sample index page and initializer (which load the Petstore) are
# replaced by the page below.
_CONTENT_TYPES = {
    ".js": "application/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".map": "application/json",
}
_NOT_SERVED = {"swagger-initializer.js"}
_PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>Copytrade API</title>
    <link rel="stylesheet" type="text/css" href="/docs/swagger-ui.css">
    <link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
    <style>html { box-sizing: border-box; overflow-y: scroll; } body { margin: 0; background: #fafafa; }</style>
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/docs/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="/docs/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script>
      window.onload = function () {
        window.ui = SwaggerUIBundle({
          url: "/openapi.json",
          dom_id: "#swagger-ui",
          deepLinking: true,
          persistAuthorization: true,
          presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
          plugins: [SwaggerUIBundle.plugins.DownloadUrl],
          layout: "StandaloneLayout",
        });
      };
    </script>
  </body>
</html>
"""


def load_document(path: Path = DEFAULT_DOCUMENT) -> bytes:
    """The OpenAPI document as JSON bytes: the one `make gen` wrote, else one built from the generated code."""
    if path.is_file():
        return path.read_bytes()
    from gateway.openapi import build_openapi, descriptor_set_from_modules

    document = build_openapi(descriptor_set_from_modules(_generated_modules()), version=VERSION)
    return json.dumps(document, indent=1).encode()


def _generated_modules() -> list[object]:
    modules: list[object] = []
    for package in ("auth", "orders", "replicator", "broker", "platform", "events"):
        try:
            v1 = importlib.import_module(f"copytrade.{package}.v1")
        except ModuleNotFoundError:
            continue
        modules += [
            importlib.import_module(f"{v1.__name__}.{m.name}") for m in pkgutil.iter_modules(v1.__path__) if m.name.endswith("_pb2")
        ]
    return modules


class ApiDocs:
    """The files GetApiDocs answers with, read once and kept in memory (about 3 MB at most)."""

    def __init__(self, document: bytes | None = None, assets: Path | None = None) -> None:
        self._document = document
        self._assets = Path(str(assets or swagger_ui_path))
        self._available = {
            p.name: p
            for p in self._assets.iterdir()
            if p.is_file() and p.suffix in _CONTENT_TYPES and p.name not in _NOT_SERVED
        }
        self._cache: dict[str, httpbody_pb2.HttpBody] = {}

    def file(self, name: str) -> httpbody_pb2.HttpBody:
        if name in self._cache:
            return self._cache[name]
        if name == "":
            body = httpbody_pb2.HttpBody(content_type="text/html; charset=utf-8", data=_PAGE.encode())
        elif name == OPENAPI_FILE:
            if self._document is None:
                self._document = load_document()
            body = httpbody_pb2.HttpBody(content_type="application/json", data=self._document)
        elif name in self._available:
            path = self._available[name]
            body = httpbody_pb2.HttpBody(content_type=_CONTENT_TYPES[path.suffix], data=path.read_bytes())
        else:
            # Only names listed at start are served: no path can reach outside Swagger UI's folder.
            raise NotFound(f"no documentation file {name[:100]!r}", field="file")
        self._cache[name] = body
        return body

    def answer(self, request: platform_pb2.GetApiDocsRequest) -> platform_pb2.GetApiDocsResponse:
        return platform_pb2.GetApiDocsResponse(body=self.file(request.file))
