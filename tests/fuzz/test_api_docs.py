"""`/openapi.json` and Swagger UI at `/docs`, through Envoy, without a token and without the internet."""

from __future__ import annotations

import json

import httpx
import pytest
import schemathesis

from copytrade.core.settings import PROJECT_ROOT


@pytest.fixture
async def rest(stack):
    async with httpx.AsyncClient(base_url=stack.envoy_url, timeout=30) as client:
        yield client


async def test_openapi_document_is_public_and_is_the_generated_one(rest):
    response = await rest.get("/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document == json.loads((PROJECT_ROOT / "build" / "openapi.json").read_text())
    assert document["openapi"].startswith("3.")
    # A valid OpenAPI document: schemathesis parses every operation in it.
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /api/users/login",
        "GET /api/orders/watch",
        "POST /api/orders/{order_id}:cancel",
    }


async def test_swagger_ui_page_loads_its_assets_from_the_gateway(rest):
    page = await rest.get("/docs")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert 'url: "/openapi.json"' in page.text
    for asset, content_type in (
        ("/docs/swagger-ui-bundle.js", "application/javascript"),
        ("/docs/swagger-ui-standalone-preset.js", "application/javascript"),
        ("/docs/swagger-ui.css", "text/css"),
        ("/docs/favicon-32x32.png", "image/png"),
    ):
        assert f'"{asset}"' in page.text
        response = await rest.get(asset)
        assert response.status_code == 200, (asset, response.text[:200])
        assert response.headers["content-type"].startswith(content_type)
        assert len(response.content) > 500
    assert "SwaggerUIBundle" in (await rest.get("/docs/swagger-ui-bundle.js")).text
    # Nothing in the page points outside the gateway.
    assert "http://" not in page.text and "https://" not in page.text


@pytest.mark.parametrize(
    "path",
    ["/docs/nope.js", "/docs/index.j2", "/docs/swagger-initializer.js", "/docs/..%2F..%2Fpyproject.toml"],
)
async def test_only_swagger_ui_files_are_served(rest, path):
    response = await rest.get(path)
    assert response.status_code in (400, 404), (path, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["code"] in (3, 5)


async def test_a_bad_token_does_not_hide_the_docs(rest):
    response = await rest.get("/openapi.json", headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 200
    # While everything else still needs a valid token.
    assert (await rest.get("/api/users/me")).status_code == 401


def test_without_make_gen_output_the_document_is_built_from_the_generated_code(tmp_path):
    from services.auth.docs import ApiDocs, load_document

    built = json.loads(load_document(tmp_path / "missing.json"))
    written = json.loads((PROJECT_ROOT / "build" / "openapi.json").read_text())
    assert built["paths"].keys() == written["paths"].keys()
    docs = ApiDocs(document=json.dumps(built).encode())
    assert json.loads(docs.file("openapi.json").data) == built
    assert docs.file("").content_type.startswith("text/html")
